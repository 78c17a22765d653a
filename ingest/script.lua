-- Newest-wins write of feature rows in Feast's Redis layout (see writer.go).
--
-- KEYS[r]          entity hash of row r
-- ARGV[1]          "_ts:<view>"
-- ARGV[2]          key TTL in milliseconds; "0" for none
-- ARGV[3]          number of features, nf
-- ARGV[4..3+nf]    the features' hash fields
-- then per row r:  serialized google.protobuf.Timestamp, nf serialized feast.types.Value
--
-- A row is written (HSET of its values and the timestamp field) only when it
-- is newer than the view's stored timestamp: as in Feast, a stored timestamp
-- equal to or newer than the row's skips it. Returns, per row, 1 (written),
-- 0 (skipped: stored row not older) or an error (e.g. WRONGTYPE).

-- ts decodes a google.protobuf.Timestamp: seconds (field 1), nanos (field 2).
-- Unreadable input counts as the epoch, as readers treat it.
local function ts(b)
  local sec, nsec, i, n = 0, 0, 1, #b
  while i <= n do
    local tag = string.byte(b, i)
    i = i + 1
    local v, w, m, k = 0, 0, 1, 0
    while true do
      if i > n or k == 10 then return 0, 0 end
      local c = string.byte(b, i)
      i = i + 1
      k = k + 1
      local d = c % 128
      v = v + d * m
      if k < 10 then w = w + (127 - d) * m end
      m = m * 128
      if c < 128 then break end
    end
    -- Ten bytes: a negative int64 in two's complement, -(~v + 1).
    if k == 10 then v = -(w + 1) end
    if tag == 8 then sec = v elseif tag == 16 then nsec = v else return 0, 0 end
  end
  return sec, nsec
end

local call, pcall, unpack = redis.call, redis.pcall, unpack
local tsf, ttl, nf = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = {tsf, ''}
for i = 1, nf do t[2 * i + 1] = ARGV[3 + i] end
local a = 4 + nf
local out = {}
for r = 1, #KEYS do
  local key, new = KEYS[r], ARGV[a]
  local old = pcall('HGET', key, tsf)
  local skip = false
  if type(old) == 'table' then
    out[r] = old
    skip = true
  elseif old == new then
    -- The same event time (Lua compares interned strings in O(1)): a row
    -- written again, as when a file is loaded twice.
    out[r] = 0
    skip = true
  elseif old then
    local os, on = ts(old)
    local ns, nn = ts(new)
    if os > ns or (os == ns and on >= nn) then
      out[r] = 0
      skip = true
    end
  end
  if not skip then
    t[2] = new
    for i = 1, nf do t[2 * i + 2] = ARGV[a + i] end
    local cur = -1
    if ttl > 0 then cur = call('PTTL', key) end
    call('HSET', key, unpack(t, 1, 2 * nf + 2))
    -- Expiry only grows, and a hash that existed without one keeps none.
    if ttl > 0 and (cur == -2 or (cur >= 0 and cur < ttl)) then
      call('PEXPIRE', key, ttl)
    end
    out[r] = 1
  end
  a = a + 1 + nf
end
return out
