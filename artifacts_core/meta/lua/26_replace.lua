-- 26_replace.lua: the agent API's data operations by name, each one call: replacing a file's
-- whole content keeping its inode (af_replace_content; DESIGN.md §10: "writeFile replaces content
-- atomically and keeps the inode"), appending (af_append_entry) and reading (af_read_entry).
-- Helpers: 00_common.lua (`inline_error`, `close_write`), 10_namespace.lua (`ns`), 20_data.lua
-- (`DATA`, incl. `DATA.push_pieces`, which af_commit uses too) and the `RE` table below.
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

local RE = {}

-- The target of a by-name data operation, after every check: returns d (parent attr), etyp,
-- eino, a (the file's attr, nil when missing) -- or nil and an error reply. `expect`: '' none,
-- '-' must not exist (EEXIST), '<ino>:<gen>' must be that version (ESTALE).
function RE.target(p, parent, name, c, create, expect)
  local d, derr = ns.dir(p, parent, c)
  if derr then return nil, derr end
  if ns.is_dot(name) then return nil, fail('EISDIR', name .. ' is a directory') end
  local bad = ns.name_error(name)
  if bad then return nil, bad end
  local etyp, eino = ns.entry(p, parent, name)
  if not etyp then
    if not create then return nil, fail('ENOENT', 'no such file') end
    if expect ~= '' and expect ~= '-' then return nil, fail('ESTALE', 'the file no longer exists') end
    if not may(d, c, 2) then return nil, fail('EACCES', 'write permission denied on the directory') end
    return d
  end
  if etyp == T_DIR then return nil, fail('EISDIR', 'is a directory') end
  if etyp == T_SYMLINK then return nil, fail('ELOOP', 'entry is a symbolic link') end
  if expect == '-' then return nil, fail('EEXIST', 'file exists') end
  local a = attr_get(p, eino)
  if not a then return nil, fail('ENOENT', 'entry without inode ' .. eino) end
  if ftype(a) ~= T_FILE then return nil, fail('EINVAL', 'not a regular file') end
  if expect ~= '' and expect ~= eino .. ':' .. istr(a.gen) then
    return nil, fail('ESTALE', 'version ' .. eino .. ':' .. istr(a.gen) .. ' is not ' .. expect)
  end
  if not may(a, c, 2) then return nil, fail('EACCES', 'no write permission') end
  return d, nil, etyp, eino, a
end

-- The used-space change of giving a file `new_length` bytes (an existing file `a`), or of a new
-- file of `size` bytes (one more inode, `a` nil); (nil, error reply) over capacity or quota.
function RE.space_for(p, a, new_length, size)
  if a then return DATA.space_delta(p, a, new_length) end
  local q = check_quota(p, space_of(size), 1)
  if q then return nil, q end
  return space_of(size)
end

-- Writes: a new empty regular file `name` in `parent` (attr `d`); returns ino, attr table.
function RE.new_file(p, parent, d, name, c, gids, perm, sec, nsec)
  local ino = alloc_inode(p)
  local a = { flags = 0, mode = T_FILE * 4096 + perm, uid = c.uid, gid = ns.primary_gid(gids),
    atime = sec, atime_ns = nsec, mtime = sec, mtime_ns = nsec, ctime = sec, ctime_ns = nsec,
    nlink = 1, length = 0, rdev = 0, parent = tonumber(parent), btime = sec, btime_ns = nsec,
    gen = 0 }
  if bit_set(perm_bits(d), S_ISGID) then a.gid = d.gid end
  redis.call('HSET', k_entries(p, parent), name, entry_pack(T_FILE, ino))
  touch(d, true, sec, nsec)
  attr_put(p, parent, d)
  redis.call('INCR', k_named(p, 'totalinodes'))
  return ino, a
end

-- The change record of a by-name data operation: a new entry when the call created the file
-- (nobody can have cached its data), else a data change.
function RE.announce(p, keys, clock, op, ino, created, parent, name)
  if created == 1 then
    change(p, keys, clock, 'e', op, ino, parent, name)
  else
    change(p, keys, clock, 'd', op, ino)
  end
end

-- af_replace_content: create or overwrite file `name` in directory `parent` with one slice.
-- KEYS: setting.
-- ARGV: parent ino, name, create ('1': create when missing; '0': ENOENT when missing),
--   expect ('': no precondition; '-': the name must not exist (EEXIST otherwise);
--   '<ino>:<gen>': the entry must be that inode at that change counter (ESTALE otherwise)),
--   slice id ('0': empty content), size, uid, gids, perm (permission bits of a new file),
--   grace (seconds old S3 slices stay readable), owner (the session that reserved the slice id,
--   '0' for none), [data: the inline slice's `size` bytes; without it a non-zero slice id names
--   an S3 slice already stored].
-- Returns {ino, attr, 1 if created now else 0}.
-- Errors: ENOENT (parent gone, or missing name without create), ENOTDIR, EACCES, EISDIR (the name
--   is a directory), ELOOP (the name is a symlink: the caller resolves it and calls again),
--   EINVAL (not a regular file, bad slice), ENAMETOOLONG, EEXIST, ESTALE (version mismatch; or
--   a slice id outside the owner's reservation: DATA.claim), EFBIG (more than one chunk),
--   ENOSPC, EAGAIN (inline refused: store the slice in S3).
--   A retry of a slice id the owner committed already is a no-op returning the entry's state.
-- All checks before the first write.
redis.register_function('af_replace_content', function(keys, args)
  local p = prefix_of(keys)
  local parent, name, create, expect = args[1], args[2], args[3] == '1', args[4] or ''
  local sid, size = args[5], tonumber(args[6])
  local c = caller(args[7], args[8])
  local perm = (tonumber(args[9]) or 420) % 4096  -- 420 = 0o644
  local grace, owner, data = tonumber(args[10]) or 0, args[11] or '0', args[12]
  local id = tonumber(sid)
  if id and id > 0 then
    local retry, cerr = DATA.claim(p, owner, sid)
    if retry then
      local etyp, eino = ns.entry(p, parent, name)
      if etyp then return { tonumber(eino), redis.call('GET', k_inode(p, eino)), 0 } end
    elseif cerr then
      return cerr
    end
  end
  if not (id and id >= 0 and size and size >= 0) then return fail('EINVAL', 'invalid slice') end
  if size > CHUNK_SIZE then return fail('EFBIG', 'content larger than one chunk') end
  if (id == 0) ~= (size == 0) then return fail('EINVAL', 'empty content has slice id 0') end
  if data and #data ~= size then return fail('EINVAL', 'inline data length differs from the size') end
  local d, err, _, eino, a = RE.target(p, parent, name, c, create, expect)
  if not d then return err end
  if data then
    local ierr = inline_error(p, size, size)
    if ierr then return ierr end
  end
  local dspace, qerr = RE.space_for(p, a, size, size)
  if not dspace then return qerr end
  -- all checks done: writes from here on
  local t, sec, nsec, clock = DATA.now_f()
  local created = 0
  local ino = eino
  if a then
    for _, i in ipairs(DATA.chunk_indexes(p, ino, 0, math.huge)) do
      local key = k_chunk(p, ino, i)
      HIST.cow(key)  -- a checkpoint's copy takes its references before these are released
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
    ino, a = RE.new_file(p, parent, d, name, c, args[8], perm, sec, nsec)
    created = 1
  end
  if size > 0 then DATA.push_pieces(p, ino, sid, size, { { 0, 0, 0, size } }, data, t, owner) end
  close_write(p, ino, a, size, dspace, sec, nsec)
  RE.announce(p, keys, clock, 'replace_content', ino, created, parent, name)
  return { tonumber(ino), attr_pack(a), created }
end)

-- af_append_entry: append one slice to file `name` in directory `parent` (appendFile), at the
-- file's length at this instant; create the file holding just this data when it is missing.
-- KEYS: setting.
-- ARGV: parent ino, name, create ('1'|'0'), expect ('' or '<ino>:<gen>', as above), slice id,
--   size, uid, gids, perm (of a new file), owner (the session that reserved the slice id, '0'
--   for none), [data: inline bytes; without it an S3 slice already stored]. An append crossing
--   a chunk boundary is split into two records of the slice.
-- Returns {ino, attr, file offset where the data landed (-1 for a retry), records in the last
--   chunk list touched, 1 if created now, 1 if the owner committed this slice id already (a
--   retry: nothing changed)}.
-- Errors: as af_replace_content (EEXIST aside); EFBIG past the largest file length.
-- All checks before the first write.
redis.register_function('af_append_entry', function(keys, args)
  local p = prefix_of(keys)
  local parent, name, create, expect = args[1], args[2], args[3] == '1', args[4] or ''
  local sid, size = args[5], tonumber(args[6])
  local c = caller(args[7], args[8])
  local perm = (tonumber(args[9]) or 420) % 4096
  local owner, data = args[10] or '0', args[11]
  local id = tonumber(sid)
  if not (id and id > 0 and size and size > 0 and size <= CHUNK_SIZE) then
    return fail('EINVAL', 'invalid slice')
  end
  local retry, cerr = DATA.claim(p, owner, sid)
  if retry then
    local etyp, eino = ns.entry(p, parent, name)
    if etyp then return { tonumber(eino), redis.call('GET', k_inode(p, eino)), -1, 0, 0, 1 } end
  elseif cerr then
    return cerr
  end
  if data and #data ~= size then return fail('EINVAL', 'inline data length differs from the size') end
  local d, err, _, eino, a = RE.target(p, parent, name, c, create, expect)
  if not d then return err end
  if data then
    local ierr = inline_error(p, size, size)
    if ierr then return ierr end
  end
  local length = a and a.length or 0
  local indx = math.floor(length / CHUNK_SIZE)
  local pos = length - indx * CHUNK_SIZE
  local first = math.min(size, CHUNK_SIZE - pos)
  local pieces = { { indx, pos, 0, first } }
  if first < size then pieces[2] = { indx + 1, 0, first, size - first } end
  if length + size > DATA.MAX_LENGTH then return fail('EFBIG', 'file too large') end
  local dspace, qerr = RE.space_for(p, a, length + size, size)
  if not dspace then return qerr end
  -- all checks done: writes from here on
  local t, sec, nsec, clock = DATA.now_f()
  local created = 0
  local ino = eino
  if a then
    DATA.kill_suid(a, c.uid)
  else
    ino, a = RE.new_file(p, parent, d, name, c, args[8], perm, sec, nsec)
    created = 1
  end
  local count = DATA.push_pieces(p, ino, sid, size, pieces, data, t, owner)
  close_write(p, ino, a, length + size, dspace, sec, nsec)
  RE.announce(p, keys, clock, 'append_entry', ino, created, parent, name)
  return { tonumber(ino), attr_pack(a), length, count, created, 0 }
end)

-- af_read_entry: resolve `name` in `parent` and read one chunk of it, in one read-only call
-- (readFile): the attr, the chunk's records and its inline bytes at one instant.
-- KEYS: setting. ARGV: parent ino, name, chunk index, uid, gids.
-- Returns {ino, entry type, attr, records, id1, bytes1, ...} (as af_read_chunk after the first
--   two); a directory or symlink entry comes back with its attr and no records.
-- Errors: ENOENT (no such name, or the parent is gone), ENOTDIR, EACCES (search permission),
--   ENAMETOOLONG, EINVAL. Read-only.
redis.register_function{
  function_name = 'af_read_entry',
  callback = function(keys, args)
    local p = prefix_of(keys)
    local parent, name = args[1], args[2]
    local _, derr = ns.dir(p, parent, caller(args[4], args[5]))
    if derr then return derr end
    local bad = ns.name_error(name)
    if bad then return bad end
    local etyp, eino = ns.entry(p, parent, name)
    if not etyp then return fail('ENOENT', 'no such entry') end
    local raw = redis.call('GET', k_inode(p, eino))
    if not raw then return fail('ENOENT', 'entry without inode ' .. eino) end
    if etyp ~= T_FILE then return { tonumber(eino), etyp, raw, '' } end
    local recs = redis.call('LRANGE', k_chunk(p, eino, args[3]), 0, -1)
    return DATA.add_inline(p, recs, 0, CHUNK_SIZE, { tonumber(eino), etyp, raw, table.concat(recs) })
  end,
  flags = { 'no-writes' },
}
