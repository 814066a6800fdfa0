-- 22_reserve.lua: slice-id batches, recorded per session so gc can tell in-flight uploads.

-- af_reserve_slices: reserve `n` slice ids for session `sid` and remember the batch.
-- KEYS: setting. ARGV: sid (0 = no session), n.
-- Returns the last id of the batch (the batch is [last - n + 1, last]); the session's recorded
-- range grows to cover it.
-- A live session's batch is where its not-yet-committed uploads come from: gc never deletes
-- objects of a slice id inside the batch of a live session (it may be committed any moment).
-- No errors; the write of the batch is the only write after INCRBY (no checks needed).
redis.register_function('af_reserve_slices', function(keys, args)
  local p = prefix_of(keys)
  local n = tonumber(args[2])
  local last = redis.call('INCRBY', k_named(p, 'nextslice'), n)
  if args[1] ~= '0' then
    -- The range spans every batch the session reserved: an id of an earlier batch may still be
    -- uploading. A live session's orphans can only come from a crash, which ends the session.
    local first = istr(last - n + 1)
    local old = redis.call('HGET', k_named(p, 'slicebatches'), args[1])
    if old then first = string.match(old, '^(%d+)-') or first end
    redis.call('HSET', k_named(p, 'slicebatches'), args[1], first .. '-' .. istr(last))
  end
  return last
end)
