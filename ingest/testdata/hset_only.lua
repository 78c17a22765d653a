-- The write script without its newest-wins check: the same arguments and
-- results as script.lua, every row written with one HSET. BenchmarkLoadCSV
-- loads the rows through it to measure what passing rows through any script
-- costs Redis, the floor of a script that checks before it writes.
local call, unpack = redis.call, unpack
local nf = tonumber(ARGV[3])
local t = {ARGV[1], ''}
for i = 1, nf do t[2 * i + 1] = ARGV[3 + i] end
local a = 4 + nf
local out = {}
for r = 1, #KEYS do
  t[2] = ARGV[a]
  for i = 1, nf do t[2 * i + 2] = ARGV[a + i] end
  call('HSET', KEYS[r], unpack(t, 1, 2 * nf + 2))
  out[r] = 1
  a = a + 1 + nf
end
return out
