-- 11_create.lua: new names: af_create (files, directories, symlinks, fifos, sockets, devices)
-- and af_link (hard links). Helpers come from 10_namespace.lua (`ns`).
--
-- Ownership of a new inode: uid = the caller's, gid = the caller's primary group, or the
-- directory's group when the directory is setgid (then a new subdirectory is setgid too, and a
-- group-executable setgid file created by a non-member loses setgid, as Linux mode_strip_sgid).
-- The mode passed in is final: the umask is the caller's business.

-- The op of a change record made by af_create, by the type created.
local CREATE_OPS = { [T_FILE] = 'create', [T_DIR] = 'mkdir', [T_SYMLINK] = 'symlink' }

-- af_create: a new inode and its entry.
-- KEYS: setting. ARGV: parent ino, name, type (S_IFMT >> 12), permission bits, rdev, uid, gids,
--   exclusive ("1": an existing name is EEXIST; "0": an existing non-directory is returned, as
--   open(O_CREAT) without O_EXCL), symlink target (symlinks only), [open sid: a session id that
--   registers an open of a NEWLY created file in the same call, as af_open does — a create + open
--   costs one round trip; an existing file returned by a non-exclusive create is not opened].
-- Returns {ino, attr bytes, 1 if created now else 0}.
-- Errors: ENOENT (parent missing or removed, empty name), ENOTDIR, EACCES (search or write on the
--   parent), EEXIST, EISDIR (non-exclusive create over a directory), ENAMETOOLONG, EINVAL,
--   ENOSPC (capacity or inode quota). All checks before the first write.
redis.register_function('af_create', function(keys, args)
  local p = prefix_of(keys)
  local parent, name, typ = args[1], args[2], tonumber(args[3])
  local perm = tonumber(args[4]) % 4096
  local c = ns.caller(args[6], args[7])
  local exclusive = args[8] ~= '0'
  local d, err = ns.dir(p, parent, c)
  if err then return err end
  if ns.is_dot(name) then
    if not exclusive then return fail('EISDIR', 'cannot create over a directory') end
    return fail('EEXIST', name .. ' exists')
  end
  local bad = ns.name_error(name)
  if bad then return bad end
  local etyp, eino = ns.entry(p, parent, name)
  if etyp then
    if exclusive then return fail('EEXIST', 'entry exists') end
    if etyp == T_DIR then return fail('EISDIR', 'cannot create over a directory') end
    local s = redis.call('GET', k_inode(p, eino))
    if not s then return fail('ENOENT', 'entry without inode ' .. eino) end
    return { tonumber(eino), s, 0 }
  end
  if not may(d, c, 2) then return fail('EACCES', 'write permission denied on the directory') end
  local q = ns.quota(p, space_of(0), 1)
  if q then return q end
  local open_sid = args[10]
  if open_sid and open_sid ~= '' and open_sid ~= '0'
      and redis.call('EXISTS', k_session(p, open_sid)) == 0 then
    return fail('ESTALE', 'session ' .. open_sid .. ' expired and was cleaned up')
  end
  -- all checks done: writes from here on
  local sec, nsec, clock = now()
  local ino = alloc_inode(p)
  local gid = tonumber(string.match(args[7], '^%d+') or '0')  -- the primary group: first listed
  if bit_set(perm_bits(d), S_ISGID) then
    gid = d.gid
    if typ == T_DIR then
      if not bit_set(perm, S_ISGID) then perm = perm + S_ISGID end
    elseif bit_set(perm, S_ISGID) and bit_set(perm, ns.S_IXGRP) and c.uid ~= 0 and not c.gids[gid] then
      perm = perm - S_ISGID
    end
  end
  local length = 0
  if typ == T_DIR then
    length = 4096  -- st_size of a directory, as ext4 and JuiceFS report it
  elseif typ == T_SYMLINK then
    length = #args[9]
  end
  local rdev = 0
  if typ == T_CHR or typ == T_BLK then rdev = tonumber(args[5]) end
  -- packed straight from the values (the attr layout of attr_pack: flags, mode, uid, gid,
  -- atime, mtime, ctime, nlink, length, rdev, parent, btime, gen): no table for a new inode
  local packed = struct.pack(ATTR_FMT, 0, typ * 4096 + perm, c.uid, gid, sec, nsec, sec, nsec,
    sec, nsec, (typ == T_DIR) and 2 or 1, length, rdev, tonumber(parent), sec, nsec, 1)
  redis.call('SET', k_inode(p, ino), packed)
  if typ == T_SYMLINK then redis.call('SET', k_symlink(p, ino), args[9]) end
  redis.call('HSET', k_entries(p, parent), name, entry_pack(typ, ino))
  if typ == T_DIR then d.nlink = d.nlink + 1 end
  touch(d, true, sec, nsec)
  attr_put(p, parent, d)
  redis.call('INCRBY', k_named(p, 'usedspace'), space_of(0))
  redis.call('INCR', k_named(p, 'totalinodes'))
  if open_sid and open_sid ~= '' and open_sid ~= '0' then
    redis.call('HINCRBY', k_sopens(p, open_sid), ino, 1)
  end
  change(p, keys, clock, 'e', CREATE_OPS[typ] or 'mknod', ino, parent, name)
  return { tonumber(ino), packed, 1 }
end)

-- af_link: a new name for an existing non-directory (hard link).
-- KEYS: setting. ARGV: ino, new parent ino, new name, uid, gids.
-- Returns the inode's attr bytes.
-- Errors: ENOENT (no inode, parent missing, or the inode already unlinked), ENOTDIR, EACCES,
--   EEXIST, EPERM (a directory), ENAMETOOLONG, EINVAL. All checks before the first write.
redis.register_function('af_link', function(keys, args)
  local p = prefix_of(keys)
  local ino, parent, name = args[1], args[2], args[3]
  local c = ns.caller(args[4], args[5])
  local a = attr_get(p, ino)
  if not a then return fail('ENOENT', 'no inode ' .. ino) end
  local d, err = ns.dir(p, parent, c)
  if err then return err end
  if ns.is_dot(name) then return fail('EEXIST', name .. ' exists') end
  local bad = ns.name_error(name)
  if bad then return bad end
  if redis.call('HEXISTS', k_entries(p, parent), name) == 1 then return fail('EEXIST', 'entry exists') end
  if not may(d, c, 2) then return fail('EACCES', 'write permission denied on the directory') end
  if ftype(a) == T_DIR then return fail('EPERM', 'hard links to directories are not allowed') end
  if a.nlink == 0 then return fail('ENOENT', 'inode ' .. ino .. ' was unlinked') end
  local sec, nsec, clock = now()
  ns.link_added(p, ino, a, parent)
  a.nlink = a.nlink + 1
  touch(a, false, sec, nsec)
  attr_put(p, ino, a)
  redis.call('HSET', k_entries(p, parent), name, entry_pack(ftype(a), ino))
  touch(d, true, sec, nsec)
  attr_put(p, parent, d)
  change(p, keys, clock, 'e', 'link', ino, parent, name)
  return attr_pack(a)
end)
