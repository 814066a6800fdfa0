-- 41_compact.lua: compaction of a chunk's slice list, and the index of chunks holding inline
-- data (helpers: 20_data.lua).
--
-- Compaction (meta/reclaim.py drives it): the client reads a chunk, merges its n records (but
-- a head of k large untouched slices), writes the merged bytes as ONE new slice (S3 blocks, or
-- inline bytes passed here), and af_compact swaps it in -- only if those n records are still
-- the list's first n (checked by SHA-1 of their bytes). Records appended meanwhile stay at the
-- tail, after the new one, so they still win. The old records' slices are released with a
-- grace period: a reader holding the old view can still fetch them (S3 blocks and inline keys
-- alike) until it passes.

-- af_compact: swap a compacted slice in for records k .. n-1 of a chunk (records 0 .. k-1 are
-- large slices kept as they are: rewriting a big log head on every compaction is the write
-- amplification JuiceFS's skipSome avoids; the client chose k so that no later record touches
-- them).
-- KEYS: setting.
-- ARGV: ino, chunk index, k, n, sha1 hex of the first n records' concatenated bytes ('' when
--   n = 0), new record pos, id (0: records k .. n-1 merged to nothing -- all zeros), size, off,
--   len, grace (seconds), owner (the session that reserved the id, '0' for none), [data: the new
--   slice's bytes when it is inline].
-- Returns {1 swapped | 0 aborted (the list's head changed; a new S3 slice is queued for
--   deletion, since nothing references it) | 2 already swapped (a retry: the owner committed
--   the id), records in the list now}.
-- Errors: EINVAL (bad record), ESTALE (the id is outside the owner's reservation: DATA.claim).
-- All checks before the first write.
redis.register_function('af_compact', function(keys, args)
  local p = prefix_of(keys)
  local ino, indx, sha = args[1], args[2], args[5]
  local keep, n = tonumber(args[3]) or -1, tonumber(args[4]) or -1
  local pos, sid = tonumber(args[6]), args[7]
  local id, size, off, len = tonumber(args[7]), tonumber(args[8]), tonumber(args[9]), tonumber(args[10])
  local grace, owner, data = tonumber(args[11]) or 0, args[12] or '0', args[13]
  local key = k_chunk(p, ino, indx)
  if not (n >= 0 and keep >= 0 and keep <= n and pos and id and size and off and len and id >= 0
      and pos >= 0 and off >= 0 and off + len <= size and pos + len <= CHUNK_SIZE and (id > 0 or not data)
      and (not data or #data == size)) then
    return fail('EINVAL', 'invalid compaction record')
  end
  if id > 0 then
    local retry, cerr = DATA.claim(p, owner, sid)
    if retry then return { 2, redis.call('LLEN', key) } end
    if cerr then return cerr end
  end
  local t = DATA.now_f()
  local prefix = {}
  if n > 0 then prefix = redis.call('LRANGE', key, 0, n - 1) end
  if #prefix ~= n or (n > 0 and redis.sha1hex(table.concat(prefix)) ~= sha) then
    if id > 0 and not data then
      redis.call('ZADD', k_named(p, 'delslices'), t, DATA.ref_field(id, size))
    end
    return { 0, redis.call('LLEN', key) }
  end
  -- writes
  if n > 0 then redis.call('LTRIM', key, n, -1) end
  if id > 0 then
    local kind = data and DATA.KIND_INLINE or DATA.KIND_S3
    redis.call('LPUSH', key, DATA.rec_pack(pos, id, size, off, len, kind))
    DATA.note_commit(p, owner, sid, t)
    if data then
      redis.call('SET', k_inline(p, sid), data)
      redis.call('INCRBY', k_named(p, 'inlinebytes'), size)
    end
  end
  for i = keep, 1, -1 do redis.call('LPUSH', key, prefix[i]) end
  for i = keep + 1, n do DATA.release(p, DATA.rec_unpack(prefix[i]), t + grace, t) end
  -- keep the inline index exact for this chunk
  local member = DATA.chunk_member(ino, indx)
  local inline = false
  for _, s in ipairs(redis.call('LRANGE', key, 0, -1)) do
    if string.byte(s, SLICE_SIZE) == DATA.KIND_INLINE then inline = true; break end
  end
  if not inline then
    redis.call('ZREM', k_named(p, 'inlinechunks'), member)
  elseif data then
    redis.call('ZADD', k_named(p, 'inlinechunks'), t, member)
  end
  return { 1, redis.call('LLEN', key) }
end)

-- af_inline_candidates: chunks holding inline slices whose last inline write is older than
-- `quiet` seconds, oldest first, for the migration of cold inline data to S3.
-- KEYS: setting. ARGV: quiet (seconds), limit, now offset.
-- Returns {"<ino>_<index>", ...}. Errors: none. Read-only.
redis.register_function{
  function_name = 'af_inline_candidates',
  callback = function(keys, args)
    local p = prefix_of(keys)
    local t = DATA.now_f(args[3])
    return redis.call('ZRANGEBYSCORE', k_named(p, 'inlinechunks'), '-inf',
      t - (tonumber(args[1]) or 0), 'LIMIT', 0, tonumber(args[2]) or 100)
  end,
  flags = { 'no-writes' },
}
