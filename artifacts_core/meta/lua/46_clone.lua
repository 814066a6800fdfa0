-- 46_clone.lua: af_clone -- a file or a whole tree copied in metadata only, sharing blocks.
--
-- New inodes get the source's attributes (mode, owner, times; ctime and btime are now, as a
-- copy's are), xattrs and symlink targets; a file's chunk lists are copied record for record and
-- every record takes one more slice reference (blocks are shared, nothing is read or written in
-- S3). A tree is cloned in ONE call, so no other operation sees half of it and the source is one
-- consistent cut; CLONE.MAX bounds the inodes per call (docs/history.md: larger trees are
-- refused with EFBIG; a checkpoint is the atomic copy of any size). Hard links inside the tree
-- become separate files.

local CLONE = {}
-- Inodes one call may clone: ~10 us of Redis time each (attr, entries, a few short lists), so a
-- full call stays around 100 ms at worst -- the longest a clone may block the workspace's Redis.
CLONE.MAX = 10000

-- The inodes of the tree at `ino` (breadth first), or nil when there are more than `max`.
function CLONE.collect(p, ino, max)
  local order = { ino }
  local i = 1
  while i <= #order do
    local cur = order[i]
    local a = attr_get(p, cur)
    if a and ftype(a) == T_DIR then
      local flat = redis.call('HGETALL', k_entries(p, cur))
      for j = 2, #flat, 2 do
        local _, child = entry_unpack(flat[j])
        order[#order + 1] = child
        if #order > max then return nil end
      end
    end
    i = i + 1
  end
  return order
end

-- Writes: a copy of inode `src` (attr `a`) as a new inode under `parent`; returns its number.
function CLONE.copy_inode(p, src, a, parent, sec, ns_, t)
  local ino = alloc_inode(p)
  local b = {}
  for k, v in pairs(a) do b[k] = v end
  b.parent = tonumber(parent)
  b.ctime, b.ctime_ns, b.btime, b.btime_ns, b.gen = sec, ns_, sec, ns_, 1
  b.flags = 0
  if ftype(a) == T_DIR then b.nlink = 2 else b.nlink = 1 end
  attr_put(p, ino, b)
  local x = redis.call('HGETALL', k_xattrs(p, src))
  if #x > 0 then redis.call('HSET', k_xattrs(p, ino), unpack(x)) end
  if ftype(a) == T_SYMLINK then
    redis.call('SET', k_symlink(p, ino), redis.call('GET', k_symlink(p, src)) or '')
  elseif ftype(a) == T_FILE then
    for _, i in ipairs(DATA.chunk_indexes(p, src, 0, math.huge)) do
      local had, recs = HIST.copy(k_chunk(p, src, i), k_chunk(p, ino, i), 'c' .. src .. '_' .. istr(i))
      if had then
        HIST.ref_records(p, recs)
        DATA.note_chunk(p, ino, i)
        redis.call('ZADD', k_named(p, 'inlinechunks'), t, DATA.chunk_member(ino, i))
      end
    end
  end
  return ino
end

-- af_clone: clone file or tree `src` as `name` in directory `parent`.
-- KEYS: setting. ARGV: src ino, parent ino, name, uid, gids, max inodes (<= CLONE.MAX).
-- Returns {new ino, inodes cloned, attr of the new root}.
-- Errors: ENOENT (source or parent missing), ENOTDIR, EACCES (read on the source, search/write
--   on the parent), EEXIST, EINVAL (cloning a directory into itself, or the trash), EFBIG (more
--   inodes than the bound), ENOSPC (capacity or inode quota), ENAMETOOLONG.
-- All checks before the first write.
redis.register_function('af_clone', function(keys, args)
  local p = prefix_of(keys)
  local src, parent, name = args[1], args[2], args[3]
  local c = ns.caller(args[4], args[5] or '')
  local max = math.min(CLONE.MAX, tonumber(args[6]) or CLONE.MAX)
  local nerr = ns.name_error(name)
  if nerr then return nerr end
  local a = attr_get(p, src)
  if not a or (a.nlink == 0) then return fail('ENOENT', 'no such source inode ' .. src) end
  if src == TRASH_INO or src == ROOT_INO then return fail('EINVAL', 'the root and the trash cannot be cloned') end
  if not may(a, c, 4) then return fail('EACCES', 'no read permission on the source') end
  local d, derr = ns.dir(p, parent, c)
  if not d then return derr end
  if not may(d, c, 3) then return fail('EACCES', 'no write permission on the target directory') end
  if ns.entry(p, parent, name) then return fail('EEXIST', 'the target exists') end
  if ftype(a) == T_DIR and (parent == src or ns.is_ancestor(p, src, parent)) then
    return fail('EINVAL', 'a directory cannot be cloned into itself')
  end
  local order = CLONE.collect(p, src, max)
  if not order then
    return fail('EFBIG', 'the tree has more than ' .. istr(max) .. ' inodes: clone its subdirectories, '
      .. 'or take a checkpoint (an atomic copy of any size)')
  end
  local space = 0
  for _, ino in ipairs(order) do
    local x = attr_get(p, ino)
    space = space + space_of(x and ftype(x) == T_FILE and x.length or 0)
  end
  local qerr = ns.quota(p, space, #order)
  if qerr then return qerr end
  -- writes from here on
  local t, sec, ns_ = DATA.now_f()
  local new_of = {}
  local root = CLONE.copy_inode(p, src, a, parent, sec, ns_, t)
  new_of[src] = root
  for k = 2, #order do
    local ino = order[k]
    local x = attr_get(p, ino)
    if x then
      -- its directory was cloned earlier (breadth first); a hard link (attr parent 0) gets its
      -- parent from the entries pass below
      local np = new_of[istr(x.parent)]
      new_of[ino] = CLONE.copy_inode(p, ino, x, np or root, sec, ns_, t)
    end
  end
  -- entries and directory link counts of the copies
  for _, ino in ipairs(order) do
    local x = attr_get(p, ino)
    if x and ftype(x) == T_DIR then
      local flat = redis.call('HGETALL', k_entries(p, ino))
      local subdirs = 0
      for j = 1, #flat, 2 do
        local typ, child = entry_unpack(flat[j + 1])
        if new_of[child] then
          redis.call('HSET', k_entries(p, new_of[ino]), flat[j], entry_pack(typ, new_of[child]))
          local ca = attr_get(p, new_of[child])
          if ca.parent ~= tonumber(new_of[ino]) then ca.parent = tonumber(new_of[ino]); attr_put(p, new_of[child], ca) end
          if typ == T_DIR then subdirs = subdirs + 1 end
        end
      end
      local na = attr_get(p, new_of[ino])
      na.nlink = 2 + subdirs
      attr_put(p, new_of[ino], na)
    end
  end
  redis.call('HSET', k_entries(p, parent), name, entry_pack(ftype(a), root))
  if ftype(a) == T_DIR then d.nlink = d.nlink + 1 end
  touch(d, true, sec, ns_)
  attr_put(p, parent, d)
  redis.call('INCRBY', k_named(p, 'usedspace'), space)
  redis.call('INCRBY', k_named(p, 'totalinodes'), #order)
  change(p, keys, redis.call('TIME'), 'e', 'clone', root, parent, name)
  return { tonumber(root), #order, redis.call('GET', k_inode(p, root)) }
end)
