// Package ingest writes feature rows into the online store in Feast's Redis
// layout: batch files (CSV, JSON lines, Parquet) through Load, and Feast's
// push API (POST /push, POST /write-to-online-store) through Server.
//
// It owns the mapping of input columns to a feature view (Schema), the
// conversion of input values to Feast's protobufs (reusing featurefetch's
// layout encoders), and the newest-wins write: a Lua script (Writer) that, per
// entity hash and atomically, compares the stored "_ts:<view>" timestamp with
// the row's event time and writes the row only when it is newer. As in Feast,
// a stored time equal to or newer than the row's skips it, so of rows with
// the same entity and event time the first written stays; re-running a file
// is idempotent, and a run killed half-way and started again ends with the
// same content as one clean run.
//
// Columns: a view needs its join keys, its event-time column (the view's
// timestamp_field, "event_timestamp" by default) and every feature; other
// columns are ignored. Values convert to the declared types:
//
//   - CSV: the first record names the columns; an empty cell is null (Feast's
//     empty Value for features, an error for keys and the event time), so an
//     empty string cannot be told from null. Integers and floats in decimal
//     (an integer may carry a fraction of zeros, "7.0", as pandas writes an
//     integer column that holds nulls; "7.5" is an error),
//     BOOL as true/false (also True, TRUE, t, 1 and their opposites), BYTES
//     as base64, UNIX_TIMESTAMP as epoch seconds or a timestamp, lists as
//     JSON arrays ("[1.5, 2]").
//   - JSON lines: one object per line, values as featurefetch.AppendValue
//     takes them; a missing key is an error, null is null.
//   - Parquet: a column is the top-level field of its name. INT32 and INT64
//     fields fill integer, FLOAT, DOUBLE and UNIX_TIMESTAMP features; FLOAT
//     and DOUBLE fields fill FLOAT and DOUBLE, and integer features when
//     they hold integers (pandas' integer columns with nulls); BOOLEAN
//     fills BOOL; byte arrays fill STRING and BYTES, and any other type by
//     parsing them as CSV cells are. Lists are repeated fields (plain or the LIST logical type)
//     of such elements, or strings holding JSON arrays. Optional fields may
//     be null. Rows are numbered from 0 within their row group. A root group
//     marked "repeated" (the default of Arrow's Go writer before v18) reads
//     like a plain one.
//
// Event times are RFC 3339 ("2026-05-01T10:00:00Z"; a space may replace the
// "T", a missing zone means UTC, a date alone is midnight), epoch seconds
// with an optional fraction, or Parquet TIMESTAMP, INT96 and DATE values.
//
// Key expiry: Feast expires a whole entity hash after every write when the
// store's key_ttl_seconds is set, and never applies a view's ttl to keys (the
// ttl is a read-time max age). Here the hash expires, by default, after the
// largest ttl of the views in the file that share its join keys, and not at
// all when one of them has no ttl, so that a short-lived view never deletes a
// longer-lived view's data in the same hash. Writes only ever extend an
// expiry, and never add one to a hash that exists without one (it may hold
// data of writers that set none). SchemaOptions.KeyTTL overrides the value.
package ingest
