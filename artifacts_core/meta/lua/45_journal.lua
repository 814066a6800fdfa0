-- 45_journal.lua: reading the workspace's journal, its retention, and the caller's tag.
--
-- The journal (00_common.lua: change(), journal_session()) is the list `journal`: one change
-- record per change, in the order the changes happened; `jbase` counts the records retention
-- has dropped from its head, so record i of the list has position jbase + i, stable for its
-- lifetime: readers use positions as cursors (meta/journal.py). Sessions append (RPUSH, inside
-- the mutating functions) and read; only full-rights callers (the orchestrator, a local stack)
-- trim, through af_journal_trim.

-- The server time of a record, in microseconds (fields [4] seconds and [5] microseconds).
local function record_usec(r)
  local s, u = string.match(r, '^[^%z]*%z[^%z]*%z[^%z]*%z[^%z]*%z(%d+)%z(%d+)')
  if not s then return 0 end
  return tonumber(s) * 1000000 + tonumber(u)
end

-- The index of the first record at or after `usec` in the journal list of length `n` (n when
-- none): a binary search, since records are appended in time order (a server clock stepped
-- back makes it approximate, never wrong about what it returns).
local function first_at(jkey, n, usec)
  local lo, hi = 0, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if record_usec(redis.call('LINDEX', jkey, mid)) < usec then lo = mid + 1 else hi = mid end
  end
  return lo
end

-- Most records one read returns (the caller pages with the position it gets back).
local JOURNAL_PAGE_MAX = 10000

-- The lists af_journal_read and af_journal_trim know, and each one's count of trimmed records:
-- the journal, and the read audit (`reads`, the opt-in records of af_open; 00_common.lua).
local JOURNAL_LISTS = { journal = 'jbase', reads = 'rbase' }

-- af_journal_read: records from a position, or from a time.
-- KEYS: setting or the caller's sess<sid>. ARGV: position ('' = from the time), count (1 ..
--   10000), time in microseconds ('' = from the position; with a time, the first record at or
--   after it), list ('journal', the default, or 'reads': the read audit, with its own positions).
-- Returns {base, end, first, record...}: base = the position of the oldest record kept, end =
--   the position the next record will get, first = the position of the first record returned
--   (a position below base was trimmed: the reply starts at base).
-- Errors: EINVAL (count, position, time).
redis.register_function{
  function_name = 'af_journal_read',
  callback = function(keys, args)
    local p = prefix_of(keys)
    local list = (args[4] and args[4] ~= '') and args[4] or 'journal'
    if not JOURNAL_LISTS[list] then return fail('EINVAL', 'list must be journal or reads') end
    local jkey = k_named(p, list)
    local count = tonumber(args[2])
    if not count or count < 1 or count > JOURNAL_PAGE_MAX then
      return fail('EINVAL', 'count must be 1..' .. JOURNAL_PAGE_MAX)
    end
    local base = tonumber(redis.call('GET', k_named(p, JOURNAL_LISTS[list])) or '0')
    local n = redis.call('LLEN', jkey)
    local start
    if args[3] and args[3] ~= '' then
      local usec = tonumber(args[3])
      if not usec then return fail('EINVAL', 'time must be microseconds') end
      start = first_at(jkey, n, usec)
    else
      local pos = tonumber(args[1])
      if not pos or pos < 0 then return fail('EINVAL', 'position must be a number >= 0') end
      start = math.min(math.max(pos - base, 0), n)
    end
    local out = { base, base + n, base + start }
    if start < n then
      for _, r in ipairs(redis.call('LRANGE', jkey, start, start + count - 1)) do out[#out + 1] = r end
    end
    return out
  end,
  flags = { 'no-writes' },
}

-- Retention of one list: drop records from its head past `maxn` or older than `maxage`, at
-- most `budget`. Returns dropped, left, more (1 when the budget stopped it).
local function trim_list(p, list, maxn, maxage, budget, offset)
  local jkey = k_named(p, list)
  local n = redis.call('LLEN', jkey)
  local drop = 0
  if maxn > 0 and n > maxn then drop = n - maxn end
  if maxage > 0 and drop < n then
    local t = redis.call('TIME')
    local cutoff = (tonumber(t[1]) + offset - maxage) * 1000000 + tonumber(t[2])
    drop = math.max(drop, first_at(jkey, n, cutoff))
  end
  local more = 0
  if drop > budget then drop, more = budget, 1 end
  if drop > 0 then
    redis.call('LTRIM', jkey, drop, -1)
    redis.call('INCRBY', k_named(p, JOURNAL_LISTS[list]), drop)
  end
  return drop, n - drop, more
end

-- af_journal_trim: the retention: drop records from the head of the journal, and of the read
-- audit, while there are more than `max records` or the oldest is older than `max age` (each
-- list on its own), at most `budget` per list per call.
-- KEYS: setting (full rights only: session users may not write `journal` or `reads` but by
--   RPUSH, nor `jbase`/`rbase`). ARGV: max records (0 = no limit), max age in seconds (0 = no
--   limit), budget, now offset (seconds added to the server clock: tests inject time).
-- Returns {records dropped, journal records left, more (1 when the budget stopped it)}.
-- Errors: EINVAL (arguments).
register_allow_oom('af_journal_trim', function(keys, args)
  local p = prefix_of(keys)
  local maxn, maxage, budget = tonumber(args[1]), tonumber(args[2]), tonumber(args[3])
  if not (maxn and maxage and budget) or maxn < 0 or maxage < 0 or budget < 1 then
    return fail('EINVAL', 'max records, max age and budget must be numbers >= 0 (budget >= 1)')
  end
  local offset = tonumber(args[4]) or 0
  local drop, left, more = trim_list(p, 'journal', maxn, maxage, budget, offset)
  local rdrop, _, rmore = trim_list(p, 'reads', maxn, maxage, budget, offset)
  return { drop + rdrop, left, math.max(more, rmore) }
end)

-- af_session_tag: set (or, with '', clear) the caller's tag, which the change records of its
-- session's later calls carry (the agent API's tool-call id).
-- KEYS: the caller's sess<sid>. ARGV: tag (at most 256 bytes, no NUL), which ('call': the
--   per-call tag `ctag`, which a client sets and clears around one call in one MULTI, and which
--   takes precedence; otherwise the session's `tag`).
-- Returns 1, or 0 when the session is gone. Errors: EINVAL (no session, tag too long or with NUL).
register_allow_oom('af_session_tag', function(keys, args)
  local p, sid = session_of(keys)
  local tag = args[1] or ''
  if sid == '0' then return fail('EINVAL', 'a tag needs a session') end
  if #tag > 256 or string.find(tag, '%z') then return fail('EINVAL', 'tag over 256 bytes or with NUL') end
  if not session_alive(p, sid) then return 0 end
  local field = args[2] == 'call' and 'ctag' or 'tag'
  if tag == '' then
    redis.call('HDEL', k_session(p, sid), field)
  else
    redis.call('HSET', k_session(p, sid), field, tag)
  end
  return 1
end)

-- ---- paths at read time ------------------------------------------------------------------
-- Entries scanned at most per af_journal_paths call to find the names of directories (a
-- directory's name is found by scanning its parent's entries: the metadata keeps no reverse
-- index). A path past the budget is reported unknown.
local PATH_SCAN_BUDGET = 100000

-- The name under which `dir` holds `ino`, scanning its entries; nil if none (or over budget).
local function name_in(p, dir, ino, state)
  local cursor = '0'
  repeat
    local page = redis.call('HSCAN', k_entries(p, dir), cursor, 'COUNT', 1000)
    cursor = page[1]
    local items = page[2]
    state.scanned = state.scanned + #items / 2
    for i = 1, #items, 2 do
      local _, eino = entry_unpack(items[i + 1])
      if eino == ino then return items[i] end
    end
    if state.scanned > PATH_SCAN_BUDGET then return nil end
  until cursor == '0'
  return nil
end

-- The current path of inode `ino` ('/' the root, '/.trash' the trash), or nil when it has no
-- name any more (or finding it is over budget). `hint_parent`/`hint_name`: where a record last
-- saw it, checked first.
local function path_of(p, ino, hint_parent, hint_name, state, depth)
  if ino == ROOT_INO then return '/' end
  if ino == TRASH_INO then return '/.trash' end
  if depth > 256 then return nil end  -- deeper than any path the VFS resolves
  local known = state.dirs[ino]
  if known ~= nil then return known or nil end
  local parent, name
  if hint_parent and hint_parent ~= '' and hint_parent ~= '0' then
    local e = redis.call('HGET', k_entries(p, hint_parent), hint_name)
    if e then
      local _, eino = entry_unpack(e)
      if eino == ino then parent, name = hint_parent, hint_name end
    end
  end
  if not parent then
    local a = attr_get(p, ino)
    if not a or a.nlink == 0 then return nil end
    parent = a.parent ~= 0 and istr(a.parent) or redis.call('HRANDFIELD', k_parents(p, ino))
    if not parent then return nil end
    name = name_in(p, parent, ino, state)
  end
  local result = nil
  if name then
    local pp = path_of(p, parent, nil, nil, state, depth + 1)
    if pp then result = (pp == '/' and '' or pp) .. '/' .. name end
  end
  if not hint_parent then state.dirs[ino] = result or false end  -- directories, cached per call
  return result
end

-- af_journal_paths: the current paths of inodes, for readers of the journal.
-- KEYS: setting or the caller's sess<sid>. ARGV: triples (ino, parent, name) — parent and name
--   where a record saw it (empty: unknown), checked first.
-- Returns one path (bytes) per triple, or false when the inode has no name any more.
-- Errors: EINVAL (arguments not in triples).
redis.register_function{
  function_name = 'af_journal_paths',
  callback = function(keys, args)
    local p = prefix_of(keys)
    if #args % 3 ~= 0 then return fail('EINVAL', 'arguments come in triples: ino, parent, name') end
    local state = { dirs = {}, scanned = 0 }
    local out = {}
    for i = 1, #args, 3 do
      out[#out + 1] = path_of(p, args[i], args[i + 1], args[i + 2], state, 0) or false
    end
    return out
  end,
  flags = { 'no-writes' },
}
