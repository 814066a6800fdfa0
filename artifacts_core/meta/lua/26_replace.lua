-- 26_replace.lua: replacing a file's whole content in one call, keeping its inode (DESIGN.md §10:
-- "writeFile replaces content atomically and keeps the inode"). Helpers: 10_namespace.lua (`ns`)
-- and 20_data.lua (`DATA`).
--
-- The caller stores the new content first (inline bytes travel in this call; larger content is
-- an S3 slice whose blocks are already uploaded), then this function swaps it in: the file's
-- chunk lists are dropped and one record takes their place, in one step, so every reader sees
-- the old content or the new one (a reader's af_read_chunk gets records, inline bytes and attr
-- at one instant). The name is resolved here too, so a writeFile is one round trip whether the
-- file exists or not; a new file is created with its content already in place (never visible
-- empty).
--
-- Old records release their slice references through DATA.release, as truncate and compaction
-- do: S3 slices with the grace period (a reader holding an old view can still fetch the
-- blocks), inline slices at once (a reader's view carries their bytes, fetched in the same call
-- as the records, so nothing can still need the `b<id>` key).

-- af_replace_content: create or overwrite file `name` in directory `parent` with one slice.
-- KEYS: setting.
-- ARGV: parent ino, name, create ('1': create when missing; '0': ENOENT when missing),
--   expect ('': no precondition; '-': the name must not exist (EEXIST otherwise);
--   '<ino>:<gen>': the entry must be that inode at that change counter (ESTALE otherwise)),
--   slice id ('0': empty content), size, uid, gids, perm (permission bits of a new file),
--   grace (seconds old S3 slices stay readable), [data: the inline slice's `size` bytes; without
--   it a non-zero slice id names an S3 slice already stored].
-- Returns {ino, attr, 1 if created now else 0}.
-- Errors: ENOENT (parent gone, or missing name without create), ENOTDIR, EACCES, EISDIR (the name
--   is a directory), ELOOP (the name is a symlink: the caller resolves it and calls again),
--   EINVAL (not a regular file, bad slice), ENAMETOOLONG, EEXIST, ESTALE (version mismatch),
--   EFBIG (more than one chunk), ENOSPC, EAGAIN (inline refused: store the slice in S3).
--   A retry of an already committed slice id is a no-op returning the entry's current state.
-- All checks before the first write.
redis.register_function('af_replace_content', function(keys, args)
  local p = prefix_of(keys)
  local parent, name, create, expect = args[1], args[2], args[3] == '1', args[4] or ''
  local sid, size = args[5], tonumber(args[6])
  local c = caller(args[7], args[8])
  local perm = (tonumber(args[9]) or 420) % 4096  -- 420 = 0o644
  local grace, data = tonumber(args[10]) or 0, args[11]
  local id = tonumber(sid)
  local d, derr = ns.dir(p, parent, c)
  if derr then return derr end
  if ns.is_dot(name) then return fail('EISDIR', name .. ' is a directory') end
  local bad = ns.name_error(name)
  if bad then return bad end
  local commits = k_named(p, 'commits')
  local etyp, eino = ns.entry(p, parent, name)
  if id and id > 0 and redis.call('ZSCORE', commits, sid) and etyp then
    return { tonumber(eino), redis.call('GET', k_inode(p, eino)), 0 }
  end
  if not (id and id >= 0 and size and size >= 0) then return fail('EINVAL', 'invalid slice') end
  if size > CHUNK_SIZE then return fail('EFBIG', 'content larger than one chunk') end
  if (id == 0) ~= (size == 0) then return fail('EINVAL', 'empty content has slice id 0') end
  if data and #data ~= size then return fail('EINVAL', 'inline data length differs from the size') end
  -- precondition and the entry's type
  local a
  if etyp then
    if etyp == T_DIR then return fail('EISDIR', 'is a directory') end
    if etyp == T_SYMLINK then return fail('ELOOP', 'entry is a symbolic link') end
    if expect == '-' then return fail('EEXIST', 'file exists') end
    a = attr_get(p, eino)
    if not a then return fail('ENOENT', 'entry without inode ' .. eino) end
    if ftype(a) ~= T_FILE then return fail('EINVAL', 'not a regular file') end
    if expect ~= '' and expect ~= eino .. ':' .. istr(a.gen) then
      return fail('ESTALE', 'version ' .. eino .. ':' .. istr(a.gen) .. ' is not ' .. expect)
    end
    if not may(a, c, 2) then return fail('EACCES', 'no write permission') end
  else
    if not create then return fail('ENOENT', 'no such file') end
    if expect ~= '' and expect ~= '-' then return fail('ESTALE', 'the file no longer exists') end
    if not may(d, c, 2) then return fail('EACCES', 'write permission denied on the directory') end
  end
  local lim = limits(p)
  if data then
    if size > lim.inline_limit then return fail('EAGAIN', 'slice exceeds the inline limit') end
    local total = tonumber(redis.call('GET', k_named(p, 'inlinebytes')) or '0')
    if total + size > lim.inline_cap then return fail('EAGAIN', 'volume inline cap reached') end
  end
  local dspace
  if a then
    local qerr
    dspace, qerr = DATA.space_delta(p, a, size)
    if not dspace then return qerr end
  else
    local q = check_quota(p, space_of(size), 1)
    if q then return q end
    dspace = space_of(size)
  end
  -- all checks done: writes from here on
  local t, sec, nsec = DATA.now_f()
  local created = 0
  local ino = eino
  if a then
    for _, i in ipairs(DATA.chunk_indexes(p, ino, 0, math.huge)) do
      local key = k_chunk(p, ino, i)
      for _, s in ipairs(redis.call('LRANGE', key, 0, -1)) do
        local r = DATA.rec_unpack(s)
        DATA.release(p, r, r.kind == DATA.KIND_INLINE and t or t + grace, t)
      end
      redis.call('DEL', key)
      redis.call('ZREM', k_named(p, 'inlinechunks'), DATA.chunk_member(ino, i))
      if i >= 1 then redis.call('SREM', DATA.k_indexes(p, ino), istr(i)) end
    end
    DATA.kill_suid(a, c.uid)
  else
    ino = alloc_inode(p)
    created = 1
    a = { flags = 0, mode = T_FILE * 4096 + perm, uid = c.uid, gid = ns.primary_gid(args[8]),
      atime = sec, atime_ns = nsec, mtime = sec, mtime_ns = nsec, ctime = sec, ctime_ns = nsec,
      nlink = 1, length = 0, rdev = 0, parent = tonumber(parent), btime = sec, btime_ns = nsec,
      gen = 0 }
    if bit_set(perm_bits(d), S_ISGID) then a.gid = d.gid end
    redis.call('HSET', k_entries(p, parent), name, entry_pack(T_FILE, ino))
    touch(d, true, sec, nsec)
    attr_put(p, parent, d)
    redis.call('INCR', k_named(p, 'totalinodes'))
  end
  if size > 0 then
    local kind = data and DATA.KIND_INLINE or DATA.KIND_S3
    redis.call('RPUSH', k_chunk(p, ino, 0), DATA.rec_pack(0, id, size, 0, size, kind))
    if data then
      redis.call('SET', k_inline(p, sid), data)
      redis.call('INCRBY', k_named(p, 'inlinebytes'), size)
      redis.call('ZADD', k_named(p, 'inlinechunks'), t, DATA.chunk_member(ino, 0))
    end
    redis.call('ZADD', commits, t, sid)
    redis.call('ZREMRANGEBYSCORE', commits, '-inf', t - DATA.COMMIT_TTL)
  end
  a.length = size
  touch(a, true, sec, nsec)
  attr_put(p, ino, a)
  if dspace ~= 0 then redis.call('INCRBY', k_named(p, 'usedspace'), dspace) end
  return { tonumber(ino), attr_pack(a), created }
end)
