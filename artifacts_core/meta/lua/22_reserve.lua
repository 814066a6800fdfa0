-- 22_reserve.lua: slice-id batches, recorded per session: gc tells in-flight uploads by them,
-- and a commit must carry an id its session reserved (DATA.claim, 20_data.lua).

-- af_reserve_slices: reserve `n` slice ids for session `sid` and remember the batch.
-- KEYS: setting. ARGV: sid ('0': a client without a session), n.
-- Returns the last id of the batch (the batch is [last - n + 1, last]); the owner's recorded
-- range grows to cover it.
-- A live session's batch is where its not-yet-committed uploads come from: gc never deletes
-- objects of a slice id inside the batch of a live session (it may be committed any moment).
-- Commits check the range too: an id outside its owner's range was reserved in writes Redis
-- lost, and is refused (ESTALE). Ids follow the server clock (next_id, 00_common.lua), so none
-- reserved in lost writes is handed out again.
-- No errors; the write of the batch is the only write after INCRBY (no checks needed).
redis.register_function('af_reserve_slices', function(keys, args)
  local p = prefix_of(keys)
  local n = tonumber(args[2])
  local last = next_id(p, 'nextslice', n)
  -- The range spans every batch the owner reserved: an id of an earlier batch may still be
  -- uploading. A live session's orphans can only come from a crash, which ends the session.
  -- Ids of other owners inside the span were handed out before `last`, so never again.
  local first = istr(last - n + 1)
  local old = redis.call('HGET', k_named(p, 'slicebatches'), args[1])
  if old then first = string.match(old, '^(%d+)-') or first end
  redis.call('HSET', k_named(p, 'slicebatches'), args[1], first .. '-' .. istr(last))
  return last
end)
