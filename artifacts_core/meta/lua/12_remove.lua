-- 12_remove.lua: af_unlink and af_rmdir. Helpers come from 10_namespace.lua (`ns`).
--
-- Check order follows Linux (may_delete): search permission on the directory, the entry's
-- existence, write permission on the directory (EACCES), the sticky rule (EPERM), then the
-- entry's type (EISDIR for unlink, ENOTDIR for rmdir), then emptiness (ENOTEMPTY).

-- af_unlink: remove a non-directory's name.
-- KEYS: setting. ARGV: parent ino, name, uid, gids.
-- Returns the inode's remaining link count (0: the inode is gone, or kept only while open, or
-- moved into the trash -- then 1, its trash name).
-- Errors: ENOENT, ENOTDIR, EACCES, EPERM (sticky directory), EISDIR (a directory, or "." / ".."),
--   ENAMETOOLONG, EINVAL. All checks before the first write.
register_allow_oom('af_unlink', function(keys, args)
  local p = prefix_of(keys)
  local parent, name = args[1], args[2]
  local c = ns.caller(args[3], args[4])
  local d, err = ns.dir(p, parent, c)
  if err then return err end
  if ns.is_dot(name) then return fail('EISDIR', 'cannot unlink ' .. name) end
  local bad = ns.name_error(name)
  if bad then return bad end
  local _, ino = ns.entry(p, parent, name)
  if not ino then return fail('ENOENT', 'no such entry') end
  local a = attr_get(p, ino)
  if not a then return fail('ENOENT', 'entry without inode ' .. ino) end
  if not may(d, c, 2) then return fail('EACCES', 'write permission denied on the directory') end
  if not sticky_allows(d, a, c) then return fail('EPERM', 'sticky directory: not the owner') end
  if ftype(a) == T_DIR then return fail('EISDIR', 'is a directory') end
  local sec, nsec, clock = now()
  redis.call('HDEL', k_entries(p, parent), name)
  touch(d, true, sec, nsec)
  attr_put(p, parent, d)
  local trashed = ns.drop_name(p, ino, a, d, parent, name, sec, nsec)
  change(p, keys, clock, 'e', 'unlink', ino, parent, name)
  ns.trash_changes(p, keys, clock, 'unlink', ino, trashed)
  return a.nlink
end)

-- af_rmdir: remove an empty directory.
-- KEYS: setting. ARGV: parent ino, name, uid, gids.
-- Returns the removed directory's ino.
-- Errors: ENOENT, ENOTDIR (parent, or the entry is not a directory), EACCES, EPERM (sticky),
--   EINVAL ("."), ENOTEMPTY (".." or entries left), EBUSY (root or trash), ENAMETOOLONG.
--   All checks before the first write.
register_allow_oom('af_rmdir', function(keys, args)
  local p = prefix_of(keys)
  local parent, name = args[1], args[2]
  local c = ns.caller(args[3], args[4])
  local d, err = ns.dir(p, parent, c)
  if err then return err end
  if name == '.' then return fail('EINVAL', 'cannot remove "."') end
  if name == '..' then return fail('ENOTEMPTY', 'cannot remove ".."') end
  local bad = ns.name_error(name)
  if bad then return bad end
  local _, ino = ns.entry(p, parent, name)
  if not ino then return fail('ENOENT', 'no such entry') end
  local a = attr_get(p, ino)
  if not a then return fail('ENOENT', 'entry without inode ' .. ino) end
  if not may(d, c, 2) then return fail('EACCES', 'write permission denied on the directory') end
  if not sticky_allows(d, a, c) then return fail('EPERM', 'sticky directory: not the owner') end
  if ftype(a) ~= T_DIR then return fail('ENOTDIR', 'not a directory') end
  if ino == ROOT_INO or ino == TRASH_INO then return fail('EBUSY', 'cannot remove a system directory') end
  if redis.call('HLEN', k_entries(p, ino)) > 0 then return fail('ENOTEMPTY', 'directory not empty') end
  local sec, nsec, clock = now()
  redis.call('HDEL', k_entries(p, parent), name)
  d.nlink = d.nlink - 1
  touch(d, true, sec, nsec)
  attr_put(p, parent, d)
  ns.drop_dir(p, ino, a, sec, nsec)
  change(p, keys, clock, 'e', 'rmdir', ino, parent, name)
  return tonumber(ino)
end)
