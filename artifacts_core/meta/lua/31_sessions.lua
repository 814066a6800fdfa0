-- 31_sessions.lua: client sessions, open-file registration, stale-session cleanup.
--
-- Keys: `sessions` (zset: sid scored by expiry, server time in seconds), `sessioninfo` (hash:
-- sid -> JSON), `sess<sid>` (set: inodes the session holds open), `o<ino>` (hash: sid -> open
-- count), and the lock keys of 30_locks.lua. `jobs` (hash: job name -> last run) elects the
-- one client that sweeps stale sessions per interval.
--
-- Invariant: a session is live while its `sessioninfo` field exists. Ending a session (clean
-- close or the sweep) drops that field FIRST, so from then on its heartbeat, opens and lock
-- requests are refused (ESTALE) even while the rest of its state is still being released in
-- bounded steps; the `sessions` member goes last, once nothing is left.

-- Server time as fractional seconds (expiry scores).
local function now_f()
  local sec, ns = now()
  return sec + ns / 1e9, sec, ns
end

-- Election for a background job: true (and jobs[name] = now) when the job last ran more than
-- `interval` seconds ago or never; false when another client ran it within the interval.
local function job_elect(p, name, interval, t)
  local last = tonumber(redis.call('HGET', k_named(p, 'jobs'), name))
  if last and t - last < interval then return false end
  redis.call('HSET', k_named(p, 'jobs'), name, string.format('%.6f', t))
  return true
end

-- Deregister up to `budget` open inodes of session `sid`; an unlinked (sustained) inode that no
-- session holds open any more is freed. Returns (inodes handled, inodes freed).
local function release_session_opens(p, sid, sec, budget)
  if budget <= 0 then return 0, 0 end
  local inos = redis.call('SPOP', k_held(p, sid), budget)
  local freed = 0
  for _, ino in ipairs(inos) do
    local okey = k_opens(p, ino)
    redis.call('HDEL', okey, sid)
    if redis.call('EXISTS', okey) == 0 then
      local a = attr_get(p, ino)
      if a and a.nlink == 0 and a.flags % 2 == 1 then
        free_inode(p, ino, a, sec)
        freed = freed + 1
      end
    end
  end
  return #inos, freed
end

-- End session `sid`, releasing at most `budget` inodes' worth of locks and opens.
-- Returns (done, freed, used): done when nothing of the session is left; used = inodes handled.
local function session_end(p, sid, sec, budget)
  redis.call('HDEL', k_named(p, 'sessioninfo'), sid)
  redis.call('HDEL', k_named(p, 'slicebatches'), sid)  -- its uploads are no longer in flight (gc)
  local used = release_session_locks(p, sid, budget)
  local n, freed = release_session_opens(p, sid, sec, budget - used)
  used = used + n
  if redis.call('EXISTS', k_locked(p, sid), k_held(p, sid)) == 0 then
    redis.call('ZREM', k_named(p, 'sessions'), sid)
    return true, freed, used
  end
  return false, freed, used
end

-- af_session_new: register a client session.
-- KEYS: setting or sessions. ARGV: info JSON, timeout (seconds).
-- Returns the new session id (> 0).
-- Errors: EINVAL (timeout).
redis.register_function('af_session_new', function(keys, args)
  local p = sprefix_of(keys)
  local timeout = tonumber(args[2])
  if not timeout or timeout <= 0 then return fail('EINVAL', 'session timeout') end
  local t = now_f()
  local sid = redis.call('INCR', k_named(p, 'nextsession'))
  redis.call('ZADD', k_named(p, 'sessions'), string.format('%.6f', t + timeout), sid)
  redis.call('HSET', k_named(p, 'sessioninfo'), sid, args[1])
  return sid
end)

-- af_session_beat: heartbeat; push the session's expiry to now + timeout.
-- KEYS: setting or sessions. ARGV: sid, timeout (seconds).
-- Returns 1, or 0 when the session is gone (it missed heartbeats and was cleaned up, or was
-- closed): it is NOT re-registered, since its opens and locks were already released.
-- Errors: EINVAL (timeout).
redis.register_function('af_session_beat', function(keys, args)
  local p = sprefix_of(keys)
  local sid, timeout = args[1], tonumber(args[2])
  if not timeout or timeout <= 0 then return fail('EINVAL', 'session timeout') end
  if not session_alive(p, sid) then return 0 end
  if not redis.call('ZSCORE', k_named(p, 'sessions'), sid) then return 0 end
  redis.call('ZADD', k_named(p, 'sessions'), 'XX', string.format('%.6f', now_f() + timeout), sid)
  return 1
end)

-- af_session_close: a clean end of this client's session: its locks released, its opens
-- deregistered (unlinked files nobody else holds are freed), its records removed.
-- KEYS: setting or sessions. ARGV: sid, budget (inodes handled per call: bounds the time
-- Redis is busy), may_free ('0' for a read-only session, whose ACL allows writing only session and lock keys:
-- it releases its locks and ends its liveness, and leaves its opens to the stale-session sweep
-- of a read-write client, which frees what needs freeing once the expiry passes).
-- Returns {done (1/0), inodes freed}; call again while done is 0. Errors: none.
redis.register_function('af_session_close', function(keys, args)
  local p = sprefix_of(keys)
  local sid, budget = args[1], tonumber(args[2]) or 1000
  local _, sec = now_f()
  if args[3] == '0' then
    redis.call('HDEL', k_named(p, 'sessioninfo'), sid)
    release_session_locks(p, sid, budget)
    return { redis.call('EXISTS', k_locked(p, sid)) == 0 and 1 or 0, 0 }
  end
  local done, freed = session_end(p, sid, sec, budget)
  return { done and 1 or 0, freed }
end)

-- af_session_sweep: clean up sessions whose expiry has passed (missed heartbeats).
-- KEYS: setting or sessions. ARGV: own sid (never swept), now offset (seconds added to the
-- server clock when comparing expiries: tests), election interval (seconds), force (1: continue a sweep this
-- client won without a new election), max sessions per call, budget (inodes per call).
-- Returns {-1, 0, 0} when another client won the election within the interval, else
-- {sessions ended, more (1 when expired sessions remain), inodes freed}. Errors: none.
redis.register_function('af_session_sweep', function(keys, args)
  local p = sprefix_of(keys)
  local own, offset = args[1], tonumber(args[2]) or 0
  local interval, force = tonumber(args[3]) or 0, args[4] == '1'
  local max_sessions, budget = tonumber(args[5]) or 100, tonumber(args[6]) or 1000
  local t, sec = now_f()
  if not force and not job_elect(p, 'session_sweep', interval, t) then return { -1, 0, 0 } end
  local stale = redis.call('ZRANGEBYSCORE', k_named(p, 'sessions'), '-inf',
    string.format('%.6f', t + offset), 'LIMIT', 0, max_sessions + 1)
  local ended, freed, more, seen = 0, 0, 0, 0
  for _, sid in ipairs(stale) do
    if sid ~= own then
      seen = seen + 1
      if seen > max_sessions or budget <= 0 then
        more = 1
        break
      end
      local done, f, used = session_end(p, sid, sec, budget)
      freed = freed + f
      budget = budget - math.max(used, 1)
      if done then ended = ended + 1 else more = 1 end
    end
  end
  return { ended, more, freed }
end)

-- af_open: the open-time attribute fetch, registering the open in the same call.
-- KEYS: setting or sessions. ARGV: ino, access mask (4 read, 2 write, 0 none), uid, gids,
-- sid (0: no session, nothing registered).
-- Returns the packed attr. Errors: ENOENT, EISDIR (write on a directory), EACCES, ESTALE (this
-- session was swept). All checks before the first write.
redis.register_function('af_open', function(keys, args)
  local p = sprefix_of(keys)
  local ino, mask, sid = args[1], tonumber(args[2]) or 0, args[5]
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
    redis.call('HINCRBY', k_opens(p, ino), sid, 1)
    redis.call('SADD', k_held(p, sid), ino)
  end
  return s
end)

-- af_close: deregister opens (one per inode argument; repeat an inode to close it twice). An
-- unlinked (sustained) inode with no open left anywhere is freed.
-- KEYS: setting or sessions. ARGV: sid, may_free ('0' for a read-only session: the last open
-- of an inode that would be freed stays registered, so the session's sweep frees it), ino, ...
-- Returns the number of inodes freed. An open the session no longer holds (already swept) is
-- ignored. Errors: none.
redis.register_function('af_close', function(keys, args)
  local p = sprefix_of(keys)
  local sid, may_free = args[1], args[2] ~= '0'
  local _, sec = now_f()
  local freed = 0
  for i = 3, #args do
    local ino = args[i]
    local okey = k_opens(p, ino)
    local count = tonumber(redis.call('HGET', okey, sid))
    local last = count == 1 and redis.call('HLEN', okey) == 1
    local a = last and attr_get(p, ino)
    local sustained = a and a.nlink == 0 and a.flags % 2 == 1
    if count and count > 1 then
      redis.call('HINCRBY', okey, sid, -1)
    elseif sustained and not may_free then
      -- keep the registration: the read-only session cannot free it; its sweep will
    elseif sustained then
      redis.call('HDEL', okey, sid)
      redis.call('SREM', k_held(p, sid), ino)
      free_inode(p, ino, a, sec)
      freed = freed + 1
    elseif count then
      redis.call('HDEL', okey, sid)
      redis.call('SREM', k_held(p, sid), ino)
    end
  end
  return freed
end)
