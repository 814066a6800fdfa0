-- 05_format.lua: formatting a workspace's namespace.

-- af_format: write the volume's setting, its limits, the root directory and the trash directory.
-- KEYS: setting. ARGV: setting JSON, uuid, capacity, inodes, inline_limit, inline_cap, trash_days,
--   journal_reads ('1': af_open for reading appends to the read audit; absent: '0').
-- Returns 1 when formatted now, 0 when this same volume (same uuid) was already formatted.
-- Errors: EEXIST when another volume (other uuid) is formatted under this prefix.
-- All checks before the first write.
redis.register_function('af_format', function(keys, args)
  local p = prefix_of(keys)
  local existing = redis.call('GET', k_named(p, 'setting'))
  if existing then
    local ok, decoded = pcall(cjson.decode, existing)
    if ok and type(decoded) == 'table' and decoded.uuid == args[2] then return 0 end
    return fail('EEXIST', 'this workspace prefix already holds another volume')
  end
  local sec, ns = now()
  redis.call('SET', k_named(p, 'setting'), args[1])
  redis.call('HSET', k_named(p, 'limits'), 'capacity', args[3], 'inodes', args[4],
    'inline_limit', args[5], 'inline_cap', args[6], 'trash_days', args[7],
    'journal_reads', args[8] == '1' and '1' or '0')
  -- Root: world-writable with the sticky bit (1777, as /tmp), since agents and users of many uids
  -- share a workspace, and none may rename or remove another's files there (a plain 0777, as
  -- JuiceFS makes it, let any local user of an allow_other mount rename root's files). The trash
  -- (inode 2) is root-only and never linked into the tree.
  local root = { flags = 0, mode = T_DIR * 4096 + 1023, uid = 0, gid = 0, atime = sec, atime_ns = ns,
    mtime = sec, mtime_ns = ns, ctime = sec, ctime_ns = ns, nlink = 2, length = 0, rdev = 0,
    parent = 1, btime = sec, btime_ns = ns, gen = 1 }
  attr_put(p, ROOT_INO, root)
  root.mode = T_DIR * 4096 + 365  -- 0555
  root.parent = 1
  attr_put(p, TRASH_INO, root)
  -- Inodes up to 15 are reserved for the system (1 root, 2 trash); nextinode is the last used.
  redis.call('SET', k_named(p, 'nextinode'), 15)
  redis.call('SETNX', k_named(p, 'nextslice'), 0)
  redis.call('SET', k_named(p, 'totalinodes'), 2)
  redis.call('SET', k_named(p, 'usedspace'), 2 * space_of(0))
  return 1
end)

-- af_journal_reads: turn the read audit (docs/journal.md, "Reads") on or off on a formatted
-- volume: the setting (JSON, rewritten by the caller with its `journal_reads` changed) and its
-- mirror in `limits`, which af_open reads.
-- KEYS: setting (full rights: session users may not write setting or limits). ARGV: '1' or '0',
--   the new setting JSON, the uuid it must still have.
-- Returns 1. Errors: ENOENT (not formatted), ESTALE (another volume's setting now), EINVAL.
redis.register_function('af_journal_reads', function(keys, args)
  local p = prefix_of(keys)
  if args[1] ~= '1' and args[1] ~= '0' then return fail('EINVAL', 'journal_reads must be 1 or 0') end
  local existing = redis.call('GET', k_named(p, 'setting'))
  if not existing then return fail('ENOENT', 'no volume is formatted under this prefix') end
  local ok, decoded = pcall(cjson.decode, existing)
  if not ok or type(decoded) ~= 'table' or decoded.uuid ~= args[3] then
    return fail('ESTALE', 'the volume setting changed: read it again')
  end
  redis.call('SET', k_named(p, 'setting'), args[2])
  redis.call('HSET', k_named(p, 'limits'), 'journal_reads', args[1])
  return 1
end)

-- af_set_limits: change the volume's capacity and inode limit (`artifacts quota set`).
-- KEYS: setting. ARGV: the setting JSON as read, the new setting JSON (the same but for its
-- capacity and inodes, encoded by the caller: Lua's cjson would round large integers), capacity
-- bytes, inode limit (each a non-negative decimal integer; 0 = unlimited).
-- Returns 1. Errors: EPERM when KEYS[1] is not the setting key (only a caller that may write the
-- setting -- the orchestrator's admin user -- changes limits; sessions may not); ENOENT when no
-- volume is formatted here; EAGAIN when the setting changed since the caller read it; EINVAL for
-- a limit that is not a non-negative integer. A limit below what is used is allowed: nothing is
-- removed, growth is refused (ENOSPC, check_quota) until usage falls below it.
-- All checks before the first write.
redis.register_function('af_set_limits', function(keys, args)
  local p = prefix_of(keys)
  if keys[1] ~= k_named(p, 'setting') then return fail('EPERM', 'limits are changed through the setting key') end
  local current = redis.call('GET', k_named(p, 'setting'))
  if not current then return fail('ENOENT', 'no volume is formatted under this prefix') end
  if current ~= args[1] then return fail('EAGAIN', 'the volume setting changed meanwhile; read it again') end
  if not string.match(args[3] or '', '^%d+$') or not string.match(args[4] or '', '^%d+$') then
    return fail('EINVAL', 'limits must be non-negative integers')
  end
  redis.call('SET', k_named(p, 'setting'), args[2])
  redis.call('HSET', k_named(p, 'limits'), 'capacity', args[3], 'inodes', args[4])
  return 1
end)
