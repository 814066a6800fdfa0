-- 30_locks.lua: BSD flock and POSIX record locks, across hosts and sessions.
--
-- Storage: each session keeps its own locks in `locks<sid>` (hash), so no session ever writes a
-- key another session's locks live in (DESIGN.md §10). Field: the inode; value: that session's
-- locks on it, one block per lock owner, concatenated:
--   owner (16 lower-case hex digits: the lock owner the VFS passes, FUSE lock_owner or file
--   handle), flock ('R' shared, 'W' exclusive, '-' none), count (u32), then `count` POSIX ranges
--   of 24 bytes each, sorted by start and never overlapping each other: type u32 (0 F_RDLCK,
--   1 F_WRLCK: the Linux values), pid u32, start u64, end u64 (inclusive; 2^63-1 = "to end of
--   file").
-- A conflict check reads the inode's field in the locks hash of every session of the
-- workspace's `sessions` index (one HGET each: a handful of sessions usually), its own included
-- (other owners of the same session conflict too). A session's death is DEL of its own hash.
--
-- What a session may do to other sessions' lock entries: nothing. It reads them to find
-- conflicts; only its own hash is writable by its ACL user. Locks of a dead session are released
-- by the stale-session sweep, which runs with full rights (the orchestrator, or a client with a
-- full-rights Redis user), and by the orchestrator when it revokes the session.
--
-- A lock function never blocks: it grants (1) or reports a conflict (0). Waiting is the
-- caller's loop (meta/locks.py) with capped exponential backoff, so a blocked waiter costs at
-- most ~10 calls a second. (Wake-up by pub/sub was left out: a denied PUBLISH inside a function
-- would fail after its writes.)
--
-- Offsets: Lua numbers are doubles, exact up to 2^53. An end at or beyond 2^53 means "to end
-- of file" (no file can be that large); it is stored as 2^63-1 exactly (packed as two u32
-- halves) and handled as LK_INF inside.

local F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2
local LK_EXACT = 9007199254740992  -- 2^53: the last offset a double holds exactly
local LK_INF = 9223372036854775808  -- 2^63 as a double: "to end of file"
local LK_REC_FMT = '>I4I4I4I4I4I4'  -- type, pid, start hi/lo, end hi/lo (= '>IIQQ')
local LK_REC_SIZE = 24
local LK_OWNER_FMT = '>c16c1I4'  -- owner hex, flock, number of POSIX ranges
local LK_OWNER_SIZE = 21
local TWO32 = 4294967296

-- Session and lock functions declare the calling session's own `sess<sid>` key as KEYS[1]
-- (FCALL needs write permission on its declared keys, and a session's ACL user may write its own
-- session keys and no other's): the prefix AND the session id come from it, so a function can
-- act only for the session whose key the caller may write. A `setting` key (a full-rights client
-- without a session) means session '0'.
local function session_of(keys)
  local p, sid = string.match(keys[1] or '', '^({u_%d+_w_%d+}:)sess(%d+)$')
  if p then return p, sid end
  return prefix_of(keys), '0'
end

-- Whether session `sid` is live: registered and not ended (ending drops `sess<sid>` first).
local function session_alive(p, sid)
  return sid ~= '0' and redis.call('EXISTS', k_session(p, sid)) == 1
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

-- A session's locks on one inode: a list of {owner = hex, f = 'R'|'W'|'-', recs = {...}}.
local function lk_decode(blob)
  local owners = {}
  if not blob then return owners end
  local off = 1
  while off + LK_OWNER_SIZE - 1 <= #blob do
    local owner, f, n = struct.unpack(LK_OWNER_FMT, blob, off)
    off = off + LK_OWNER_SIZE
    local recs = lk_unpack(string.sub(blob, off, off + n * LK_REC_SIZE - 1))
    off = off + n * LK_REC_SIZE
    owners[#owners + 1] = { owner = owner, f = f, recs = recs }
  end
  return owners
end

local function lk_encode(owners)
  local parts = {}
  for _, o in ipairs(owners) do
    if o.f ~= '-' or #o.recs > 0 then
      parts[#parts + 1] = struct.pack(LK_OWNER_FMT, o.owner, o.f, #o.recs) .. lk_pack(o.recs)
    end
  end
  return table.concat(parts)
end

-- This session's owners on `ino`, and the entry of `owner` (created when `create`).
local function lk_mine(p, sid, ino, owner, create)
  local owners = lk_decode(redis.call('HGET', k_slocks(p, sid), ino))
  for _, o in ipairs(owners) do
    if o.owner == owner then return owners, o end
  end
  if not create then return owners, nil end
  local o = { owner = owner, f = '-', recs = {} }
  owners[#owners + 1] = o
  return owners, o
end

-- Write back this session's owners on `ino` (the field goes when nothing is left).
local function lk_save(p, sid, ino, owners)
  local blob = lk_encode(owners)
  if blob == '' then
    redis.call('HDEL', k_slocks(p, sid), ino)
  else
    redis.call('HSET', k_slocks(p, sid), ino, blob)
  end
end

-- Every other (session, owner) holding locks on `ino`: calls visit(sid, o) for each; stops and
-- returns what visit returns when it is not nil.
local function lk_others(p, sid, ino, owner, visit)
  for _, s2 in ipairs(session_ids(p)) do
    local blob = redis.call('HGET', k_slocks(p, s2), ino)
    if blob then
      for _, o in ipairs(lk_decode(blob)) do
        if not (s2 == sid and o.owner == owner) then
          local r = visit(s2, o)
          if r ~= nil then return r end
        end
      end
    end
  end
  return nil
end

-- The first POSIX range of ANOTHER owner that conflicts with [s, e] of type `t`, and its session.
local function lk_conflict(p, sid, ino, owner, t, s, e)
  local found, holder
  lk_others(p, sid, ino, owner, function(s2, o)
    for _, r in ipairs(o.recs) do
      if r.s <= e and s <= r.e and (t == F_WRLCK or r.t == F_WRLCK) then
        found, holder = r, s2
        return true
      end
    end
    return nil
  end)
  return found, holder
end

-- Session `sid` is gone: its locks go with its own hash.
local function release_session_locks(p, sid)
  redis.call('DEL', k_slocks(p, sid))
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
-- KEYS: the caller's sess<sid>. ARGV: ino, sid (ignored: KEYS[1] names the session), owner
-- (hex), op ('R' shared, 'W' exclusive, 'U' unlock).
-- Returns 1 when done, 0 on a conflict with another owner (the caller waits or says EAGAIN).
-- As Linux does, a conversion that conflicts first drops the lock already held (flock(2): "the
-- existing lock is first removed"); otherwise two shared holders upgrading would deadlock.
-- Errors: EINVAL (op or owner), ENOLCK (no session), ESTALE (session swept), ENOENT (no inode).
-- All checks before the first write.
register_allow_oom('af_flock', function(keys, args)
  local p, sid = session_of(keys)
  local ino, owner, op = args[1], args[3], args[4]
  if #owner ~= 16 then return fail('EINVAL', 'lock owner must be 16 hex digits') end
  if op == 'U' then
    if sid == '0' then return 1 end
    local owners, mine = lk_mine(p, sid, ino, owner, false)
    if mine and mine.f ~= '-' then
      mine.f = '-'
      lk_save(p, sid, ino, owners)
    end
    return 1
  end
  if op ~= 'R' and op ~= 'W' then return fail('EINVAL', 'flock op must be R, W or U') end
  local err = lock_target_error(p, sid, ino)
  if err then return err end
  local owners, mine = lk_mine(p, sid, ino, owner, true)
  if mine.f == op then return 1 end
  local conflict = lk_others(p, sid, ino, owner, function(_, o)
    if o.f ~= '-' and (op == 'W' or o.f == 'W') then return true end
    return nil
  end)
  if conflict then
    if mine.f ~= '-' then
      mine.f = '-'
      lk_save(p, sid, ino, owners)
    end
    return 0
  end
  mine.f = op
  lk_save(p, sid, ino, owners)
  return 1
end)

-- af_setlk: set a POSIX record lock range of one owner (F_SETLK; F_SETLKW loops in Python).
-- KEYS: the caller's sess<sid>. ARGV: ino, sid (ignored), owner (hex), type (0 F_RDLCK,
-- 1 F_WRLCK, 2 F_UNLCK), start, end (inclusive; >= 2^53 = to end of file), pid.
-- Returns 1 when done, 0 when another owner holds a conflicting range (nothing changed).
-- Errors: EINVAL (type, range or owner), ENOLCK, ESTALE, ENOENT. All checks before the first
-- write.
register_allow_oom('af_setlk', function(keys, args)
  local p, sid = session_of(keys)
  local ino, owner = args[1], args[3]
  local t, s, e, pid = tonumber(args[4]), lk_offset(args[5]), lk_offset(args[6]), tonumber(args[7]) or 0
  if #owner ~= 16 then return fail('EINVAL', 'lock owner must be 16 hex digits') end
  if t ~= F_RDLCK and t ~= F_WRLCK and t ~= F_UNLCK then return fail('EINVAL', 'lock type') end
  if not s or not e or s > e then return fail('EINVAL', 'lock range') end
  if t == F_UNLCK then
    if sid == '0' then return 1 end
    local owners, mine = lk_mine(p, sid, ino, owner, false)
    if mine and #mine.recs > 0 then
      mine.recs = lk_update(mine.recs, t, pid, s, e)
      lk_save(p, sid, ino, owners)
    end
    return 1
  end
  local err = lock_target_error(p, sid, ino)
  if err then return err end
  if lk_conflict(p, sid, ino, owner, t, s, e) then return 0 end
  local owners, mine = lk_mine(p, sid, ino, owner, true)
  mine.recs = lk_update(mine.recs, t, pid, s, e)
  lk_save(p, sid, ino, owners)
  return 1
end)

-- af_getlk: F_GETLK — the first range of another owner that would block [start, end] of `type`.
-- KEYS: the caller's sess<sid> (or setting: no session). ARGV: ino, sid (ignored), owner (hex),
-- type (0 F_RDLCK, 1 F_WRLCK), start, end.
-- Returns nil when nothing conflicts, else one packed 24-byte record (type, pid, start, end).
-- The pid is reported only for a holder in the caller's own session: another host's pid would
-- name an unrelated process here (JuiceFS does the same); it is 0 otherwise.
-- Errors: EINVAL. Read-only.
redis.register_function{
  function_name = 'af_getlk',
  callback = function(keys, args)
    local p, sid = session_of(keys)
    local ino, owner = args[1], args[3]
    local t, s, e = tonumber(args[4]), lk_offset(args[5]), lk_offset(args[6])
    if t ~= F_RDLCK and t ~= F_WRLCK then return fail('EINVAL', 'lock type') end
    if not s or not e or s > e then return fail('EINVAL', 'lock range') end
    local r, holder = lk_conflict(p, sid, ino, owner, t, s, e)
    if not r then return false end
    local out = { t = r.t, pid = holder == sid and r.pid or 0, s = r.s, e = r.e }
    return lk_pack({ out })
  end,
  flags = { 'no-writes' },
}

-- af_lock_release: drop one owner's locks on an inode (flush drops its POSIX locks, release
-- drops the handle's flock). KEYS: the caller's sess<sid>. ARGV: ino, sid (ignored), owner
-- (hex), which ('p', 'f' or 'pf'). Returns how many lock records were removed (a flock counts
-- one, the POSIX ranges of the owner one). Errors: none.
register_allow_oom('af_lock_release', function(keys, args)
  local p, sid = session_of(keys)
  local ino, owner, which = args[1], args[3], args[4]
  if sid == '0' then return 0 end
  local owners, mine = lk_mine(p, sid, ino, owner, false)
  if not mine then return 0 end
  local n = 0
  if string.find(which, 'p', 1, true) and #mine.recs > 0 then
    mine.recs = {}
    n = n + 1
  end
  if string.find(which, 'f', 1, true) and mine.f ~= '-' then
    mine.f = '-'
    n = n + 1
  end
  if n > 0 then lk_save(p, sid, ino, owners) end
  return n
end)
