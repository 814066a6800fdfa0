-- 14_attrs.lua: af_setattr (chmod, chown, utimens) and the xattr functions.
--
-- Permission rules (Linux setattr_prepare / notify_change / xattr_permission):
-- * chown to another uid: root only (EPERM); chgrp: root, or the owner to a group it is in;
-- * chown/chgrp of a non-directory clears setuid, and setgid when group-executable (or when the
--   caller is not root and not in the new group);
-- * chmod: owner or root (EPERM); a non-root caller not in the file's group loses setgid;
-- * times: explicit values by the owner or root (EPERM); "now" by anyone who may write (EACCES);
--   an explicit ctime (restore tools) by root only;
-- * every change sets ctime to the server clock (unless given) and bumps gen.
-- Xattrs: name 1..255 bytes (ERANGE), value <= 64 KiB (E2BIG); "trusted." names are root's
-- (EPERM to write, ENODATA to read); "user." names only on files and directories, and not in
-- someone else's sticky directory; then read (get) or write (set, remove) permission (EACCES).

local XATTR_CREATE, XATTR_REPLACE = 1, 2  -- linux/xattr.h
local XATTR_NAME_MAX = 255  -- bytes
local XATTR_SIZE_MAX = 65536  -- bytes, Linux's limit for one value

-- "" -> nil (unchanged); "now"; "<sec> <nsec>" -> {sec, nsec}.
local function time_arg(s)
  if s == '' then return nil end
  if s == 'now' then return 'now' end
  local sec, nsec = string.match(s, '^(-?%d+) (%d+)$')
  if not sec then return false end
  return { tonumber(sec), tonumber(nsec) }
end

-- af_setattr: change mode, owner, group and times of one inode.
-- KEYS: setting. ARGV: ino, uid, gids, mode ("" = unchanged), new uid, new gid, atime, mtime,
--   ctime (each "" = unchanged, "now", or "<sec> <nsec>"; ctime only explicit).
-- Returns the new attr bytes.
-- Errors: ENOENT, EPERM, EACCES, EINVAL (malformed time). All checks before the first write.
register_allow_oom('af_setattr', function(keys, args)
  local p = prefix_of(keys)
  local ino = args[1]
  local c = ns.caller(args[2], args[3])
  local a = attr_get(p, ino)
  if not a then return fail('ENOENT', 'no inode ' .. ino) end
  local mode = tonumber(args[4])
  local uid, gid = tonumber(args[5]), tonumber(args[6])
  local at, mt, ct = time_arg(args[7]), time_arg(args[8]), time_arg(args[9])
  if at == false or mt == false or ct == false or ct == 'now' then
    return fail('EINVAL', 'malformed time argument')
  end
  local root, owner = c.uid == 0, c.uid == a.uid
  if uid and not (root or (owner and uid == a.uid)) then
    return fail('EPERM', 'only root may give a file away')
  end
  if gid and not (root or (owner and (gid == a.gid or c.gids[gid]))) then
    return fail('EPERM', 'only the owner may change the group, to one of its groups')
  end
  if mode and not (root or owner) then return fail('EPERM', 'only the owner may change the mode') end
  if (type(at) == 'table' or type(mt) == 'table') and not (root or owner) then
    return fail('EPERM', 'only the owner may set explicit times')
  end
  if (at == 'now' or mt == 'now') and not (root or owner or may(a, c, 2)) then
    return fail('EACCES', 'write permission needed to touch the times')
  end
  if ct and not root then return fail('EPERM', 'only root may set ctime') end
  if not (mode or uid or gid or at or mt or ct) then return attr_pack(a) end
  -- all checks done: writes from here on
  local sec, nsec, clock = now()
  if uid or gid then
    a.uid, a.gid = uid or a.uid, gid or a.gid
    if ftype(a) ~= T_DIR then
      local perm = perm_bits(a)
      if bit_set(perm, S_ISUID) then perm = perm - S_ISUID end
      if bit_set(perm, S_ISGID) and (bit_set(perm, ns.S_IXGRP) or not (root or c.gids[a.gid])) then
        perm = perm - S_ISGID
      end
      a.mode = ftype(a) * 4096 + perm
    end
  end
  if mode then
    local perm = mode % 4096
    if not root and not c.gids[a.gid] and bit_set(perm, S_ISGID) then perm = perm - S_ISGID end
    a.mode = ftype(a) * 4096 + perm
  end
  if at == 'now' then a.atime, a.atime_ns = sec, nsec elseif at then a.atime, a.atime_ns = at[1], at[2] end
  if mt == 'now' then a.mtime, a.mtime_ns = sec, nsec elseif mt then a.mtime, a.mtime_ns = mt[1], mt[2] end
  touch(a, false, sec, nsec)
  if ct then a.ctime, a.ctime_ns = ct[1], ct[2] end
  attr_put(p, ino, a)
  change(p, keys, clock, 'a', 'setattr', ino)
  return attr_pack(a)
end)

-- Checks an xattr access: an error reply or nil. `write` for set/remove.
local function xattr_denied(a, c, name, write)
  if #name == 0 or #name > XATTR_NAME_MAX then return fail('ERANGE', 'xattr name must be 1..255 bytes') end
  if string.sub(name, 1, 8) == 'trusted.' then
    if c.uid ~= 0 then return write and fail('EPERM', 'trusted xattrs are root\'s') or fail('ENODATA', '') end
    return nil
  end
  if string.sub(name, 1, 5) == 'user.' then
    local t = ftype(a)
    if t ~= T_FILE and t ~= T_DIR then
      return write and fail('EPERM', 'user xattrs only on files and directories') or fail('ENODATA', '')
    end
    if write and t == T_DIR and bit_set(perm_bits(a), S_ISVTX) and c.uid ~= 0 and c.uid ~= a.uid then
      return fail('EPERM', 'sticky directory: not the owner')
    end
  end
  if not may(a, c, write and 2 or 4) then return fail('EACCES', 'permission denied') end
  return nil
end

-- af_getxattr: one xattr value.
-- KEYS: setting. ARGV: ino, name, uid, gids. Returns the value bytes.
-- Errors: ENOENT, ERANGE, EACCES, ENODATA. Read-only.
redis.register_function{
  function_name = 'af_getxattr',
  callback = function(keys, args)
    local p = prefix_of(keys)
    local a = attr_get(p, args[1])
    if not a then return fail('ENOENT', 'no inode ' .. args[1]) end
    local denied = xattr_denied(a, ns.caller(args[3], args[4]), args[2], false)
    if denied then return denied end
    local v = redis.call('HGET', k_xattrs(p, args[1]), args[2])
    if not v then return fail('ENODATA', 'no such xattr') end
    return v
  end,
  flags = { 'no-writes' },
}

-- af_listxattr: the xattr names of an inode ("trusted." ones only for root).
-- KEYS: setting. ARGV: ino, uid, gids. Returns a list of names.
-- Errors: ENOENT. Read-only.
redis.register_function{
  function_name = 'af_listxattr',
  callback = function(keys, args)
    local p = prefix_of(keys)
    if redis.call('EXISTS', k_inode(p, args[1])) == 0 then return fail('ENOENT', 'no inode ' .. args[1]) end
    local names = redis.call('HKEYS', k_xattrs(p, args[1]))
    if args[2] == '0' then return names end
    local shown = {}
    for _, n in ipairs(names) do
      if string.sub(n, 1, 8) ~= 'trusted.' then shown[#shown + 1] = n end
    end
    return shown
  end,
  flags = { 'no-writes' },
}

-- af_setxattr: set one xattr.
-- KEYS: setting. ARGV: ino, name, value, flags (0, 1 CREATE, 2 REPLACE), uid, gids. Returns 1.
-- Errors: ENOENT, EINVAL (flags), ERANGE, E2BIG, EPERM, EACCES, EEXIST (CREATE), ENODATA
--   (REPLACE). All checks before the first write.
redis.register_function('af_setxattr', function(keys, args)
  local p = prefix_of(keys)
  local ino, name, value, flags = args[1], args[2], args[3], tonumber(args[4])
  if flags ~= 0 and flags ~= XATTR_CREATE and flags ~= XATTR_REPLACE then
    return fail('EINVAL', 'unknown xattr flags')
  end
  local a = attr_get(p, ino)
  if not a then return fail('ENOENT', 'no inode ' .. ino) end
  if #value > XATTR_SIZE_MAX then return fail('E2BIG', 'xattr value larger than 64 KiB') end
  local denied = xattr_denied(a, ns.caller(args[5], args[6]), name, true)
  if denied then return denied end
  local exists = redis.call('HEXISTS', k_xattrs(p, ino), name) == 1
  if flags == XATTR_CREATE and exists then return fail('EEXIST', 'xattr exists') end
  if flags == XATTR_REPLACE and not exists then return fail('ENODATA', 'no such xattr') end
  local sec, nsec, clock = now()
  redis.call('HSET', k_xattrs(p, ino), name, value)
  touch(a, false, sec, nsec)
  attr_put(p, ino, a)
  change(p, keys, clock, 'a', 'setxattr', ino)
  return 1
end)

-- af_removexattr: remove one xattr.
-- KEYS: setting. ARGV: ino, name, uid, gids. Returns 1.
-- Errors: ENOENT, ERANGE, EPERM, EACCES, ENODATA. All checks before the first write.
register_allow_oom('af_removexattr', function(keys, args)
  local p = prefix_of(keys)
  local ino, name = args[1], args[2]
  local a = attr_get(p, ino)
  if not a then return fail('ENOENT', 'no inode ' .. ino) end
  local denied = xattr_denied(a, ns.caller(args[3], args[4]), name, true)
  if denied then return denied end
  if redis.call('HEXISTS', k_xattrs(p, ino), name) == 0 then return fail('ENODATA', 'no such xattr') end
  local sec, nsec, clock = now()
  redis.call('HDEL', k_xattrs(p, ino), name)
  touch(a, false, sec, nsec)
  attr_put(p, ino, a)
  change(p, keys, clock, 'a', 'removexattr', ino)
  return 1
end)
