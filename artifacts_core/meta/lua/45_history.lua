-- 45_history.lua: checkpoints (create, read, changed keys, restore, delete) and clones.
--
-- docs/history.md is the design. The copy-on-write hook itself lives in 00_common.lua (HIST):
-- every write of a versioned key preserves its old value for the newest checkpoint first. Here:
-- * `hnext` (last epoch handed out), `hcur` ("<epoch>:<max ino>" of the newest live checkpoint),
--   `hepochs` (zset name -> epoch), `hckpts` (hash name -> JSON record);
-- * `hx<e>` (suffix -> '1' preserved in `hk<e>:<suffix>` | '0' absent at e).
-- The value of a key at checkpoint C is the version in the first epoch e >= C of `hepochs` whose
-- `hx<e>` names it, else the live key (unchanged since C).

HIST.NAME_MAX = 63

function HIST.record(p, name)
  local raw = redis.call('HGET', k_named(p, 'hckpts'), name)
  if not raw then return nil end
  return cjson.decode(raw)
end

function HIST.save(p, rec)
  redis.call('HSET', k_named(p, 'hckpts'), rec.name, cjson.encode(rec))
end

-- The epochs of `hepochs` in [lo, hi] ascending, as numbers.
function HIST.epochs(p, lo, hi)
  local out = {}
  local z = redis.call('ZRANGEBYSCORE', k_named(p, 'hepochs'), lo, hi, 'WITHSCORES')
  for i = 2, #z, 2 do out[#out + 1] = tonumber(z[i]) end
  return out
end

-- The key holding `suffix` as checkpoint `epoch` saw it (0: now), or nil when it did not exist.
function HIST.resolve(p, epoch, suffix, later)
  if epoch == 0 then return p .. suffix end
  for _, e in ipairs(later) do
    local v = redis.call('HGET', p .. 'hx' .. istr(e), suffix)
    if v == '1' then return p .. 'hk' .. istr(e) .. ':' .. suffix end
    if v == '0' then return nil end
  end
  return p .. suffix
end

-- The newest live checkpoint becomes `hcur` (or none).
function HIST.set_current(p)
  local top = redis.call('ZREVRANGE', k_named(p, 'hepochs'), 0, 0)
  if #top == 0 then
    redis.call('DEL', k_named(p, 'hcur'))
    HIST.ep, HIST.max = false, 0
    return
  end
  local rec = HIST.record(p, top[1])
  redis.call('SET', k_named(p, 'hcur'), istr(rec.epoch) .. ':' .. istr(rec.maxino) .. ':' .. (rec.stamp or ''))
  HIST.ep, HIST.max, HIST.stamp, HIST.seen = istr(rec.epoch), rec.maxino, rec.stamp or '', {}
end

-- Writes: a new checkpoint record, the current epoch from now on. O(1).
function HIST.take(p, name, origin, keep, kind)
  local e = redis.call('INCR', k_named(p, 'hnext'))
  local sec, ns_, clock = now()
  -- `stamp` (server time in µs) tells this checkpoint from one of the same epoch in an earlier
  -- incarnation of the workspace's keys (deleted, then formatted again): HIST.known is keyed by it
  local rec = { name = name, epoch = e, created = sec + ns_ / 1e9,
    maxino = tonumber(redis.call('GET', k_named(p, 'nextinode')) or '0'),
    origin = origin, keep = tonumber(keep) or 0, kind = kind, state = 'live', stamp = clock[1] .. clock[2] }
  HIST.save(p, rec)
  redis.call('ZADD', k_named(p, 'hepochs'), e, name)
  redis.call('SET', k_named(p, 'hcur'), istr(e) .. ':' .. istr(rec.maxino) .. ':' .. rec.stamp)
  HIST.ep, HIST.max, HIST.stamp, HIST.seen = istr(e), rec.maxino, rec.stamp, {}
  return rec
end

function HIST.name_error(name)
  if not name or not string.match(name, '^[%w][%w_.-]*$') or #name > HIST.NAME_MAX then
    return fail('EINVAL', 'checkpoint names are 1-63 letters, digits, _ . - (starting with a letter or digit)')
  end
  return nil
end

-- af_ck_create: take a checkpoint of the whole workspace. Constant time: nothing is copied.
-- KEYS: setting (or the caller's session key). ARGV: name, origin (JSON text: who took it),
--   keep (seconds of retention, 0 = until deleted), kind ('user' | 'safety').
-- Returns the record (JSON). Errors: EINVAL (bad name), EEXIST (the name is taken).
-- All checks before the first write.
redis.register_function('af_ck_create', function(keys, args)
  local p = prefix_of(keys)
  local err = HIST.name_error(args[1])
  if err then return err end
  if redis.call('HEXISTS', k_named(p, 'hckpts'), args[1]) == 1 then
    return fail('EEXIST', 'a checkpoint named ' .. args[1] .. ' exists')
  end
  return cjson.encode(HIST.take(p, args[1], args[2] or '', args[3], args[4] or 'user'))
end)

-- af_ck_list: every checkpoint record (JSON) with its preserved-key count, oldest first.
-- KEYS: setting. ARGV: none. Returns {record, preserved keys, record, ...}. Read-only.
redis.register_function{
  function_name = 'af_ck_list',
  callback = function(keys, args)
    local p = prefix_of(keys)
    local out = {}
    local z = redis.call('ZRANGE', k_named(p, 'hepochs'), 0, -1, 'WITHSCORES')
    for i = 1, #z, 2 do
      out[#out + 1] = redis.call('HGET', k_named(p, 'hckpts'), z[i]) or '{}'
      out[#out + 1] = redis.call('HLEN', p .. 'hx' .. z[i + 1])
    end
    return out
  end,
  flags = { 'no-writes' },
}

-- af_ck_due: the checkpoints the expiry job deletes: those whose retention has passed
-- (`keep` > 0 and created + keep <= the server clock + offset), and those a stopped client left
-- half-deleted (state 'deleting').
-- KEYS: setting. ARGV: offset (seconds added to the server clock: tests). Returns {name, ...},
-- oldest first. Errors: none. Read-only.
redis.register_function{
  function_name = 'af_ck_due',
  callback = function(keys, args)
    local p = prefix_of(keys)
    local sec, ns_ = now()
    local t = sec + ns_ / 1e9 + (tonumber(args[1]) or 0)
    local out = {}
    for _, name in ipairs(redis.call('ZRANGE', k_named(p, 'hepochs'), 0, -1)) do
      local rec = HIST.record(p, name)
      local keep = rec and tonumber(rec.keep) or 0
      if rec and (rec.state == 'deleting' or (keep > 0 and rec.created + keep <= t)) then
        out[#out + 1] = name
      end
    end
    return out
  end,
  flags = { 'no-writes' },
}

-- af_ck_pinned: record the bytes only checkpoints still keep (`hpinned`), as the accounting job
-- measured them (meta/history.py); the quota check and statfs add them to `usedspace`.
-- KEYS: setting (or the caller's session key). ARGV: bytes. Returns 1. Errors: EINVAL.
redis.register_function('af_ck_pinned', function(keys, args)
  local p = prefix_of(keys)
  local n = tonumber(args[1])
  if not n or n < 0 then return fail('EINVAL', 'pinned bytes must be a number >= 0') end
  if n == 0 then redis.call('DEL', k_named(p, 'hpinned')) else redis.call('SET', k_named(p, 'hpinned'), istr(n)) end
  return 1
end)

-- af_ck_read: read keys as checkpoint `epoch` saw them (epoch 0: now), in one consistent call.
-- KEYS: setting. ARGV: epoch, op, operands:
--   'attr' ino...          -> {attr or false, ...}
--   'entries' ino          -> flat {name, entry, ...} (HGETALL)
--   'lookup' parent name   -> entry or false
--   'chunk' ino index      -> {records concatenated, id1, bytes1, ...} (inline slices)
--   'link' ino             -> target or false
--   'xattrs' ino           -> flat {name, value, ...}
--   'indexes' ino          -> chunk indexes >= 1
--   'counters'             -> {usedspace, totalinodes}
-- Errors: ENOENT (no live checkpoint has that epoch), EINVAL (unknown op). Read-only.
redis.register_function{
  function_name = 'af_ck_read',
  callback = function(keys, args)
    local p = prefix_of(keys)
    local epoch, op = tonumber(args[1]) or 0, args[2]
    local later = {}
    if epoch > 0 then
      if not redis.call('ZRANGEBYSCORE', k_named(p, 'hepochs'), epoch, epoch)[1] then
        return fail('ENOENT', 'no checkpoint with epoch ' .. istr(epoch))
      end
      later = HIST.epochs(p, epoch, '+inf')
    end
    local function key(suffix) return HIST.resolve(p, epoch, suffix, later) end
    if op == 'attr' then
      local out = {}
      for i = 3, #args do
        local k = key('i' .. args[i])
        out[#out + 1] = (k and redis.call('GET', k)) or false
      end
      return out
    elseif op == 'entries' or op == 'xattrs' then
      local k = key((op == 'entries' and 'd' or 'x') .. args[3])
      if not k then return {} end
      return redis.call('HGETALL', k)
    elseif op == 'lookup' then
      local k = key('d' .. args[3])
      return (k and redis.call('HGET', k, args[4])) or false
    elseif op == 'chunk' then
      local k = key('c' .. args[3] .. '_' .. args[4])
      local recs = k and redis.call('LRANGE', k, 0, -1) or {}
      return DATA.add_inline(p, recs, 0, CHUNK_SIZE, { table.concat(recs) })
    elseif op == 'link' then
      local k = key('s' .. args[3])
      return (k and redis.call('GET', k)) or false
    elseif op == 'indexes' then
      local k = key('ci' .. args[3])
      return k and redis.call('SMEMBERS', k) or {}
    elseif op == 'counters' then
      local u, t = key('usedspace'), key('totalinodes')
      return { (u and redis.call('GET', u)) or '0', (t and redis.call('GET', t)) or '0' }
    end
    return fail('EINVAL', 'unknown checkpoint read ' .. tostring(op))
  end,
  flags = { 'no-writes' },
}

-- af_ck_changed: the keys changed between checkpoints of epochs `from` and `to` (to 0: now):
-- the union of hx<e> for from <= e < to. KEYS: setting. ARGV: from, to.
-- Returns {suffix, ...} each once. Errors: none. Read-only.
redis.register_function{
  function_name = 'af_ck_changed',
  callback = function(keys, args)
    local p = prefix_of(keys)
    local from, to = tonumber(args[1]) or 0, tonumber(args[2]) or 0
    local hi = to > 0 and '(' .. istr(to) or '+inf'
    local seen, out = {}, {}
    for _, e in ipairs(HIST.epochs(p, from, hi)) do
      for _, s in ipairs(redis.call('HKEYS', p .. 'hx' .. istr(e))) do
        if not seen[s] then seen[s] = true; out[#out + 1] = s end
      end
    end
    return out
  end,
  flags = { 'no-writes' },
}

-- The value of `suffix` at checkpoint C: the first version at or after C ({e, '1'|'0'}), given
-- every hx<e> (e >= C) read once into `versions` (suffix -> {e, v}).
function HIST.versions_since(p, epoch)
  local versions, order = {}, {}
  for _, e in ipairs(HIST.epochs(p, epoch, '+inf')) do
    local h = redis.call('HGETALL', p .. 'hx' .. istr(e))
    for i = 1, #h, 2 do
      if not versions[h[i]] then
        versions[h[i]] = { e, h[i + 1] }
        order[#order + 1] = h[i]
      end
    end
  end
  return versions, order
end

-- Writes: the live chunk list `key` goes (its references released with `grace`), and when
-- `src` is given the preserved list there takes its place (one more reference per record).
function HIST.put_chunk(p, key, suffix, src, t, grace)
  HIST.cow(key)
  for _, s in ipairs(redis.call('LRANGE', key, 0, -1)) do
    local r = DATA.rec_unpack(s)
    DATA.release(p, r, r.kind == DATA.KIND_INLINE and t or t + grace, t)
  end
  redis.call('DEL', key)
  if not src then return end
  local _, recs = HIST.copy(src, key, suffix)
  if recs then
    HIST.ref_records(p, recs)
    local ino, indx = string.match(suffix, '^c(%d+)_(%d+)$')
    redis.call('ZADD', k_named(p, 'inlinechunks'), t, DATA.chunk_member(ino, indx))
  end
end

-- af_ck_restore: make the workspace what checkpoint `name` was, atomically, after taking the
-- safety checkpoint `safety` in the same call.
-- KEYS: setting. ARGV: name, safety name, origin (JSON text), grace (seconds replaced S3 slices
--   stay readable).
-- Returns {safety record (JSON), keys restored, inodes created since that were removed}.
-- Errors: EINVAL (bad safety name), ENOENT (no such checkpoint, or being deleted), EEXIST (the
--   safety name is taken). All checks before the first write.
-- Cost: proportional to the keys changed since the checkpoint and the inodes created since.
register_allow_oom('af_ck_restore', function(keys, args)
  local p = prefix_of(keys)
  local rec = HIST.record(p, args[1])
  if not rec or rec.state ~= 'live' then return fail('ENOENT', 'no checkpoint named ' .. tostring(args[1])) end
  local err = HIST.name_error(args[2])
  if err then return err end
  if redis.call('HEXISTS', k_named(p, 'hckpts'), args[2]) == 1 then
    return fail('EEXIST', 'a checkpoint named ' .. args[2] .. ' exists')
  end
  local grace = tonumber(args[4]) or 0
  local versions, order = HIST.versions_since(p, rec.epoch)
  -- writes from here on
  local safety = HIST.take(p, args[2], args[3] or '', 0, 'safety')
  local t, sec, ns_ = DATA.now_f()
  -- 1. inodes created after the checkpoint end as an unlink of their last name would end them
  local removed, kept_space, kept_inodes = 0, 0, 0
  for ino = rec.maxino + 1, safety.maxino do
    local a = attr_get(p, ino)
    if a then
      removed = removed + 1
      if ftype(a) == T_DIR then redis.call('DEL', k_entries(p, ino)) end
      drop_last_link(p, ino, a, sec, ns_)
      if redis.call('EXISTS', k_inode(p, ino)) == 1 then  -- open somewhere: kept, still charged
        kept_space = kept_space + space_of(ftype(a) == T_FILE and a.length or 0)
        kept_inodes = kept_inodes + 1
      end
    end
  end
  -- 2. every key changed since gets its value at the checkpoint back (counters included)
  local restored = 0
  for _, suffix in ipairs(order) do
    local ino = HIST.versioned(suffix)
    if ino and (ino == '' or tonumber(ino) <= rec.maxino) then
      local e, v = versions[suffix][1], versions[suffix][2]
      local key, src = p .. suffix, nil
      if v == '1' then src = p .. 'hk' .. istr(e) .. ':' .. suffix end
      if string.match(suffix, '^c%d+_%d+$') then
        HIST.put_chunk(p, key, suffix, src, t, grace)
      else
        local live = string.match(suffix, '^i%d+$') and redis.call('GET', key)
        redis.call('DEL', key)
        if src then HIST.copy(src, key, suffix) end
        if live and src then
          -- the change counter never goes back: caches keyed by it must see a new value
          local a, gen = attr_unpack(redis.call('GET', key)), attr_unpack(live).gen
          a.gen = math.max(a.gen, gen) + 1
          redis.call('SET', key, attr_pack(a))
        end
      end
      restored = restored + 1
    end
  end
  change(p, keys, redis.call('TIME'), 'w', 'restore', 1)  -- every host drops what it cached
  if kept_space > 0 then redis.call('INCRBY', k_named(p, 'usedspace'), kept_space) end
  if kept_inodes > 0 then redis.call('INCRBY', k_named(p, 'totalinodes'), kept_inodes) end
  return { cjson.encode(safety), restored, removed }
end)

-- af_ck_delete: delete checkpoint `name`, at most `budget` preserved keys per call. Each
-- version moves to the newest older checkpoint when that one has none of the key (it is that
-- checkpoint's value too), else it is dropped (a chunk list's references are released through
-- DATA.release). The checkpoint is hidden at once (state 'deleting') and removed by the call
-- that empties it.
-- KEYS: setting. ARGV: name, budget, grace (seconds dropped S3 slices stay readable).
-- Returns the preserved keys left (0: deleted). Errors: ENOENT. All checks before the first write.
register_allow_oom('af_ck_delete', function(keys, args)
  local p = prefix_of(keys)
  local rec = HIST.record(p, args[1])
  if not rec then return fail('ENOENT', 'no checkpoint named ' .. tostring(args[1])) end
  local budget = math.max(1, tonumber(args[2]) or 1000)
  local grace = tonumber(args[3]) or 0
  local t = DATA.now_f()
  if rec.state ~= 'deleting' then
    rec.state = 'deleting'
    HIST.save(p, rec)
  end
  local e = istr(rec.epoch)
  local hx = p .. 'hx' .. e
  local older = redis.call('ZREVRANGEBYSCORE', k_named(p, 'hepochs'), '(' .. e, '-inf', 'LIMIT', 0, 1)
  local lrec = older[1] and HIST.record(p, older[1])
  local lx = lrec and p .. 'hx' .. istr(lrec.epoch)
  local page = redis.call('HSCAN', hx, 0, 'COUNT', budget)[2]
  for i = 1, #page, 2 do
    local suffix, v = page[i], page[i + 1]
    local ino = HIST.versioned(suffix) or ''
    local src = p .. 'hk' .. e .. ':' .. suffix
    if lrec and redis.call('HEXISTS', lx, suffix) == 0 and (ino == '' or tonumber(ino) <= lrec.maxino) then
      if v == '1' then redis.call('RENAME', src, p .. 'hk' .. istr(lrec.epoch) .. ':' .. suffix) end
      redis.call('HSET', lx, suffix, v)
    elseif v == '1' then
      if string.match(suffix, '^c%d+_%d+$') then
        for _, s in ipairs(redis.call('LRANGE', src, 0, -1)) do
          local r = DATA.rec_unpack(s)
          DATA.release(p, r, r.kind == DATA.KIND_INLINE and t or t + grace, t)
        end
      end
      redis.call('DEL', src)
    end
    redis.call('HDEL', hx, suffix)
  end
  local left = redis.call('HLEN', hx)
  if left == 0 then
    redis.call('ZREM', k_named(p, 'hepochs'), rec.name)
    redis.call('HDEL', k_named(p, 'hckpts'), rec.name)
    HIST.set_current(p)
  end
  return left
end)
