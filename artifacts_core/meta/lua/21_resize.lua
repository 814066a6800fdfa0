-- 21_resize.lua: truncate, fallocate and copy_file_range on the data map (helpers: 20_data.lua,
-- and `inline_error` and `close_write` from 00_common.lua).
--
-- No function here writes data bytes: zeros are hole records (id 0), shared data is records
-- copied with one more reference each. Compaction later drops what holes hide.

DATA.FALLOC_KEEP_SIZE, DATA.FALLOC_PUNCH_HOLE, DATA.FALLOC_ZERO_RANGE = 1, 2, 16  -- Linux values
-- copy_file_range copies at most this many bytes per call (16 chunks: the records of 17 source
-- chunks are read into the function); the caller loops, as Linux callers do on a short copy.
DATA.COPY_MAX = 16 * CHUNK_SIZE

-- The file shrinks from `oldlen` to `newlen`: hide the rest of the new last chunk behind a hole
-- and drop every chunk past it, their slices released with a grace period until `when`.
function DATA.drop_tail(p, ino, newlen, oldlen, when, t)
  local indx = math.floor(newlen / CHUNK_SIZE)
  local pos = newlen - indx * CHUNK_SIZE
  if pos > 0 then
    redis.call('RPUSHX', k_chunk(p, ino, indx), DATA.hole(pos, CHUNK_SIZE - pos))
    indx = indx + 1
  end
  for _, i in ipairs(DATA.chunk_indexes(p, ino, indx, math.floor((oldlen - 1) / CHUNK_SIZE))) do
    DATA.drop_chunk(p, ino, i, when, t)
  end
end

-- af_truncate: set a regular file's length (shrinking or growing), as truncate(2)/ftruncate(2).
-- KEYS: setting. ARGV: ino, length, uid, "gid,gid,...", check ('1': the caller needs write
--   permission, as truncate(2) by path; '0': an fd opened for writing), grace (seconds a dropped
--   slice stays readable for readers holding an old view).
-- Returns the new attr. mtime/ctime change when the length does (ext4); a non-root caller
-- clears setuid (and setgid when group-exec is set). Growing adds no record (no data lies past
-- the old length); shrinking hides the tail and drops whole chunks past the new length.
-- Errors, in Linux's order: EINVAL (negative length), ENOENT, EISDIR, EINVAL (not a regular
--   file), EACCES, EFBIG, ENOSPC.
-- All checks before the first write.
register_allow_oom('af_truncate', function(keys, args)
  local p = prefix_of(keys)
  local ino, newlen = args[1], tonumber(args[2])
  if not newlen or newlen < 0 then return fail('EINVAL', 'negative length') end
  local a, err = DATA.file_attr(p, ino)
  if not a then return err end
  local c = caller(args[3], args[4])
  if args[5] == '1' and not may(a, c, 2) then return fail('EACCES', 'no write permission') end
  if newlen > DATA.MAX_LENGTH then return fail('EFBIG', 'file too large') end
  local dspace, qerr = DATA.space_delta(p, a, newlen)
  if not dspace then return qerr end
  local t, sec, ns_, clock = DATA.now_f()
  if newlen < a.length then
    DATA.drop_tail(p, ino, newlen, a.length, t + (tonumber(args[6]) or 0), t)
  end
  local changed = newlen ~= a.length
  local killed = DATA.kill_suid(a, c.uid)
  if changed or killed then
    note_length(ino, a.length, newlen)
    a.length = newlen
    touch(a, changed, sec, ns_)
    attr_put(p, ino, a)
    change(p, keys, clock, 'd', 'truncate', ino)
  end
  if dspace ~= 0 then redis.call('INCRBY', k_named(p, 'usedspace'), dspace) end
  return attr_pack(a)
end)

-- af_fallocate: fallocate(2) on a regular file, through hole records.
-- KEYS: setting. ARGV: ino, mode, offset, length, uid.
--   mode 0: the length grows to offset+length if shorter (nothing else: the range reads as it
--   did); KEEP_SIZE alone: nothing; PUNCH_HOLE|KEEP_SIZE: zeros over the range (within the
--   length); ZERO_RANGE (with or without KEEP_SIZE): zeros over the range, growing the file
--   unless KEEP_SIZE.
-- Returns the new attr (mtime/ctime change when the length changes or zeros are written).
-- Errors, in Linux's order: EINVAL (offset < 0, length <= 0), EOPNOTSUPP (other mode bits,
--   PUNCH_HOLE without KEEP_SIZE, PUNCH_HOLE with ZERO_RANGE), ENOENT, ESPIPE (a fifo), EISDIR,
--   ENODEV (not a regular file), EFBIG, ENOSPC.
-- All checks before the first write.
redis.register_function('af_fallocate', function(keys, args)
  local p = prefix_of(keys)
  local ino, mode = args[1], tonumber(args[2]) or -1
  local offset, length = tonumber(args[3]), tonumber(args[4])
  local keep = bit_set(mode, DATA.FALLOC_KEEP_SIZE)
  local punch = bit_set(mode, DATA.FALLOC_PUNCH_HOLE)
  local zero = bit_set(mode, DATA.FALLOC_ZERO_RANGE)
  local known = (keep and DATA.FALLOC_KEEP_SIZE or 0) + (punch and DATA.FALLOC_PUNCH_HOLE or 0)
    + (zero and DATA.FALLOC_ZERO_RANGE or 0)
  -- the order of Linux's vfs_fallocate checks
  if not offset or not length or offset < 0 or length <= 0 then
    return fail('EINVAL', 'invalid offset or length')
  end
  if mode < 0 or known ~= mode then return fail('EOPNOTSUPP', 'unsupported fallocate mode') end
  if punch and (zero or not keep) then
    return fail('EOPNOTSUPP', 'PUNCH_HOLE needs KEEP_SIZE and excludes ZERO_RANGE')
  end
  local a = attr_get(p, ino)
  if not a then return fail('ENOENT', 'no such inode ' .. istr(ino)) end
  if ftype(a) == T_FIFO then return fail('ESPIPE', 'fallocate on a fifo') end
  if ftype(a) == T_DIR then return fail('EISDIR', 'fallocate on a directory') end
  if ftype(a) ~= T_FILE then return fail('ENODEV', 'not a regular file') end
  if offset + length > DATA.MAX_LENGTH then return fail('EFBIG', 'file too large') end
  local newlen = a.length
  if not keep and offset + length > newlen then newlen = offset + length end
  local dspace, qerr = DATA.space_delta(p, a, newlen)
  if not dspace then return qerr end
  local zeroing = (punch or zero) and offset < newlen
  if zeroing then DATA.push_holes(p, ino, offset, math.min(offset + length, newlen)) end
  local changed = newlen ~= a.length
  if changed or zeroing then  -- otherwise the length and so the used space stay (dspace is 0)
    local _, sec, ns_, clock = DATA.now_f()
    DATA.kill_suid(a, tonumber(args[5]) or 0)
    close_write(p, ino, a, newlen, dspace, sec, ns_)
    change(p, keys, clock, 'd', 'fallocate', ino)
  end
  return attr_pack(a)
end)

-- af_copy_range: copy_file_range(2) by sharing slices: the source records that intersect the
-- range are copied (cut to it, split at destination chunk boundaries) after a hole over the
-- destination range, each copy taking one more reference to its slice (inline slices are
-- shared the same way: their bytes stay in one `b<id>` until the last reference goes).
-- KEYS: setting. ARGV: src ino, src offset, dst ino, dst offset, length, uid.
-- Returns {dst attr, bytes copied}: at most min(length, src length - src offset, COPY_MAX);
--   0 at or past the source's end.
-- Errors: EINVAL (negative offsets/length, not regular files, overlapping ranges of one file),
--   EISDIR, ENOENT, EFBIG, ENOSPC.
-- All checks before the first write.
redis.register_function('af_copy_range', function(keys, args)
  local p = prefix_of(keys)
  local src, dst = args[1], args[3]
  local soff, doff, want = tonumber(args[2]), tonumber(args[4]), tonumber(args[5])
  if not (soff and doff and want) or soff < 0 or doff < 0 or want < 0 then
    return fail('EINVAL', 'invalid offset or length')
  end
  local sa, err = DATA.file_attr(p, src)
  if not sa then return err end
  local da, derr = DATA.file_attr(p, dst)
  if not da then return derr end
  local n = math.min(want, sa.length - soff, DATA.COPY_MAX)
  if n <= 0 then return { attr_pack(da), 0 } end
  if src == dst and soff < doff + n and doff < soff + n then
    return fail('EINVAL', 'overlapping ranges in one file')
  end
  if doff + n > DATA.MAX_LENGTH then return fail('EFBIG', 'file too large') end
  local newlen = math.max(da.length, doff + n)
  local dspace, qerr = DATA.space_delta(p, da, newlen)
  if not dspace then return qerr end
  -- Read every source record first (src may be dst).
  local out = {}
  local send = soff + n
  for ci = math.floor(soff / CHUNK_SIZE), math.floor((send - 1) / CHUNK_SIZE) do
    local cs = ci * CHUNK_SIZE
    local lo, hi = math.max(soff, cs) - cs, math.min(send, cs + CHUNK_SIZE) - cs
    for _, s in ipairs(redis.call('LRANGE', k_chunk(p, src, ci), 0, -1)) do
      local r = DATA.rec_unpack(s)
      local a, b = math.max(r.pos, lo), math.min(r.pos + r.len, hi)
      if a < b then
        -- absolute destination range [da0, da0 + (b - a)), split at destination chunk ends
        local d0, roff = cs + a - soff + doff, r.off + (a - r.pos)
        local left = b - a
        while left > 0 do
          local di = math.floor(d0 / CHUNK_SIZE)
          local dpos = d0 - di * CHUNK_SIZE
          local m = math.min(left, CHUNK_SIZE - dpos)
          out[#out + 1] = { di, dpos, r.id, r.size, roff, m, r.kind }
          d0, roff, left = d0 + m, roff + m, left - m
        end
      end
    end
  end
  -- writes
  local t, sec, ns_, clock = DATA.now_f()
  DATA.push_holes(p, dst, doff, doff + n)
  for _, o in ipairs(out) do
    if o[3] == 0 then
      redis.call('RPUSHX', k_chunk(p, dst, o[1]), DATA.hole(o[2], o[6]))
    else
      redis.call('RPUSH', k_chunk(p, dst, o[1]), DATA.rec_pack(o[2], o[3], o[4], o[5], o[6], o[7]))
      DATA.note_chunk(p, dst, o[1])
      DATA.ref_add(p, o[3], o[4], 1)
      if o[7] == DATA.KIND_INLINE then
        redis.call('ZADD', k_named(p, 'inlinechunks'), t, DATA.chunk_member(dst, o[1]))
      end
    end
  end
  DATA.kill_suid(da, tonumber(args[6]) or 0)
  close_write(p, dst, da, newlen, dspace, sec, ns_)
  change(p, keys, clock, 'd', 'copy', dst)
  return { attr_pack(da), n }
end)

-- af_replace: replace a regular file's whole content atomically, keeping the inode (the agent
-- API's writeFile, DESIGN.md §10): the old chunk lists are dropped (their slices released with
-- a grace period for readers of the old content) and the new records pushed, in one call, after
-- the caller stored the new S3 blocks.
-- KEYS: setting.
-- ARGV: ino, new length, uid, grace (seconds), owner (the session that reserved the slice ids,
--   '0' for none), then per record 7 fields: chunk index, pos, slice id, size, off, len, data
--   ('' for an S3 slice; the bytes of an inline slice, `size` long).
--   Records of one slice in several chunks (a slice spanning a boundary) take one reference each.
-- Returns {attr, duplicate (1 if the owner committed the first slice id already: nothing changed)}.
-- Errors: ESTALE (a slice id outside the owner's reservation: DATA.claim), ENOENT, EISDIR,
--   EINVAL (bad record, a record past the length), EFBIG, ENOSPC, EAGAIN (inline refused:
--   store those slices in S3 and call again).
-- All checks before the first write.
redis.register_function('af_replace', function(keys, args)
  local p = prefix_of(keys)
  local ino, newlen, uid, grace = args[1], tonumber(args[2]), tonumber(args[3]) or 0, tonumber(args[4]) or 0
  local owner = args[5] or '0'
  if #args > 5 then
    local retry = DATA.claim(p, owner, args[8])
    if retry then return { redis.call('GET', k_inode(p, ino)), 1 } end
  end
  local a, err = DATA.file_attr(p, ino)
  if not a then return err end
  if not newlen or newlen < 0 or (#args - 5) % 7 ~= 0 then return fail('EINVAL', 'invalid arguments') end
  if newlen > DATA.MAX_LENGTH then return fail('EFBIG', 'file too large') end
  local recs, inline_new, inline_max, counts = {}, 0, 0, {}
  for k = 6, #args, 7 do
    local r = { indx = tonumber(args[k]), pos = tonumber(args[k + 1]), id = tonumber(args[k + 2]),
      size = tonumber(args[k + 3]), off = tonumber(args[k + 4]), len = tonumber(args[k + 5]),
      data = args[k + 6], sid = args[k + 2] }
    if not (r.indx and r.pos and r.id and r.size and r.off and r.len and r.indx >= 0 and r.pos >= 0
        and r.id > 0 and r.off >= 0 and r.len > 0 and r.off + r.len <= r.size
        and r.pos + r.len <= CHUNK_SIZE and r.indx * CHUNK_SIZE + r.pos + r.len <= newlen) then
      return fail('EINVAL', 'invalid slice record')
    end
    r.kind = #r.data > 0 and DATA.KIND_INLINE or DATA.KIND_S3
    if r.kind == DATA.KIND_INLINE then
      if #r.data ~= r.size then return fail('EINVAL', 'inline data length differs from the slice size') end
      inline_max = math.max(inline_max, r.size)
    end
    local f = DATA.ref_field(r.id, r.size)
    if not counts[f] then
      counts[f] = 0
      if r.kind == DATA.KIND_INLINE then inline_new = inline_new + r.size end
    end
    counts[f] = counts[f] + 1
    local _, cerr = DATA.claim(p, owner, r.sid)
    if cerr then return cerr end
    recs[#recs + 1] = r
  end
  if inline_new > 0 then
    local ierr = inline_error(p, inline_max, inline_new)
    if ierr then return ierr end
  end
  local dspace, qerr = DATA.space_delta(p, a, newlen)
  if not dspace then return qerr end
  -- writes
  local t, sec, ns_, clock = DATA.now_f()
  for _, i in ipairs(DATA.chunk_indexes(p, ino, 0, math.huge)) do
    DATA.drop_chunk(p, ino, i, t + grace, t)
  end
  local stored = {}
  for _, r in ipairs(recs) do
    redis.call('RPUSH', k_chunk(p, ino, r.indx), DATA.rec_pack(r.pos, r.id, r.size, r.off, r.len, r.kind))
    DATA.note_chunk(p, ino, r.indx)
    DATA.note_commit(p, owner, r.sid, t)
    if r.kind == DATA.KIND_INLINE then
      redis.call('ZADD', k_named(p, 'inlinechunks'), t, DATA.chunk_member(ino, r.indx))
      if not stored[r.sid] then
        stored[r.sid] = true
        redis.call('SET', k_inline(p, r.sid), r.data)
        redis.call('INCRBY', k_named(p, 'inlinebytes'), r.size)
      end
    end
  end
  for f, n in pairs(counts) do
    if n > 1 then
      local id, size = string.match(f, '^(%d+)_(%d+)$')
      DATA.ref_add(p, id, size, n - 1)
    end
  end
  DATA.kill_suid(a, uid)
  close_write(p, ino, a, newlen, dspace, sec, ns_)
  change(p, keys, clock, 'd', 'replace', ino)
  return { attr_pack(a), 0 }
end)
