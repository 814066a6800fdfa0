-- 10_namespace.lua: the namespace's shared helpers and its read-only functions.
--
-- Owns: name checks, directory resolution with permission checks, the link bookkeeping of
-- non-directories (attr `parent`, or 0 plus the `p<ino>` counts once a file has a second name),
-- the trash move, and the read side: af_lookup, af_readlink, af_readdir, af_statfs, af_noop.
-- The mutating functions live in 11_create.lua (create/link), 12_remove.lua (unlink/rmdir),
-- 13_rename.lua and 14_attrs.lua (setattr, xattrs); they see the helpers below through the
-- one `ns` table (one Lua local instead of twenty: the library is a single chunk, and Lua 5.1
-- allows 200 locals per function and 60 upvalues per closure).
--
-- Invariants kept by every function of these files:
-- * a directory has exactly one parent, stored in its attr; its nlink is 2 + its subdirectories;
-- * a non-directory with one name has attr parent = that directory; from its second name on,
--   attr parent = 0 and `p<ino>` maps directory -> number of names in it (as JuiceFS); back to
--   one name, the parent is restored and `p<ino>` deleted;
-- * every entry change touches the directory's mtime/ctime and bumps its `gen`.

local ns = {}

ns.NAME_MAX = 255  -- Linux NAME_MAX: bytes per name
ns.TARGET_MAX = 4095  -- Linux PATH_MAX (4096) minus the terminating NUL: longest symlink target
ns.S_IXGRP = 8  -- 0o010
ns.ANCESTRY_MAX = 100000  -- walk bound: deeper than any real tree, stops a corrupted parent loop

-- Name of a new or looked-up entry: an error reply, or nil when acceptable.
-- Empty -> ENOENT (as an empty path), > 255 bytes -> ENAMETOOLONG, '/' or NUL -> EINVAL (the
-- kernel never sends them; other frontends might).
function ns.name_error(name)
  if #name == 0 then return fail('ENOENT', 'empty name') end
  if #name > ns.NAME_MAX then return fail('ENAMETOOLONG', 'name longer than 255 bytes') end
  if string.find(name, '/', 1, true) or string.find(name, '\0', 1, true) then
    return fail('EINVAL', 'a name may not contain / or NUL')
  end
  return nil
end

function ns.is_dot(name) return name == '.' or name == '..' end

-- The caller, as 00_common's caller() builds it, with a fast path for the usual single group
-- (string.gmatch costs a few microseconds per call; create's whole budget is a few dozen).
function ns.caller(uid, gids)
  if string.find(gids, ',', 1, true) then return caller(uid, gids) end
  local c = { uid = tonumber(uid), gids = {} }
  local g = tonumber(gids)
  if g then c.gids[g] = true end
  return c
end

-- check_quota (00_common) only when the volume has a limit: one HMGET of the two limits instead
-- of the five fields limits() reads -- the unlimited case is the common one.
function ns.quota(p, dspace, dinodes)
  local lim = redis.call('HMGET', k_named(p, 'limits'), 'capacity', 'inodes')
  if (tonumber(lim[1]) or 0) > 0 or (tonumber(lim[2]) or 0) > 0 then
    return check_quota(p, dspace, dinodes)
  end
  return nil
end

-- The primary group of the caller: the first of its "gid,gid,..." argument.
function ns.primary_gid(gids) return tonumber(string.match(gids or '', '%d+') or '0') end

-- A directory a name is resolved in: its attr, or nil and ENOENT / ENOTDIR / EACCES (search).
-- A removed directory still held open (nlink 0) has no entries: ENOENT, as Linux.
function ns.dir(p, ino, c)
  local d = attr_get(p, ino)
  if not d or d.nlink == 0 then return nil, fail('ENOENT', 'no such directory ' .. ino) end
  if ftype(d) ~= T_DIR then return nil, fail('ENOTDIR', 'inode ' .. ino .. ' is not a directory') end
  if not may(d, c, 1) then return nil, fail('EACCES', 'search permission denied on ' .. ino) end
  return d
end

-- The entry `name` of directory `dino`: type, ino (string), or nil.
function ns.entry(p, dino, name)
  local e = redis.call('HGET', k_entries(p, dino), name)
  if not e then return nil end
  return entry_unpack(e)
end

-- Whether the directory tree walk up from `start` (through attr parent) meets `target`.
-- Used by rename: a directory may not move under itself at any depth.
function ns.is_ancestor(p, target, start)
  local cur = istr(start)
  target = istr(target)
  for _ = 1, ns.ANCESTRY_MAX do
    if cur == target then return true end
    if cur == ROOT_INO then return false end
    local a = attr_get(p, cur)
    if not a or a.parent == 0 then return false end
    cur = istr(a.parent)
  end
  return false
end

-- Whether a directory is the trash root or one of its hourly subdirectories: removing a file
-- from there deletes it for good.
function ns.in_trash(d, dino)
  return istr(dino) == TRASH_INO or istr(d.parent) == TRASH_INO
end

-- ---- link bookkeeping of non-directories -------------------------------------------------

-- A new name of `a` in directory `dino` (hard link): from the second name on, attr parent is 0
-- and p<ino> counts the names per directory.
function ns.link_added(p, ino, a, dino)
  if a.parent ~= 0 then
    redis.call('HINCRBY', k_parents(p, ino), istr(a.parent), 1)
    a.parent = 0
  end
  redis.call('HINCRBY', k_parents(p, ino), istr(dino), 1)
end

-- A name of `a` in `dino` is gone while other names remain (a.nlink already counts the loss).
-- Back to one name, the file gets its single parent back and p<ino> goes.
function ns.link_removed(p, ino, a, dino)
  if a.parent == 0 then
    local key = k_parents(p, ino)
    if redis.call('HINCRBY', key, istr(dino), -1) <= 0 then redis.call('HDEL', key, istr(dino)) end
    if a.nlink == 1 then
      local left = redis.call('HKEYS', key)
      if #left == 1 then
        a.parent = tonumber(left[1])
        redis.call('DEL', key)
      end
    end
  end
end

-- A name of `a` moved from directory `from` to `to` (rename).
function ns.link_moved(p, ino, a, from, to)
  if istr(from) == istr(to) then return end
  if a.parent == 0 then
    ns.link_removed(p, ino, a, from)
    redis.call('HINCRBY', k_parents(p, ino), istr(to), 1)
  else
    a.parent = tonumber(to)
  end
end

-- ---- trash ----------------------------------------------------------------------------------

-- Days since 1970-01-01 -> civil (year, month, day), proleptic Gregorian (H. Hinnant's
-- algorithm; Redis's Lua has no os.date).
function ns.civil(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m, d
end

-- The hourly trash subdirectory name for a unix time: YYYY-MM-DD-HH (UTC).
function ns.trash_hour(sec)
  local y, m, d = ns.civil(math.floor(sec / 86400))
  return string.format('%04d-%02d-%02d-%02d', y, m, d, math.floor((sec % 86400) / 3600))
end

-- Moves the last name of regular file `a` into TRASH/<hour>/<parent>-<ino>-<name> (the hourly
-- directory is created on demand). nlink is unchanged: the trash entry is the file's name now.
-- Trash directories are not charged to the quota check: an unlink must not fail for space.
-- Returns what changed in the trash, for the caller's change records: {hourly dir ino, trash
-- name, hour name if the hourly directory was created now}.
function ns.to_trash(p, ino, a, dino, name, sec, ns_)
  local hour = ns.trash_hour(sec)
  local _, sub = ns.entry(p, TRASH_INO, hour)
  local created = nil
  if not sub then
    created = hour
    sub = alloc_inode(p)
    attr_put(p, sub, { flags = 0, mode = T_DIR * 4096 + 365, uid = 0, gid = 0,  -- 0555, root's
      atime = sec, atime_ns = ns_, mtime = sec, mtime_ns = ns_, ctime = sec, ctime_ns = ns_,
      nlink = 2, length = 4096, rdev = 0, parent = tonumber(TRASH_INO), btime = sec,
      btime_ns = ns_, gen = 1 })
    redis.call('HSET', k_entries(p, TRASH_INO), hour, entry_pack(T_DIR, sub))
    local t = attr_get(p, TRASH_INO)
    t.nlink = t.nlink + 1
    touch(t, true, sec, ns_)
    attr_put(p, TRASH_INO, t)
    redis.call('INCRBY', k_named(p, 'usedspace'), space_of(0))
    redis.call('INCR', k_named(p, 'totalinodes'))
  end
  local tname = string.sub(istr(dino) .. '-' .. istr(ino) .. '-' .. name, 1, ns.NAME_MAX)
  redis.call('HSET', k_entries(p, sub), tname, entry_pack(T_FILE, ino))
  -- who deleted it and when (`artifacts trash list`): the calling session, if it has one
  redis.call('HSET', k_named(p, 'trashinfo'), istr(ino), cjson.encode({
    -- ids as strings: cjson keeps 14 significant digits, session ids have 16
    session = string.match(HIST.declared or '', 'sess(%d+)$') or '0', time = sec + ns_ / 1e9 }))
  redis.call('DEL', k_parents(p, ino))
  a.parent = tonumber(sub)
  touch(a, false, sec, ns_)
  attr_put(p, ino, a)
  return { sub, tname, created }
end

-- The change records of a move into the trash (`moved`: what ns.to_trash returned, or nil).
function ns.trash_changes(p, keys, clock, op, ino, moved)
  if not moved then return end
  if moved[3] then change(p, keys, clock, 'e', op, moved[1], TRASH_INO, moved[3]) end
  change(p, keys, clock, 'e', op, ino, moved[1], moved[2])
end

-- A name of non-directory `a` (inode `ino`) in directory `d` (inode `dino`) is gone; the entry
-- itself was already removed or overwritten by the caller. Other names left: nlink - 1. Last
-- name of a regular file with the trash on, outside the trash: into the trash. Otherwise the
-- inode's life ends (drop_last_link keeps it while it is open anywhere). Returns what
-- ns.to_trash returned when the file went to the trash, else nil.
function ns.drop_name(p, ino, a, d, dino, name, sec, ns_)
  if a.nlink > 1 then
    a.nlink = a.nlink - 1
    ns.link_removed(p, ino, a, dino)
    touch(a, false, sec, ns_)
    attr_put(p, ino, a)
  elseif ftype(a) == T_FILE and not ns.in_trash(d, dino)
      and (tonumber(redis.call('HGET', k_named(p, 'limits'), 'trash_days')) or 0) > 0 then
    return ns.to_trash(p, ino, a, dino, name, sec, ns_)
  else
    drop_last_link(p, ino, a, sec, ns_)
  end
end

-- An empty directory's only name is gone (rmdir, rename over it).
function ns.drop_dir(p, ino, a, sec, ns_)
  redis.call('DEL', k_entries(p, ino))
  drop_last_link(p, ino, a, sec, ns_)
end

-- ---- read-only functions ---------------------------------------------------------------------

-- af_noop: does nothing; the benchmark's ceiling for one FCALL round trip.
-- KEYS: setting. ARGV: none. Returns 1. Errors: none.
redis.register_function{
  function_name = 'af_noop',
  callback = function(keys, args) return 1 end,
  flags = { 'no-writes' },
}

-- af_lookup: resolve one name in a directory (entry + attributes in one round trip).
-- KEYS: setting. ARGV: parent ino, name, uid, gids. "." is the directory, ".." its parent.
-- Returns {ino, attr bytes}. Errors: ENOENT, ENOTDIR, EACCES (search on the parent),
-- ENAMETOOLONG, EINVAL (a '/' or NUL in the name). Read-only.
redis.register_function{
  function_name = 'af_lookup',
  callback = function(keys, args)
    local p = prefix_of(keys)
    local name, ino = args[2], nil
    -- Fast path for root: it may search any directory, and a found entry proves the parent is a
    -- live directory (only directories have entry hashes; rmdir deletes the hash with the
    -- name), so the parent's attr is needed only to explain a miss.
    if args[3] == '0' and not ns.is_dot(name) and #name <= ns.NAME_MAX then
      local e = redis.call('HGET', k_entries(p, args[1]), name)
      if e then
        local _
        _, ino = entry_unpack(e)
        local s = redis.call('GET', k_inode(p, ino))
        if s then return { tonumber(ino), s } end
        return fail('ENOENT', 'entry without inode ' .. ino)
      end
    end
    local d, err = ns.dir(p, args[1], ns.caller(args[3], args[4]))
    if err then return err end
    if name == '.' then
      ino = args[1]
    elseif name == '..' then
      ino = istr(d.parent)
    else
      local bad = ns.name_error(name)
      if bad then return bad end
      local _
      _, ino = ns.entry(p, args[1], name)
      if not ino then return fail('ENOENT', 'no such entry') end
    end
    local s = redis.call('GET', k_inode(p, ino))
    if not s then return fail('ENOENT', 'entry without inode ' .. ino) end
    return { tonumber(ino), s }
  end,
  flags = { 'no-writes' },
}

-- af_readlink: a symlink's target.
-- KEYS: setting. ARGV: ino. Returns the target bytes.
-- Errors: ENOENT (no such inode), EINVAL (not a symlink). Read-only.
redis.register_function{
  function_name = 'af_readlink',
  callback = function(keys, args)
    local p = prefix_of(keys)
    local target = redis.call('GET', k_symlink(p, args[1]))
    if target then return target end
    if redis.call('EXISTS', k_inode(p, args[1])) == 1 then
      return fail('EINVAL', 'inode ' .. args[1] .. ' is not a symlink')
    end
    return fail('ENOENT', 'no inode ' .. args[1])
  end,
  flags = { 'no-writes' },
}

-- af_readdir: one page of a directory (HSCAN: an entry present for the whole listing is
-- returned at least once; the Python side drops repeats), optionally with every entry's attrs.
-- KEYS: setting. ARGV: ino, cursor, count hint, plus ("1"/"0"), uid, gids.
-- Returns {next cursor ("0" = done), {name, entry, name, entry, ...}, {attr|false, ...}}.
-- Errors: ENOENT, ENOTDIR, EACCES (read permission on the directory). Read-only.
redis.register_function{
  function_name = 'af_readdir',
  callback = function(keys, args)
    local p = prefix_of(keys)
    local d = attr_get(p, args[1])
    if not d then return fail('ENOENT', 'no such directory ' .. args[1]) end
    if ftype(d) ~= T_DIR then return fail('ENOTDIR', 'inode ' .. args[1] .. ' is not a directory') end
    if not may(d, ns.caller(args[5], args[6]), 4) then return fail('EACCES', 'read permission denied') end
    local page = redis.call('HSCAN', k_entries(p, args[1]), args[2], 'COUNT', args[3])
    local flat, attrs = page[2], {}
    if args[4] == '1' then
      -- MGET in batches: Lua's unpack() is limited by the C stack (LUAI_MAXCSTACK 8000).
      local batch = {}
      local function flush()
        if #batch == 0 then return end
        local got = redis.call('MGET', unpack(batch))
        for j = 1, #batch do attrs[#attrs + 1] = got[j] end
        batch = {}
      end
      for i = 2, #flat, 2 do
        local _, ino = entry_unpack(flat[i])
        batch[#batch + 1] = k_inode(p, ino)
        if #batch == 1000 then flush() end
      end
      flush()
    end
    return { page[1], flat, attrs }
  end,
  flags = { 'no-writes' },
}

-- af_statfs: what statfs needs, in one round trip.
-- KEYS: setting. ARGV: none. Returns {used space (live files plus what only checkpoints keep,
-- `hpinned`), used inodes, capacity (0 = unlimited), inode limit (0 = unlimited)}. Errors: none.
-- Read-only.
redis.register_function{
  function_name = 'af_statfs',
  callback = function(keys, args)
    local p = prefix_of(keys)
    local lim = limits(p)
    local v = redis.call('MGET', k_named(p, 'usedspace'), k_named(p, 'hpinned'))
    return { (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0),
      tonumber(redis.call('GET', k_named(p, 'totalinodes')) or '0'), lim.capacity, lim.inodes }
  end,
  flags = { 'no-writes' },
}
