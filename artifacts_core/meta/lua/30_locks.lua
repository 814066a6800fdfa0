-- 30_locks.lua: BSD flock and POSIX record locks, across hosts and sessions.
--
-- Storage (the JuiceFS layout, DESIGN.md §2):
-- * lockf<ino> (hash): field "<sid>_<owner>" -> 'R' | 'W'. `owner` is the lock owner the VFS
--   passes (FUSE lock_owner / file handle), a 64-bit int as 16 lower-case hex digits.
-- * lockp<ino> (hash): same field -> that owner's POSIX ranges, packed 24-byte records sorted by
--   start and never overlapping each other: type u32 (0 F_RDLCK, 1 F_WRLCK: the Linux values),
--   pid u32, start u64, end u64 (inclusive; 2^63-1 = "to end of file").
-- * locked<sid> (set): inodes whose lock hashes may hold fields of session `sid`; the stale
--   session sweep (31_sessions.lua) walks it. Kept exact: a member is removed when the session
--   holds nothing on that inode any more, so a long-lived session does not grow it forever.
--
-- A lock function never blocks: it grants (1) or reports a conflict (0). Waiting is the
-- caller's loop (meta/locks.py) with capped exponential backoff, so a blocked waiter costs at
-- most ~10 calls a second. (Wake-up by pub/sub was left out: session ACL users get no channel
-- permissions, and a denied PUBLISH inside a function would fail after its writes.)
--
-- Offsets: Lua numbers are doubles, exact up to 2^53. An end at or beyond 2^53 means "to end
-- of file" (no file can be that large); it is stored as 2^63-1 exactly (packed as two u32
-- halves) and handled as LK_INF inside.

local F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2
local LK_EXACT = 9007199254740992  -- 2^53: the last offset a double holds exactly
local LK_INF = 9223372036854775808  -- 2^63 as a double: "to end of file"
local LK_REC_FMT = '>I4I4I4I4I4I4'  -- type, pid, start hi/lo, end hi/lo (= '>IIQQ')
local LK_REC_SIZE = 24
local TWO32 = 4294967296

-- Session and lock functions accept the workspace's `sessions` key as KEYS[1] instead of
-- `setting`: FCALL needs write permission on its declared keys (checked on Redis 7.0), and a
-- read-only session's ACL user may write only session and lock keys (DESIGN.md §10).
local function sprefix_of(keys)
  local p = string.match(keys[1] or '', '^({u_%d+_w_%d+}:)sessions$')
  return p or prefix_of(keys)
end

-- Whether session `sid` is live (registered and not yet swept: the sweep drops the info first).
local function session_alive(p, sid)
  return redis.call('HEXISTS', k_named(p, 'sessioninfo'), sid) == 1
end

local function lk_offset(s)
  local n = tonumber(s)
  if not n or n < 0 then return nil end
  if n >= LK_EXACT then return LK_INF end
  return n
end

local function lk_split(n)
  if n >= LK_EXACT then return 2147483647, 4294967295 end  -- 2^63-1
  local hi = math.floor(n / TWO32)
  return hi, n - hi * TWO32
end

local function lk_pack(recs)
  local parts = {}
  for i, r in ipairs(recs) do
    local sh, sl = lk_split(r.s)
    local eh, el = lk_split(r.e)
    parts[i] = struct.pack(LK_REC_FMT, r.t, r.pid, sh, sl, eh, el)
  end
  return table.concat(parts)
end

local function lk_unpack(blob)
  local recs = {}
  if not blob then return recs end
  for off = 1, #blob - LK_REC_SIZE + 1, LK_REC_SIZE do
    local t, pid, sh, sl, eh, el = struct.unpack(LK_REC_FMT, blob, off)
    local s, e = sh * TWO32 + sl, eh * TWO32 + el
    if s >= LK_EXACT then s = LK_INF end
    if e >= LK_EXACT then e = LK_INF end
    recs[#recs + 1] = { t = t, pid = pid, s = s, e = e }
  end
  return recs
end

-- The owner's ranges after setting [s, e] to type `t` (F_UNLCK removes): the old ranges minus
-- [s, e] (an unlock in the middle splits one), plus the new range, then adjacent or overlapping
-- ranges of the same type merged.
local function lk_update(recs, t, pid, s, e)
  local out = {}
  for _, r in ipairs(recs) do
    if r.e < s or r.s > e then
      out[#out + 1] = r
    else
      if r.s < s then out[#out + 1] = { t = r.t, pid = r.pid, s = r.s, e = s - 1 } end
      if r.e > e then out[#out + 1] = { t = r.t, pid = r.pid, s = e + 1, e = r.e } end
    end
  end
  if t ~= F_UNLCK then out[#out + 1] = { t = t, pid = pid, s = s, e = e } end
  table.sort(out, function(a, b) return a.s < b.s end)
  local merged = {}
  for _, r in ipairs(out) do
    local last = merged[#merged]
    if last and last.t == r.t and last.e ~= LK_INF and last.e + 1 >= r.s then
      if r.e > last.e then last.e = r.e end
      last.pid = pid ~= 0 and pid or last.pid
    else
      merged[#merged + 1] = { t = r.t, pid = r.pid, s = r.s, e = r.e }
    end
  end
  return merged
end

-- The first range of ANOTHER owner that conflicts with [s, e] of type `t`, with its field.
local function lk_conflict(all, field, t, s, e)
  for i = 1, #all, 2 do
    if all[i] ~= field then
      for _, r in ipairs(lk_unpack(all[i + 1])) do
        if r.s <= e and s <= r.e and (t == F_WRLCK or r.t == F_WRLCK) then return r, all[i] end
      end
    end
  end
  return nil
end

local function has_field_of(key, pre)
  for _, f in ipairs(redis.call('HKEYS', key)) do
    if string.sub(f, 1, #pre) == pre then return true end
  end
  return false
end

-- Drop `ino` from locked<sid> once the session holds no flock and no POSIX lock on it.
local function unmark_locked(p, sid, ino)
  local pre = sid .. '_'
  if not has_field_of(k_flocks(p, ino), pre) and not has_field_of(k_plocks(p, ino), pre) then
    redis.call('SREM', k_locked(p, sid), ino)
  end
end

-- Session `sid` is gone: remove its fields from the lock hashes of up to `budget` inodes of
-- locked<sid>. Returns how many inodes were handled.
local function release_session_locks(p, sid, budget)
  if budget <= 0 then return 0 end
  local inos = redis.call('SPOP', k_locked(p, sid), budget)
  local pre = sid .. '_'
  for _, ino in ipairs(inos) do
    for _, key in ipairs({ k_flocks(p, ino), k_plocks(p, ino) }) do
      for _, f in ipairs(redis.call('HKEYS', key)) do
        if string.sub(f, 1, #pre) == pre then redis.call('HDEL', key, f) end
      end
    end
  end
  return #inos
end

-- Checks before a lock is taken: a session to own it (its death releases the lock) that is
-- still live, and an inode that exists. Returns an error reply or nil.
local function lock_target_error(p, sid, ino)
  if sid == '0' then return fail('ENOLCK', 'locks need a registered session') end
  if not session_alive(p, sid) then
    return fail('ESTALE', 'session ' .. sid .. ' expired and was cleaned up; its locks are gone')
  end
  if redis.call('EXISTS', k_inode(p, ino)) == 0 then return fail('ENOENT', 'inode ' .. ino) end
  return nil
end

-- af_flock: take, convert or drop a BSD flock.
-- KEYS: setting or sessions. ARGV: ino, sid, owner (hex), op ('R' shared, 'W' exclusive,
-- 'U' unlock).
-- Returns 1 when done, 0 on a conflict with another owner (the caller waits or says EAGAIN).
-- As Linux does, a conversion that conflicts first drops the lock already held (flock(2): "the
-- existing lock is first removed"); otherwise two shared holders upgrading would deadlock.
-- Errors: EINVAL (op), ENOLCK (no session), ESTALE (session swept), ENOENT (no inode).
-- All checks before the first write.
redis.register_function('af_flock', function(keys, args)
  local p = sprefix_of(keys)
  local ino, sid, op = args[1], args[2], args[4]
  local field = sid .. '_' .. args[3]
  local key = k_flocks(p, ino)
  if op == 'U' then
    if redis.call('HDEL', key, field) == 1 then unmark_locked(p, sid, ino) end
    return 1
  end
  if op ~= 'R' and op ~= 'W' then return fail('EINVAL', 'flock op must be R, W or U') end
  local err = lock_target_error(p, sid, ino)
  if err then return err end
  local all = redis.call('HGETALL', key)
  local mine, conflict = nil, false
  for i = 1, #all, 2 do
    if all[i] == field then
      mine = all[i + 1]
    elseif op == 'W' or all[i + 1] == 'W' then
      conflict = true
    end
  end
  if mine == op then return 1 end
  if conflict then
    if mine then
      redis.call('HDEL', key, field)
      unmark_locked(p, sid, ino)
    end
    return 0
  end
  redis.call('HSET', key, field, op)
  redis.call('SADD', k_locked(p, sid), ino)
  return 1
end)

-- af_setlk: set a POSIX record lock range of one owner (F_SETLK; F_SETLKW loops in Python).
-- KEYS: setting or sessions. ARGV: ino, sid, owner (hex), type (0 F_RDLCK, 1 F_WRLCK,
-- 2 F_UNLCK), start, end (inclusive; >= 2^53 = to end of file), pid.
-- Returns 1 when done, 0 when another owner holds a conflicting range (nothing changed).
-- Errors: EINVAL (type or range), ENOLCK, ESTALE, ENOENT. All checks before the first write.
redis.register_function('af_setlk', function(keys, args)
  local p = sprefix_of(keys)
  local ino, sid = args[1], args[2]
  local field = sid .. '_' .. args[3]
  local t, s, e, pid = tonumber(args[4]), lk_offset(args[5]), lk_offset(args[6]), tonumber(args[7]) or 0
  if t ~= F_RDLCK and t ~= F_WRLCK and t ~= F_UNLCK then return fail('EINVAL', 'lock type') end
  if not s or not e or s > e then return fail('EINVAL', 'lock range') end
  local key = k_plocks(p, ino)
  if t == F_UNLCK then
    local blob = redis.call('HGET', key, field)
    if not blob then return 1 end
    local recs = lk_update(lk_unpack(blob), t, pid, s, e)
    if #recs == 0 then
      redis.call('HDEL', key, field)
      unmark_locked(p, sid, ino)
    else
      redis.call('HSET', key, field, lk_pack(recs))
    end
    return 1
  end
  local err = lock_target_error(p, sid, ino)
  if err then return err end
  local all = redis.call('HGETALL', key)
  if lk_conflict(all, field, t, s, e) then return 0 end
  local mine
  for i = 1, #all, 2 do
    if all[i] == field then mine = all[i + 1] end
  end
  redis.call('HSET', key, field, lk_pack(lk_update(lk_unpack(mine), t, pid, s, e)))
  redis.call('SADD', k_locked(p, sid), ino)
  return 1
end)

-- af_getlk: F_GETLK — the first range of another owner that would block [start, end] of `type`.
-- KEYS: setting or sessions. ARGV: ino, sid, owner (hex), type (0 F_RDLCK, 1 F_WRLCK), start,
-- end.
-- Returns nil when nothing conflicts, else one packed 24-byte record (type, pid, start, end).
-- The pid is reported only for a holder in the caller's own session: another host's pid would
-- name an unrelated process here (JuiceFS does the same); it is 0 otherwise.
-- Errors: EINVAL. Read-only.
redis.register_function{
  function_name = 'af_getlk',
  callback = function(keys, args)
    local p = sprefix_of(keys)
    local ino, sid = args[1], args[2]
    local t, s, e = tonumber(args[4]), lk_offset(args[5]), lk_offset(args[6])
    if t ~= F_RDLCK and t ~= F_WRLCK then return fail('EINVAL', 'lock type') end
    if not s or not e or s > e then return fail('EINVAL', 'lock range') end
    local all = redis.call('HGETALL', k_plocks(p, ino))
    local r, holder = lk_conflict(all, sid .. '_' .. args[3], t, s, e)
    if not r then return false end
    if string.match(holder, '^(%d+)_') ~= sid then r.pid = 0 end
    return lk_pack({ r })
  end,
  flags = { 'no-writes' },
}

-- af_lock_release: drop one owner's locks on an inode (flush drops its POSIX locks, release
-- drops the handle's flock). KEYS: setting or sessions. ARGV: ino, sid, owner (hex), which ('p', 'f' or
-- 'pf'). Returns how many lock fields were removed. Errors: none.
redis.register_function('af_lock_release', function(keys, args)
  local p = sprefix_of(keys)
  local ino, sid, which = args[1], args[2], args[4]
  local field = sid .. '_' .. args[3]
  local n = 0
  if string.find(which, 'p', 1, true) then n = n + redis.call('HDEL', k_plocks(p, ino), field) end
  if string.find(which, 'f', 1, true) then n = n + redis.call('HDEL', k_flocks(p, ino), field) end
  if n > 0 then unmark_locked(p, sid, ino) end
  return n
end)
