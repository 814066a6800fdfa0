-- 31_sessions.lua: client sessions, open-file registration, stale-session cleanup.
--
-- Keys (DESIGN.md §10: a session writes only what it owns):
-- * a session's own: `sess<sid>` (hash: `info` JSON, `expire` server seconds, `user` when the
--   id was assigned to an ACL user), `opens<sid>` (hash: ino -> open count), `locks<sid>`
--   (30_locks.lua). A session's ACL user may write these three keys and no other session's.
-- * shared, written only with full rights (the orchestrator, a client with a full-rights Redis
--   user): `sessions` (zset: every session that may hold state, scored by the time the sweep
--   should look at it next), `nextsession` (the id counter), `sessusers` (hash: ACL user ->
--   "<first id>:<count>", the block of ids assigned to it, and '#<sid>' -> user), and the
--   stale-session sweep.
--
-- Two ways to get a session id. A full-rights client allocates one (af_session_new with the
-- `setting` key: the next id, index entry). A session ACL user cannot write shared keys, so
-- the orchestrator assigns a small block of ids when it mints the user (af_session_assign:
-- index entries and `sessusers`; one id per client the grant serves at once); the client reads
-- `sessusers` and registers the first id of the block no live client holds (af_session_new with
-- that `sess<sid>` key; EBUSY: try the next). Assigned ids stay in the index until the
-- orchestrator revokes the user (af_session_end), so a restarted client of the same grant
-- registers one again and the sweep still sees it.
--
-- Session ids follow the server clock (next_id, 00_common.lua): an id handed out in writes a
-- Redis rollback lost is never handed out again, so a client whose session was lost fails its
-- heartbeat, opens and locks (ESTALE) instead of acting as another client's session, and no
-- ACL user is given another's session keys.
--
-- Invariant: a session is live while `sess<sid>` exists. Ending a session (clean close, the
-- sweep, a revocation) drops that key FIRST, so from then on its heartbeat, opens and lock
-- requests are refused (ESTALE) even while the rest of its state is still being released in
-- bounded steps; an allocated id leaves the index last, once nothing of it is left.

-- Server time as fractional seconds (expiry scores).
local function now_f()
  local sec, ns = now()
  return sec + ns / 1e9, sec, ns
end

local function fmt_t(t) return string.format('%.6f', t) end

-- Largest session description (host, pid, mountpoint, version: a few hundred bytes).
local SESSION_INFO_MAX = 4096
-- How long the sweep leaves an assigned id that holds nothing before it looks again (seconds):
-- a client registering it meanwhile is seen at the latest then (as one session timeout).
local SESSION_IDLE_RECHECK = 60

-- Election for a background job: true (and jobs[name] = now) when the job last ran more than
-- `interval` seconds ago or never; false when another client ran it within the interval.
local function job_elect(p, name, interval, t)
  local last = tonumber(redis.call('HGET', k_named(p, 'jobs'), name))
  if last and t - last < interval then return false end
  redis.call('HSET', k_named(p, 'jobs'), name, fmt_t(t))
  return true
end

-- Whether `sid` was assigned to an ACL user by the orchestrator (it then stays in the index).
local function session_assigned(p, sid)
  return redis.call('HEXISTS', k_named(p, 'sessusers'), '#' .. sid) == 1
end

-- Deregister up to `budget` open inodes of session `sid`; an unlinked (sustained) inode that no
-- session holds open any more is freed. Returns (inodes handled, inodes freed).
local function release_session_opens(p, sid, sec, budget)
  if budget <= 0 then return 0, 0 end
  local okey = k_sopens(p, sid)
  local inos = redis.call('HRANDFIELD', okey, budget)
  local freed = 0
  for _, ino in ipairs(inos) do
    redis.call('HDEL', okey, ino)
    if not open_elsewhere(p, ino, sid) then
      local a = attr_get(p, ino)
      if a and a.nlink == 0 and a.flags % 2 == 1 then
        free_inode(p, ino, a, sec)
        freed = freed + 1
      end
    end
  end
  return #inos, freed
end

-- End session `sid`, releasing at most `budget` inodes' worth of opens (its locks go at once).
-- Returns (done, freed, used): done when nothing of the session is left; used = inodes handled.
-- An allocated id leaves the index when done; an assigned one stays (the orchestrator removes it).
local function session_end(p, sid, sec, budget)
  redis.call('DEL', k_session(p, sid))
  redis.call('HDEL', k_named(p, 'slicebatches'), sid)  -- its uploads are no longer in flight (gc)
  release_session_locks(p, sid)
  local used, freed = release_session_opens(p, sid, sec, budget)
  if redis.call('EXISTS', k_sopens(p, sid)) == 0 then
    if not session_assigned(p, sid) then redis.call('ZREM', k_named(p, 'sessions'), sid) end
    return true, freed, used
  end
  return false, freed, used
end

-- af_session_new: register a client session.
-- KEYS: `setting` (a full-rights client: a new id is allocated) or the caller's `sess<sid>` (the
-- id the orchestrator assigned to this ACL user, read from `sessusers`).
-- ARGV: info JSON (at most 4096 bytes), timeout (seconds).
-- Returns the session id (> 0).
-- Errors: EINVAL (timeout, info too long), EPERM (an id not assigned, or no longer: the session
-- was revoked), EBUSY (the id is registered by another live client). All checks before the
-- first write. An assigned id whose previous client died unswept is taken over: that client's
-- locks are dropped, its opens stay registered until this session ends. The registration is
-- journaled (journal_session, 00_common.lua), so a record's actor stays known after it ends.
redis.register_function('af_session_new', function(keys, args)
  local p, sid = session_of(keys)
  local timeout = tonumber(args[2])
  if not timeout or timeout <= 0 then return fail('EINVAL', 'session timeout') end
  if #args[1] > SESSION_INFO_MAX then return fail('EINVAL', 'session description over 4096 bytes') end
  local t = now_f()
  if sid == '0' then
    sid = istr(next_id(p, 'nextsession', 1))
    redis.call('ZADD', k_named(p, 'sessions'), fmt_t(t + timeout), sid)
    redis.call('HSET', k_session(p, sid), 'info', args[1], 'expire', fmt_t(t + timeout))
    journal_session(p, sid, nil, args[1])
    return tonumber(sid)
  end
  local user = redis.call('HGET', k_named(p, 'sessusers'), '#' .. sid)
  if not user or not redis.call('ZSCORE', k_named(p, 'sessions'), sid) then
    return fail('EPERM', 'session ' .. sid .. ' is not assigned (or was revoked); ask for a new session')
  end
  local cur = redis.call('HMGET', k_session(p, sid), 'expire', 'info')
  if cur[1] and tonumber(cur[1]) > t then
    return fail('EBUSY', 'session ' .. sid .. ' is in use by another client: ' .. (cur[2] or '?'))
  end
  if cur[1] then release_session_locks(p, sid) end  -- its previous client died unswept
  redis.call('HSET', k_session(p, sid), 'info', args[1], 'expire', fmt_t(t + timeout), 'user', user)
  journal_session(p, sid, user, args[1])
  return tonumber(sid)
end)

-- af_session_beat: heartbeat; push the session's expiry to now + timeout.
-- KEYS: the caller's sess<sid>. ARGV: sid (ignored: KEYS[1] names it), timeout (seconds).
-- Returns 1, or 0 when the session is gone (it missed heartbeats and was cleaned up, or was
-- closed): it is NOT re-registered, since its opens and locks were already released. An
-- allocated id's index score follows (its client has full rights); an assigned id's is brought
-- up to date by the sweep when it comes due.
-- Errors: EINVAL (timeout).
register_allow_oom('af_session_beat', function(keys, args)
  local p, sid = session_of(keys)
  local timeout = tonumber(args[2])
  if not timeout or timeout <= 0 then return fail('EINVAL', 'session timeout') end
  if not session_alive(p, sid) then return 0 end
  local expire = fmt_t(now_f() + timeout)
  redis.call('HSET', k_session(p, sid), 'expire', expire)
  if redis.call('HEXISTS', k_session(p, sid), 'user') == 0 then
    -- an allocated id (a full-rights client, which may write the index): keep its score exact
    redis.call('ZADD', k_named(p, 'sessions'), 'XX', expire, sid)
  end
  return 1
end)

-- af_session_close: a clean end of this client's session: its locks released, its opens
-- deregistered (unlinked files nobody else holds are freed), its records removed.
-- KEYS: the caller's sess<sid>. ARGV: sid (ignored), budget (inodes handled per call: bounds
-- the time Redis is busy), may_free ('0' for a read-only session, whose ACL allows writing only
-- its own session keys: it releases its locks and ends its liveness, and leaves its opens to the
-- stale-session sweep, which frees what needs freeing).
-- Returns {done (1/0), inodes freed}; call again while done is 0. Errors: none.
register_allow_oom('af_session_close', function(keys, args)
  local p, sid = session_of(keys)
  local budget = tonumber(args[2]) or 1000
  if sid == '0' then return { 1, 0 } end
  local _, sec = now_f()
  if args[3] == '0' then
    redis.call('DEL', k_session(p, sid))
    release_session_locks(p, sid)
    return { 1, 0 }
  end
  local done, freed = session_end(p, sid, sec, budget)
  return { done and 1 or 0, freed }
end)

-- af_session_sweep: clean up sessions whose expiry has passed (missed heartbeats). Needs full
-- rights: it writes other sessions' keys.
-- KEYS: setting. ARGV: own sid (never swept), now offset (seconds added to the server clock when
-- comparing expiries: tests), election interval (seconds), force (1: no election: the
-- orchestrator, or a client continuing a sweep it won), max sessions per call, budget (inodes
-- per call).
-- Returns {-1, 0, 0} when another client won the election within the interval, else
-- {sessions ended, more (1 when expired sessions remain), inodes freed}. Errors: none.
register_allow_oom('af_session_sweep', function(keys, args)
  local p = prefix_of(keys)
  local own, offset = args[1], tonumber(args[2]) or 0
  local interval, force = tonumber(args[3]) or 0, args[4] == '1'
  local max_sessions, budget = tonumber(args[5]) or 100, tonumber(args[6]) or 1000
  local t, sec = now_f()
  local at = t + offset
  if not force and not job_elect(p, 'session_sweep', interval, t) then return { -1, 0, 0 } end
  local due = redis.call('ZRANGEBYSCORE', k_named(p, 'sessions'), '-inf', fmt_t(at), 'LIMIT', 0,
    max_sessions + 1)
  local ended, freed, more, seen = 0, 0, 0, 0
  for _, sid in ipairs(due) do
    if sid ~= own then
      seen = seen + 1
      if seen > max_sessions or budget <= 0 then
        more = 1
        break
      end
      local expire = tonumber(redis.call('HGET', k_session(p, sid), 'expire'))
      if expire and expire > at then
        redis.call('ZADD', k_named(p, 'sessions'), fmt_t(expire), sid)  -- alive: look again then
      else
        local done, f, used = session_end(p, sid, sec, budget)
        freed = freed + f
        budget = budget - math.max(used, 1)
        if not done then
          more = 1
        elseif session_assigned(p, sid) then
          -- counted when it held something; an idle assigned id is only looked at again later
          if expire or used > 0 then ended = ended + 1 end
          redis.call('ZADD', k_named(p, 'sessions'), fmt_t(at + SESSION_IDLE_RECHECK), sid)
        else
          ended = ended + 1
        end
      end
    end
  end
  return { ended, more, freed }
end)

-- The ids assigned to ACL user `user`, from `sessusers` ("<first>:<count>"), or nil.
local function assigned_ids(p, user)
  local block = redis.call('HGET', k_named(p, 'sessusers'), user)
  if not block then return nil end
  local first, count = string.match(block, '^(%d+):(%d+)$')
  local ids = {}
  for i = 0, tonumber(count) - 1 do ids[#ids + 1] = istr(tonumber(first) + i) end
  return ids
end

-- af_session_assign: the session ids of the session ACL user `user` (the orchestrator, full
-- rights, when it mints the user): `count` consecutive ids, one per client the grant may serve at
-- once (a mount, the volume of `artifacts exec` and its warm mount, ...). A second call returns
-- the same block.
-- KEYS: setting. ARGV: user, count. Returns the first id. Errors: EINVAL (count).
redis.register_function('af_session_assign', function(keys, args)
  local p = prefix_of(keys)
  local users = k_named(p, 'sessusers')
  local ids = assigned_ids(p, args[1])
  if ids then return tonumber(ids[1]) end
  local count = tonumber(args[2])
  if not count or count < 1 or count > 64 then return fail('EINVAL', 'session id count') end
  local last = next_id(p, 'nextsession', count)
  local first = last - count + 1
  redis.call('HSET', users, args[1], istr(first) .. ':' .. istr(count))
  local t = fmt_t(now_f())  -- the sweep looks at them soon
  for sid = first, last do
    redis.call('HSET', users, '#' .. istr(sid), args[1])
    redis.call('ZADD', k_named(p, 'sessions'), t, istr(sid))
  end
  return first
end)

-- af_session_end: end every session of ACL user `user` now, whatever its expiry (the
-- orchestrator, full rights, when it revokes the user): liveness first, then locks and opens in
-- bounded steps; when nothing is left, its ids leave the index and `sessusers`.
-- KEYS: setting. ARGV: user, budget. Returns {done (1/0), inodes freed}; call again while done
-- is 0. Errors: none.
register_allow_oom('af_session_end', function(keys, args)
  local p = prefix_of(keys)
  local ids = assigned_ids(p, args[1])
  if not ids then return { 1, 0 } end
  local _, sec = now_f()
  local budget, freed, all_done = tonumber(args[2]) or 1000, 0, true
  for _, sid in ipairs(ids) do
    local done, f, used = session_end(p, sid, sec, budget)
    freed = freed + f
    budget = math.max(budget - used, 0)
    if not done then all_done = false end
  end
  if not all_done then return { 0, freed } end
  local users = k_named(p, 'sessusers')
  for _, sid in ipairs(ids) do
    redis.call('ZREM', k_named(p, 'sessions'), sid)
    redis.call('HDEL', users, '#' .. sid)
  end
  redis.call('HDEL', users, args[1])
  return { 1, freed }
end)

-- af_open: the open-time attribute fetch, registering the open in the same call; with the
-- volume's read audit on (limits `journal_reads`), an open for reading is recorded (read_audit).
-- KEYS: the caller's sess<sid>, or setting (no session: nothing registered). ARGV: ino, access
-- mask (4 read, 2 write, 0 none), uid, gids, sid (ignored).
-- Returns the packed attr. Errors: ENOENT, EISDIR (write on a directory), EACCES, ESTALE (this
-- session was swept). All checks before the first write.
register_allow_oom('af_open', function(keys, args)
  local p, sid = session_of(keys)
  local ino, mask = args[1], tonumber(args[2]) or 0
  local s = redis.call('GET', k_inode(p, ino))
  if not s then return fail('ENOENT', 'inode ' .. ino) end
  local a = attr_unpack(s)
  if mask % 4 >= 2 and ftype(a) == T_DIR then return fail('EISDIR', 'inode ' .. ino) end
  if mask > 0 and not may(a, caller(args[3], args[4]), mask) then
    return fail('EACCES', 'inode ' .. ino)
  end
  if sid ~= '0' then
    if not session_alive(p, sid) then
      return fail('ESTALE', 'session ' .. sid .. ' expired and was cleaned up')
    end
    redis.call('HINCRBY', k_sopens(p, sid), ino, 1)
  end
  if mask % 8 >= 4 and redis.call('HGET', k_named(p, 'limits'), 'journal_reads') == '1' then
    read_audit(p, keys, ino, mask % 4 >= 2 and 'open-rw' or 'open')
  end
  return s
end)

-- af_close: deregister opens (one per inode argument; repeat an inode to close it twice). An
-- unlinked (sustained) inode with no open left anywhere is freed.
-- KEYS: the caller's sess<sid>. ARGV: sid (ignored), may_free ('0' for a read-only session: the
-- last open of an inode that would be freed stays registered, so the session's sweep frees it),
-- ino, ...
-- Returns the number of inodes freed. An open the session no longer holds (already swept) is
-- ignored. Errors: none.
register_allow_oom('af_close', function(keys, args)
  local p, sid = session_of(keys)
  if sid == '0' then return 0 end
  local may_free = args[2] ~= '0'
  local okey = k_sopens(p, sid)
  local _, sec = now_f()
  local freed = 0
  for i = 3, #args do
    local ino = args[i]
    local count = tonumber(redis.call('HGET', okey, ino))
    if count and count > 1 then
      redis.call('HINCRBY', okey, ino, -1)
    elseif count then
      local a = attr_get(p, ino)
      local sustained = a and a.nlink == 0 and a.flags % 2 == 1 and not open_elsewhere(p, ino, sid)
      if sustained and may_free then
        redis.call('HDEL', okey, ino)
        free_inode(p, ino, a, sec)
        freed = freed + 1
      elseif not sustained then
        redis.call('HDEL', okey, ino)
      end  -- sustained, read-only: keep the registration; the sweep frees it
    end
  end
  return freed
end)
