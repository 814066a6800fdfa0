-- 13_rename.lua: af_rename, with RENAME_NOREPLACE and RENAME_EXCHANGE.
--
-- The checks follow Linux do_renameat2 / lock_rename / vfs_rename, in that order:
-- flags (EINVAL); both parents (ENOENT, ENOTDIR, EACCES search); "." or ".." (EBUSY, or EEXIST
-- with NOREPLACE); the source entry (ENOENT); the target (ENOENT for EXCHANGE when missing,
-- EEXIST for NOREPLACE when present); the loop traps -- the source directory may not become its
-- own descendant at ANY depth (EINVAL; the walk follows attr `parent` up from the new parent,
-- inside this function, so two clients cannot race a loop into the tree), and a target that is
-- an ancestor of the source is ENOTEMPTY (EINVAL for EXCHANGE); the same inode on both sides is
-- a successful no-op; write permission and the sticky rule on both parents (EACCES, EPERM); type
-- agreement when replacing (ENOTDIR, EISDIR); write permission on a directory that changes
-- parent (its ".." changes); a replaced directory must be empty (ENOTEMPTY).
--
-- Replacing a target follows the unlink rules (trash, open-file keep, p<ino> counts).

local RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2  -- linux/fs.h; RENAME_WHITEOUT (4) is EINVAL here

-- af_rename: move (or swap) a name.
-- KEYS: setting. ARGV: parent ino, name, new parent ino, new name, flags, uid, gids.
-- Returns 1 (0 when both names are already the same inode: nothing changes).
-- Errors: EINVAL, ENOENT, ENOTDIR, EACCES, EBUSY, EEXIST, ENOTEMPTY, EPERM, EISDIR,
--   ENAMETOOLONG. All checks before the first write.
register_allow_oom('af_rename', function(keys, args)
  local p = prefix_of(keys)
  local parent, name, nparent, nname = args[1], args[2], args[3], args[4]
  local flags = tonumber(args[5]) or -1
  local c = ns.caller(args[6], args[7])
  if flags ~= 0 and flags ~= RENAME_NOREPLACE and flags ~= RENAME_EXCHANGE then
    return fail('EINVAL', 'unsupported rename flags ' .. args[5])
  end
  local noreplace, exchange = flags == RENAME_NOREPLACE, flags == RENAME_EXCHANGE
  local sd, err = ns.dir(p, parent, c)
  if err then return err end
  local td = sd
  if nparent ~= parent then
    td, err = ns.dir(p, nparent, c)
    if err then return err end
  end
  if ns.is_dot(name) then return fail('EBUSY', 'cannot rename ' .. name) end
  if ns.is_dot(nname) then
    return fail(noreplace and 'EEXIST' or 'EBUSY', 'cannot rename over ' .. nname)
  end
  local bad = ns.name_error(name) or ns.name_error(nname)
  if bad then return bad end
  local styp, sino = ns.entry(p, parent, name)
  if not styp then return fail('ENOENT', 'no such entry') end
  local ttyp, tino = ns.entry(p, nparent, nname)
  if exchange and not ttyp then return fail('ENOENT', 'no entry to exchange with') end
  if noreplace and ttyp then return fail('EEXIST', 'target exists') end
  local sa = attr_get(p, sino)
  if not sa then return fail('ENOENT', 'entry without inode ' .. sino) end
  local ta
  if ttyp then
    ta = attr_get(p, tino)
    if not ta then return fail('ENOENT', 'entry without inode ' .. tino) end
  end
  local sdir, tdir = ftype(sa) == T_DIR, ta ~= nil and ftype(ta) == T_DIR
  if nparent ~= parent then
    if sdir and ns.is_ancestor(p, sino, nparent) then
      return fail('EINVAL', 'cannot move a directory into itself')
    end
    if tdir and ns.is_ancestor(p, tino, parent) then
      return fail(exchange and 'EINVAL' or 'ENOTEMPTY', 'the target is an ancestor of the source')
    end
  end
  if tino == sino then return 0 end
  if not may(sd, c, 2) then return fail('EACCES', 'write permission denied on the source directory') end
  if not sticky_allows(sd, sa, c) then return fail('EPERM', 'sticky directory: not the owner') end
  if not may(td, c, 2) then return fail('EACCES', 'write permission denied on the target directory') end
  if ta then
    if not sticky_allows(td, ta, c) then return fail('EPERM', 'sticky directory: not the owner') end
    if not exchange then
      if sdir and not tdir then return fail('ENOTDIR', 'cannot replace a non-directory by a directory') end
      if tdir and not sdir then return fail('EISDIR', 'cannot replace a directory by a non-directory') end
    end
  end
  if nparent ~= parent then
    if sdir and not may(sa, c, 2) then return fail('EACCES', 'cannot change the parent of the directory') end
    if exchange and tdir and not may(ta, c, 2) then
      return fail('EACCES', 'cannot change the parent of the target directory')
    end
  end
  if ta and not exchange and tdir and redis.call('HLEN', k_entries(p, tino)) > 0 then
    return fail('ENOTEMPTY', 'target directory not empty')
  end
  -- all checks done: writes from here on
  local sec, nsec, clock = now()
  local trashed
  if exchange then
    redis.call('HSET', k_entries(p, parent), name, entry_pack(ttyp, tino))
    redis.call('HSET', k_entries(p, nparent), nname, entry_pack(styp, sino))
    if nparent ~= parent then
      if sdir then
        sd.nlink, td.nlink, sa.parent = sd.nlink - 1, td.nlink + 1, tonumber(nparent)
      else
        ns.link_moved(p, sino, sa, parent, nparent)
      end
      if tdir then
        td.nlink, sd.nlink, ta.parent = td.nlink - 1, sd.nlink + 1, tonumber(parent)
      else
        ns.link_moved(p, tino, ta, nparent, parent)
      end
    end
    touch(ta, false, sec, nsec)
    attr_put(p, tino, ta)
  else
    if ta then
      if tdir then
        td.nlink = td.nlink - 1
        ns.drop_dir(p, tino, ta, sec, nsec)
      else
        trashed = ns.drop_name(p, tino, ta, td, nparent, nname, sec, nsec)
        -- the trash move may have added an hourly directory to the trash root
        if parent == TRASH_INO then sd = attr_get(p, parent) end
      end
    end
    redis.call('HDEL', k_entries(p, parent), name)
    redis.call('HSET', k_entries(p, nparent), nname, entry_pack(styp, sino))
    if nparent ~= parent then
      if sdir then
        sd.nlink, td.nlink, sa.parent = sd.nlink - 1, td.nlink + 1, tonumber(nparent)
      else
        ns.link_moved(p, sino, sa, parent, nparent)
      end
    end
  end
  touch(sa, false, sec, nsec)
  attr_put(p, sino, sa)
  touch(sd, true, sec, nsec)
  attr_put(p, parent, sd)
  if td ~= sd then
    touch(td, true, sec, nsec)
    attr_put(p, nparent, td)
  end
  local op = exchange and 'exchange' or 'rename'
  change(p, keys, clock, 'r', op, sino, parent, name, nparent, nname)
  if ta then
    change(p, keys, clock, 'a', op, tino)  -- exchanged, or replaced: its links or life changed
    ns.trash_changes(p, keys, clock, op, tino, trashed)
  end
  return 1
end)
