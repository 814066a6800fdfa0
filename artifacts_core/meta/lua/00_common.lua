-- 00_common.lua: what every function of the library shares.
--
-- The library is assembled by artifacts_core/meta/library.py from the files of this folder in
-- name order, as ONE Lua chunk: locals defined here are visible to every later file.
--
-- Conventions (every function follows them):
-- * KEYS[1] is the workspace's `setting` key, or the calling session's own `sess<sid>` key
--   (prefix_of). It routes the call in Redis Cluster; every other key is computed from the
--   prefix it carries (all in the same hash slot).
-- * ARGV carries the operation's arguments as strings; inode numbers stay strings when they only
--   build keys.
-- * Errors are returned as `return fail('ENOENT', 'message')`: the errno name is the first word,
--   mapped back once in Python (meta/client.py).
-- * Lua does not roll back: a function runs EVERY check before its first write.
-- * Implicit timestamps come from the server clock (`now()`), so hosts with skewed clocks agree.
-- * Every function that changes what a client may cache (names, attributes, data) calls
--   `change()` once per change, after its writes (the contract test lists the exceptions).
-- * Layouts below must match artifacts_core/meta/attrs.py (tested).

local LIB_VERSION = '@LIB_VERSION@'

local ATTR_FMT = '>BHI4I4i8I4i8I4i8I4I4I8I4I8i8I4I8'
local ENTRY_FMT = '>BI8'
local SLICE_FMT = '>I4I8I4I4I4B'
local SLICE_SIZE = 25
local CHUNK_SIZE = 67108864  -- 64 MiB: the unit of one slice list

local T_FIFO, T_CHR, T_DIR, T_BLK, T_FILE, T_SYMLINK, T_SOCK = 1, 2, 4, 6, 8, 10, 12
local ROOT_INO = '1'
local TRASH_INO = '2'  -- the trash root directory, shown as /.trash by the VFS
local FLAG_SUSTAINED = 1

local S_ISUID, S_ISGID, S_ISVTX = 2048, 1024, 512  -- 0o4000, 0o2000, 0o1000

local function fail(code, msg)
  return redis.error_reply(code .. ' ' .. (msg or ''))
end

-- ---- history: key-level copy-on-write (docs/history.md) --------------------------------------
-- A checkpoint is an epoch: `hcur` holds "<epoch>:<max ino>" of the newest live checkpoint. The
-- first write of a versioned key after checkpoint E preserves the key's value as E saw it in
-- `hk<E>:<suffix>` (or notes in `hx<E>` that it did not exist), inside the same function call.
-- The hook is the library's `redis.call` itself (the local `redis` below shadows the server's
-- table for every file of the library), so no function can write a versioned key and forget
-- it. Per call: one GET of `hcur` on the first versioned write, one HEXISTS per distinct key
-- not yet known to be preserved (HIST.known: a directory or a counter is asked about once).
-- COPY is not used (session ACL users may not run it: it can reach another database); each kind
-- is copied by its own commands.
-- The server's `redis` table, looked up when used: the one a library sees while loading has no
-- `call` (only registration); the callbacks run later with the full one.
local function server() return redis end
local function raw_call(...) return server().call(...) end
local HIST = { ep = nil, max = 0, stamp = '', seen = {} }  -- per-call state, reset by every callback wrapper
HIST.COPY_BATCH = 1000  -- fields per HSET/RPUSH/SADD: well under Lua's unpack limit (~8000)

-- Versioned key kinds: the namespace and data map, and the counters a restore brings back.
-- Returns the inode the key belongs to ('' for a counter), or nil for a key that is not versioned.
-- Dispatched on the first byte: this runs for every write command of every call.
local V_INODE = { [105] = true, [100] = true, [112] = true, [115] = true, [120] = true }  -- i d p s x
function HIST.versioned(suffix)
  local b = string.byte(suffix, 1)
  if V_INODE[b] then return string.match(suffix, '^.(%d+)$') end
  if b == 99 then  -- c
    return string.match(suffix, '^c(%d+)_%d+$') or string.match(suffix, '^ci(%d+)$')
  end
  if suffix == 'usedspace' or suffix == 'totalinodes' then return '' end
  return nil
end

function HIST.split(key)
  return string.match(key, '^({u_%d+_w_%d+}:)(.+)$')
end

-- Copy key `src` (of kind `suffix`) to the fresh key `dst`; returns whether `src` existed.
function HIST.copy(src, dst, suffix)
  local c = string.sub(suffix, 1, 1)
  if c == 'c' and string.sub(suffix, 2, 2) ~= 'i' then
    local recs = raw_call('LRANGE', src, 0, -1)
    if #recs == 0 then return false end
    for i = 1, #recs, HIST.COPY_BATCH do
      raw_call('RPUSH', dst, unpack(recs, i, math.min(#recs, i + HIST.COPY_BATCH - 1)))
    end
    return true, recs
  elseif c == 'c' then
    local m = raw_call('SMEMBERS', src)
    if #m == 0 then return false end
    for i = 1, #m, HIST.COPY_BATCH do
      raw_call('SADD', dst, unpack(m, i, math.min(#m, i + HIST.COPY_BATCH - 1)))
    end
    return true
  elseif c == 'd' or c == 'p' or c == 'x' then
    local h = raw_call('HGETALL', src)
    if #h == 0 then return false end
    for i = 1, #h, 2 * HIST.COPY_BATCH do
      raw_call('HSET', dst, unpack(h, i, math.min(#h, i + 2 * HIST.COPY_BATCH - 1)))
    end
    return true
  end
  local v = raw_call('GET', src)
  if not v then return false end
  raw_call('SET', dst, v)
  return true
end

-- One more (n = 1) or one less reference for every slice record of a copied chunk list; the
-- release side lives in 20_data.lua (DATA.release), which knows the deletion queues.
function HIST.ref_records(p, recs)
  for _, s in ipairs(recs) do
    local _, id, size = struct.unpack(SLICE_FMT, s)
    if id ~= 0 then
      raw_call('HINCRBY', p .. 'sliceref', string.format('%d_%d', id, size), 1)
    end
  end
end

-- The current checkpoint epoch (nil when none), read once per call: `hcur` is
-- "<epoch>:<max ino>:<stamp>" (the stamp may be empty: a checkpoint taken before stamps).
function HIST.current(p)
  if HIST.ep == nil then
    local v = raw_call('GET', p .. 'hcur')
    local e, mx, stamp = string.match(v or '', '^(%d+):(%d+):?(%d*)$')
    HIST.ep, HIST.max, HIST.stamp = e or false, tonumber(mx) or 0, stamp or ''
  end
  return HIST.ep or nil
end

-- Keys known to be preserved in a checkpoint, kept across calls (the library's locals outlive a
-- call): a directory or a counter written by every call then costs no HEXISTS from its third
-- change on. Only keys changed at least twice are remembered (the second change finds them
-- preserved), so a run of first changes -- a build writing each file once -- does not grow the
-- cache. Only a hint that saves a read: an entry is true for good (it is keyed by the
-- checkpoint's `hx<e>` key and its stamp, so a workspace deleted and formatted again under the
-- same prefix never meets an old entry; an `hx<e>` entry leaves only while `e` itself is deleted,
-- when preserving for it no longer matters), and an empty cache (a restart, a reload, a
-- failover) just asks Redis again. A checkpoint without a stamp is not cached. Bounded: past
-- KNOWN_MAX entries it starts over (a few MB of Lua memory at most).
HIST.KNOWN_MAX = 100000
HIST.known, HIST.known_n = {}, 0
local NO_CACHE = {}  -- a table nothing is remembered in (see remember)
function HIST.known_of(hx)
  if HIST.stamp == '' then return NO_CACHE end
  local id = hx .. '@' .. HIST.stamp
  local t = HIST.known[id]
  if not t then
    t = {}
    HIST.known[id] = t
  end
  return t
end
function HIST.remember(known, suffix)
  if known == NO_CACHE then return end
  if HIST.known_n >= HIST.KNOWN_MAX then
    HIST.known, HIST.known_n = {}, 0
    return
  end
  known[suffix] = true
  HIST.known_n = HIST.known_n + 1
end

-- Preserve `key` for the current checkpoint if this is its first change since: the hook. Cheap
-- exits first: once a call knows there is no checkpoint (one GET of `hcur`, at its first
-- versioned write), every later write of it costs one table lookup; the calling workspace's
-- prefix (HIST.p, from KEYS[1]) is compared as a plain prefix (a pattern match only for a key
-- of another form), and the kind is told by its first byte.
function HIST.cow(key)
  if HIST.ep == false or HIST.seen[key] then return end
  local p, suffix = HIST.p, nil
  if p and string.sub(key, 1, #p) == p then
    suffix = string.sub(key, #p + 1)
  else
    p, suffix = HIST.split(key)
    if not p then return end
  end
  local ino = HIST.versioned(suffix)
  if not ino then return end
  HIST.seen[key] = true
  local e = HIST.current(p)
  if not e or (ino ~= '' and tonumber(ino) > HIST.max) then return end
  local hx = p .. 'hx' .. e
  local known = HIST.known_of(hx)
  if known[suffix] then return end
  if raw_call('HEXISTS', hx, suffix) == 1 then
    HIST.remember(known, suffix)  -- changed again: a key worth remembering (a dir, a counter)
    return
  end
  local had, recs = HIST.copy(key, p .. 'hk' .. e .. ':' .. suffix, suffix)
  raw_call('HSET', hx, suffix, had and '1' or '0')
  if recs then HIST.ref_records(p, recs) end
end

-- Write commands and where their keys are: 1 = the first argument, 'all' = every argument,
-- 2 = the second (COPY's destination), 'both' = first and second (RENAME, SMOVE).
HIST.WRITES = {
  SET = 1, SETNX = 1, SETEX = 1, GETSET = 1, GETDEL = 1, APPEND = 1, SETRANGE = 1, INCR = 1,
  INCRBY = 1, DECR = 1, DECRBY = 1, HSET = 1, HSETNX = 1, HMSET = 1, HDEL = 1, HINCRBY = 1,
  RPUSH = 1, RPUSHX = 1, LPUSH = 1, LPUSHX = 1, LTRIM = 1, LSET = 1, LREM = 1, LPOP = 1, RPOP = 1,
  LINSERT = 1, SADD = 1, SREM = 1, SPOP = 1, EXPIRE = 1, PERSIST = 1,
  DEL = 'all', UNLINK = 'all', COPY = 2, RENAME = 'both', RENAMENX = 'both', SMOVE = 'both',
}

local function hooked_call(cmd, ...)
  local where = HIST.WRITES[cmd]
  if where then
    local a1, a2 = ...
    if where == 1 then HIST.cow(a1)
    elseif where == 2 then HIST.cow(a2)
    elseif where == 'both' then HIST.cow(a1); HIST.cow(a2)
    else for _, k in ipairs({ ... }) do HIST.cow(k) end end
  end
  return raw_call(cmd, ...)
end

-- Every callback starts with fresh per-call state (the library's locals outlive a call).
local function fresh(callback)
  return function(keys, args)
    HIST.ep, HIST.max, HIST.seen, HIST.declared = nil, 0, {}, keys[1] or ''
    HIST.p = string.match(HIST.declared, '^({u_%d+_w_%d+}:)')
    return callback(keys, args)
  end
end

-- The library's `redis`: the hooked `call`, wrapped registration, and the rest of the server's
-- API the library uses, forwarded (the sandbox has no setmetatable to forward everything).
local redis = {
  call = hooked_call,
  register_function = function(a, b)
    if b == nil then  -- the table form: { function_name, callback, flags }
      return server().register_function{ function_name = a.function_name,
        callback = fresh(a.callback), flags = a.flags }
    end
    return server().register_function(a, fresh(b))
  end,
  pcall = function(...) return server().pcall(...) end,
  error_reply = function(...) return server().error_reply(...) end,
  status_reply = function(...) return server().status_reply(...) end,
  sha1hex = function(...) return server().sha1hex(...) end,
  log = function(...) return server().log(...) end,
}

-- Redis refuses a function that may write once `used_memory` passes `maxmemory` (OOM, which the
-- client maps to ENOSPC), unless it is registered `allow-oom`. These are the functions a user
-- needs to get out of a full Redis, or to keep reading and stay alive in it: they free memory
-- (unlink, rmdir, truncate, close, session end, reclaim, trash expiry) or add a bounded amount
-- per call that the same session frees again (an open's registration, a lock, a heartbeat, a
-- rename's longer name, a trash entry). Everything that creates or commits stays refused.
local function register_allow_oom(name, callback)
  redis.register_function{ function_name = name, callback = callback, flags = { 'allow-oom' } }
end

-- Integer to decimal string without exponent notation (Lua 5.1 numbers are doubles).
local function istr(n)
  if type(n) == 'string' then return n end
  return string.format('%d', n)
end

-- A data change's lengths, for its change record: close_write (and af_truncate) note the length
-- the call gave file `ino` and the one it had; change() puts them in the journal's record.
-- Library state lives across calls (which never interleave), so every call starts without a
-- note: prefix_of, the first thing every function runs, clears it.
local noted_len = nil  -- { ino, old length, new length } or nil
local function note_length(ino, old, new) noted_len = { istr(ino), old, new } end

-- The workspace prefix from KEYS[1], checked: `{u_<digits>_w_<digits>}:setting`, or the
-- calling session's own `{u_<digits>_w_<digits>}:sess<sid>`. FCALL needs write permission on its
-- declared keys, and a session's ACL user may write its own session keys but not `setting`
-- (DESIGN.md §10), so a client with a session declares its session key.
local function prefix_of(keys)
  local sk = keys[1]
  local p = string.match(sk, '^({u_%d+_w_%d+}:)setting$') or string.match(sk, '^({u_%d+_w_%d+}:)sess%d+$')
  if not p then
    error('EINVAL first key must be a workspace setting or session key, got ' .. tostring(sk))
  end
  noted_len = nil
  return p
end

-- Key builders: the Lua spelling of meta/keys.py.
local function k_inode(p, ino) return p .. 'i' .. istr(ino) end
local function k_entries(p, ino) return p .. 'd' .. istr(ino) end
local function k_parents(p, ino) return p .. 'p' .. istr(ino) end
local function k_chunk(p, ino, indx) return p .. 'c' .. istr(ino) .. '_' .. istr(indx) end
local function k_inline(p, id) return p .. 'b' .. istr(id) end
local function k_symlink(p, ino) return p .. 's' .. istr(ino) end
local function k_xattrs(p, ino) return p .. 'x' .. istr(ino) end
local function k_named(p, name) return p .. name end  -- setting, counters, sliceref, delfiles, ...
-- A session's own keys (31_sessions.lua): written by that session alone (its ACL user may write
-- no other session's), read by everyone. Shared session bookkeeping (`sessions`, `sessusers`,
-- `nextsession`) is written only by full-rights clients and the orchestrator.
local function k_session(p, sid) return p .. 'sess' .. istr(sid) end    -- hash: info, expire, user
local function k_sopens(p, sid) return p .. 'opens' .. istr(sid) end    -- hash: ino -> open count
local function k_slocks(p, sid) return p .. 'locks' .. istr(sid) end    -- hash: ino -> its locks

-- Every session that may hold opens or locks: the members of the `sessions` index (a session
-- is added before it can register anything and removed only once it holds nothing).
local function session_ids(p)
  return redis.call('ZRANGE', k_named(p, 'sessions'), 0, -1)
end

-- Whether a session other than `except` holds `ino` open. Cost: one HEXISTS per session of the
-- workspace (a handful usually), paid when the last link of an inode goes or an unlinked
-- inode's last open closes.
local function open_elsewhere(p, ino, except)
  for _, sid in ipairs(session_ids(p)) do
    if sid ~= except and redis.call('HEXISTS', k_sopens(p, sid), ino) == 1 then return true end
  end
  return false
end

-- Server time as (seconds, nanoseconds, the TIME reply itself: {"<sec>", "<usec>"}, which is
-- what a change record carries -- formatting numbers back into strings costs more than a SET).
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]), tonumber(t[2]) * 1000, t
end

local function attr_unpack(s)
  local a = {}
  a.flags, a.mode, a.uid, a.gid, a.atime, a.atime_ns, a.mtime, a.mtime_ns, a.ctime, a.ctime_ns,
    a.nlink, a.length, a.rdev, a.parent, a.btime, a.btime_ns, a.gen = struct.unpack(ATTR_FMT, s)
  return a
end

local function attr_pack(a)
  return struct.pack(ATTR_FMT, a.flags, a.mode, a.uid, a.gid, a.atime, a.atime_ns, a.mtime,
    a.mtime_ns, a.ctime, a.ctime_ns, a.nlink, a.length, a.rdev, a.parent, a.btime, a.btime_ns, a.gen)
end

-- The attr table of an inode, or nil.
local function attr_get(p, ino)
  local s = redis.call('GET', k_inode(p, ino))
  if not s then return nil end
  return attr_unpack(s)
end

local function attr_put(p, ino, a)
  redis.call('SET', k_inode(p, ino), attr_pack(a))
end

local function ftype(a) return math.floor(a.mode / 4096) end
local function perm_bits(a) return a.mode % 4096 end

-- Mark a change: ctime (and mtime when `data`) to the server clock, bump the change counter.
local function touch(a, data, sec, ns)
  a.ctime, a.ctime_ns = sec, ns
  if data then a.mtime, a.mtime_ns = sec, ns end
  a.gen = a.gen + 1
end

local function entry_pack(typ, ino) return struct.pack(ENTRY_FMT, typ, tonumber(ino)) end
local function entry_unpack(s)
  local typ, ino = struct.unpack(ENTRY_FMT, s)
  return typ, istr(ino)
end

-- The caller: uid and the set of its group ids, from "uid" and "gid,gid,..." arguments.
local function caller(uid, gids)
  local c = { uid = tonumber(uid), gids = {} }
  for g in string.gmatch(gids or '', '%d+') do c.gids[tonumber(g)] = true end
  return c
end

local function bit_set(n, b) return math.floor(n / b) % 2 == 1 end

-- POSIX access check: may caller `c` access inode attrs `a` for `mask` (4 read, 2 write, 1 exec)?
-- Root passes read/write always and exec when any exec bit is set (or it is a directory).
local function may(a, c, mask)
  local perm = perm_bits(a)
  if c.uid == 0 then
    if mask % 2 == 1 and ftype(a) ~= T_DIR then
      return bit_set(perm, 64) or bit_set(perm, 8) or bit_set(perm, 1)
    end
    return true
  end
  local bits
  if c.uid == a.uid then
    bits = math.floor(perm / 64) % 8
  elseif c.gids[a.gid] then
    bits = math.floor(perm / 8) % 8
  else
    bits = perm % 8
  end
  local function has(m) return math.floor(bits / m) % 2 == 1 end
  if mask >= 4 and not has(4) then return false end
  if mask % 4 >= 2 and not has(2) then return false end
  if mask % 2 == 1 and not has(1) then return false end
  return true
end

-- Sticky directory rule: in a sticky dir only the owner of the entry, of the dir, or root may
-- remove or rename it.
local function sticky_allows(dir, victim, c)
  if not bit_set(perm_bits(dir), S_ISVTX) then return true end
  return c.uid == 0 or c.uid == dir.uid or c.uid == victim.uid
end

-- af_version: the library's version string, so a client can tell whether to (re)load it.
-- KEYS: any key (routes the call in a Cluster). ARGV: none. Returns "<version>".
redis.register_function{
  function_name = 'af_version',
  callback = function(keys, args) return LIB_VERSION end,
  flags = { 'no-writes' },
}

-- ---- volume limits ----------------------------------------------------------------------
-- `limits` (hash) mirrors the fields of the JSON `setting` that functions need, written at
-- format in the same call: capacity (bytes, 0 = unlimited), inodes (0 = unlimited),
-- inline_limit (bytes per inline slice), inline_cap (inline bytes per volume), trash_days.
local function limits(p)
  local v = redis.call('HMGET', k_named(p, 'limits'), 'capacity', 'inodes', 'inline_limit',
    'inline_cap', 'trash_days')
  return {
    capacity = tonumber(v[1]) or 0, inodes = tonumber(v[2]) or 0,
    inline_limit = tonumber(v[3]) or 0, inline_cap = tonumber(v[4]) or 0,
    trash_days = tonumber(v[5]) or 0,
  }
end

-- Space is accounted in 4 KiB units per file, at least one unit per inode (as JuiceFS does),
-- so df agrees with what the files would take on a block device.
local function space_of(length)
  return math.max(4096, math.ceil(length / 4096) * 4096)
end

-- Checks that `dspace` more bytes and `dinodes` more inodes fit; returns an error reply or nil.
local function check_quota(p, dspace, dinodes)
  local lim = limits(p)
  if dspace > 0 and lim.capacity > 0 then
    -- `hpinned`: bytes only checkpoints still keep (docs/history.md "Capacity"), charged too
    local v = redis.call('MGET', k_named(p, 'usedspace'), k_named(p, 'hpinned'))
    local used = (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0)
    if used + dspace > lim.capacity then
      return fail('ENOSPC', 'volume capacity reached' .. ((tonumber(v[2]) or 0) > 0 and
        ' (checkpoints keep ' .. istr(tonumber(v[2])) .. ' bytes: delete old ones to free them)' or ''))
    end
  end
  if dinodes > 0 and lim.inodes > 0 then
    local total = tonumber(redis.call('GET', k_named(p, 'totalinodes')) or '0')
    if total + dinodes > lim.inodes then return fail('ENOSPC', 'volume inode limit reached') end
  end
  return nil
end

local function alloc_inode(p)
  return istr(redis.call('INCR', k_named(p, 'nextinode')))
end

-- ---- ids a Redis rollback must not hand out twice (DESIGN.md §10) ------------------------
-- A rollback (AOF everysec losing its last second in a crash, a failover to a replica that is
-- behind) restores `nextslice` or `nextsession` to an older value while clients may still hold
-- ids reserved in the lost writes. So these counters never lag the server clock in
-- microseconds: each reservation starts at max(counter, now). The lost writes reserved ids
-- close to the time they ran; after the restart (which takes far longer than those ids are
-- wide) the clock has passed them, and new ids start beyond. This holds while a workspace
-- reserves fewer ids than microseconds pass (a million a second: slices come 4096 to a
-- batch) and the clock is sane across a failover (skew well under the failover's seconds).
-- Ids stay below 2^53 (exact in Lua numbers) until the year 2255.
local function next_id(p, name, n)
  local key = k_named(p, name)
  local t = redis.call('TIME')
  local clock = tonumber(t[1]) * 1000000 + tonumber(t[2])
  if tonumber(redis.call('GET', key) or '0') < clock then redis.call('SET', key, istr(clock)) end
  return redis.call('INCRBY', key, n)
end

-- ---- changes to a file's data (20_data, 21_resize, 26_replace) ---------------------------
-- inline_error: may new inline slices be stored, the largest `largest` bytes, adding `added`
-- bytes to the volume's inline bytes? nil, or the EAGAIN reply (over the inline limit or the
-- volume's inline cap: the caller stores the data in S3 instead, never ENOSPC for that).
-- A check: writes nothing.
local function inline_error(p, largest, added)
  local lim = limits(p)
  if largest > lim.inline_limit then return fail('EAGAIN', 'slice exceeds the inline limit') end
  local total = tonumber(redis.call('GET', k_named(p, 'inlinebytes')) or '0')
  if total + added > lim.inline_cap then return fail('EAGAIN', 'volume inline cap reached') end
  return nil
end

-- close_write: the last writes of a change to the data of file `ino`, after all its checks: the
-- attr `a` gets `length`, mtime/ctime (sec, nsec) and a new change counter, and the volume's used
-- space moves by `dspace` (DATA.space_delta's answer, already checked against the quota).
local function close_write(p, ino, a, length, dspace, sec, nsec)
  note_length(ino, a.length, length)
  a.length = length
  touch(a, true, sec, nsec)
  attr_put(p, ino, a)
  if dspace ~= 0 then redis.call('INCRBY', k_named(p, 'usedspace'), dspace) end
end

-- ---- the end of an inode's life ---------------------------------------------------------
-- free_inode: the inode has no links and no open handle anywhere. Its attributes go at once;
-- its data is released in the background: `delfiles` gets "<ino>:<length>" and the reclaim job
-- (40_reclaim.lua) walks the chunk lists, drops slice references and deletes inline bytes.
local function free_inode(p, ino, a, sec)
  if ftype(a) == T_FILE then
    redis.call('ZADD', k_named(p, 'delfiles'), sec, istr(ino) .. ':' .. istr(a.length))
  end
  redis.call('DEL', k_inode(p, ino), k_xattrs(p, ino), k_symlink(p, ino), k_parents(p, ino))
  redis.call('HDEL', k_named(p, 'trashinfo'), istr(ino))
  redis.call('DECRBY', k_named(p, 'usedspace'), space_of(ftype(a) == T_FILE and a.length or 0))
  redis.call('DECR', k_named(p, 'totalinodes'))
end

-- drop_last_link: the last name of `ino` is gone. If the inode is open anywhere (registered in
-- a session's opens<sid> by af_open), it is kept, flagged sustained, until the last close or the
-- holder's session expiry; otherwise it is freed now. The caller has already removed the entry.
local function drop_last_link(p, ino, a, sec, ns)
  a.nlink = 0
  if open_elsewhere(p, istr(ino), nil) then
    if a.flags % 2 == 0 then a.flags = a.flags + FLAG_SUSTAINED end
    touch(a, false, sec, ns)
    attr_put(p, ino, a)
  else
    free_inode(p, ino, a, sec)
  end
end

-- ---- the change record and the journal ---------------------------------------------------
-- Each change a client may have cached is announced, in the same call, on the workspace's own
-- sharded pub/sub channel `<prefix>changes` (SPUBLISH: in a Cluster it stays on the nodes of the
-- workspace's slot). Subscribers (meta/changes.py) drop what they cached of it. The same record
-- is appended to the workspace's journal (meta/journal.py, docs/journal.md): one change record,
-- two uses.
--
-- Record: NUL-separated fields (a name holds no NUL), positional, trailing absent ones omitted,
-- an absent field before a present one empty:
--   [0] version ('1'), [1] kind ('e' an entry of a directory, 'r' a rename, 'a' attributes,
--   'd' data, 'w' the whole workspace: a restore, 45_history.lua -- drop everything cached),
--   [2] op (the operation: create, mkdir, unlink, rename, setattr, commit, ...),
--   [3] session id ('0' without a session), [4] seconds, [5] microseconds (server clock),
--   [6] ino, [7] parent, [8] name, [9] new parent, [10] new name, [11] length change (signed,
--   '+4096'), [12] caller tag, [13] the file's length after the change.
-- An entry record's ino is the inode the name now refers to or referred to (its link count
-- changed too); a rename's ino is the moved inode. [11] and [13] are present when the call
-- changed a file's length or wrote its data (close_write); [12] when the session set a tag
-- (field `tag` of its `sess<sid>`: the agent API's tool-call id). Readers ignore fields they do
-- not know.
--
-- The journal is the list `<prefix>journal`, appended with RPUSH: in the ACL rules of a session
-- user (artifacts_orchestrator/redis_acl.py) that key is writable by RPUSH alone (a selector),
-- which can add a record but never remove, reorder or alter one; only the orchestrator's
-- retention (af_journal_trim, full rights) drops records, from the head, counting them in
-- `<prefix>jbase`. A stream would be the obvious type, but XADD's MAXLEN/MINID options let
-- anyone who may append trim it. A record's position (its id for readers) is jbase + its index.
--
-- redis.pcall: the operation's writes are done when this runs, and Lua cannot roll them back.
-- A Redis user that may not publish or append there (one minted before session users could)
-- loses the announcement and the journal record -- other hosts fall back to their cache TTLs --
-- never the operation.
local CHANGE_VERSION = '1'

-- The tag a session's records carry: the call's (field `ctag`, set and cleared around one call
-- in the same MULTI by a client with a per-call tag: meta/client.py) over the session's (`tag`).
local function session_tag(p, sid)
  if sid == '0' then return nil end
  local t = redis.call('HMGET', k_session(p, sid), 'ctag', 'tag')
  return t[1] or t[2] or nil
end

local function journal(p, r)
  redis.pcall('RPUSH', p .. 'journal', r)
end

-- The acting session: the one whose `sess<sid>` key the call declares (prefix_of checked its
-- form), '0' for a call declaring `setting` (no session).
local function actor(p, keys)
  local k = keys[1]
  return string.sub(k, #p + 1, #p + 4) == 'sess' and string.sub(k, #p + 5) or '0'
end

-- change_record(p, keys, clock, kind, op, ino[, parent, name[, new_parent, new_name]]): the
-- record as a string, fields [0]-[10]. `clock` is the TIME reply of this call (the third result
-- of now()); inode numbers as strings or integers. The one builder of the format.
local function change_record(p, keys, clock, kind, op, ino, parent, name, nparent, nname)
  local sid = actor(p, keys)
  local r = CHANGE_VERSION .. '\0' .. kind .. '\0' .. op .. '\0' .. sid .. '\0' .. clock[1] .. '\0'
    .. clock[2] .. '\0' .. istr(ino)
  if parent then
    r = r .. '\0' .. istr(parent) .. '\0' .. name
    if nparent then r = r .. '\0' .. istr(nparent) .. '\0' .. nname end
  end
  return r
end

-- change(...): announce one change (the arguments of change_record) and journal it. Every
-- mutating function calls this, and only this, once per change: the place where each record is
-- sent.
local function change(p, keys, clock, kind, op, ino, parent, name, nparent, nname)
  local sid = actor(p, keys)
  local r = change_record(p, keys, clock, kind, op, ino, parent, name, nparent, nname)
  redis.pcall('SPUBLISH', p .. 'changes', r)
  -- the journal's record: the same, plus the length change and the caller's tag
  local len = noted_len
  noted_len = nil
  if len and len[1] ~= istr(ino) then len = nil end
  local tag = session_tag(p, sid)
  if len or tag then
    local n = parent and (nparent and 11 or 9) or 7  -- fields so far
    r = r .. string.rep('\0', 11 - n)
    if len then
      local d = len[3] - len[2]
      r = r .. '\0' .. (d >= 0 and '+' or '-') .. istr(math.abs(d))
    else
      r = r .. '\0'
    end
    r = r .. '\0' .. (tag or '')
    if len then r = r .. '\0' .. istr(len[3]) end
  end
  journal(p, r)
end

-- read_audit(p, keys, ino, op): an open for reading, appended to the read audit `<prefix>reads`
-- (a volume's opt-in, `journal_reads`; docs/journal.md "Reads"): a change record's fields [0]-[6]
-- of kind 'o' (op 'open', or 'open-rw' for an open for reading and writing), then [12] the
-- session's tag when it has one. Not announced (nothing cached changes) and not in `journal`:
-- read-only sessions, the main readers, may append to `reads` (RPUSH alone) but not to the
-- journal, so they cannot forge change records; `rbase` counts what retention dropped.
local function read_audit(p, keys, ino, op)
  local sid = actor(p, keys)
  local r = change_record(p, keys, redis.call('TIME'), 'o', op, ino)
  local tag = session_tag(p, sid)
  if tag then r = r .. string.rep('\0', 6) .. tag end
  redis.pcall('RPUSH', p .. 'reads', r)
end

-- A session's registration, journaled so that readers can name the actor of its records after
-- the session has ended (its `sess<sid>` is gone then): kind 's', op 'session', ino '0', [7] the
-- ACL user the orchestrator assigned the id to ('' for a full-rights client), [8] the session's
-- info JSON (host, pid, mountpoint or agent API, version, read_only). Not announced on the
-- change channel: nothing cached changes.
-- With the read audit on, the registration goes to `reads` too: a read-only session cannot append
-- to the journal, and its read records must still name their actor after it ended.
local function journal_session(p, sid, user, info)
  local t = redis.call('TIME')
  local r = CHANGE_VERSION .. '\0s\0session\0' .. istr(sid) .. '\0' .. t[1] .. '\0' .. t[2] .. '\0' .. '0'
    .. '\0' .. (user or '') .. '\0' .. info
  journal(p, r)
  if redis.call('HGET', k_named(p, 'limits'), 'journal_reads') == '1' then
    redis.pcall('RPUSH', p .. 'reads', r)
  end
end
