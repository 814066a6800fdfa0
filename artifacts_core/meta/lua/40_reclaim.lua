-- 40_reclaim.lua: releasing the data of deleted files, deleting unreferenced slices, expiring
-- the trash, and the election that lets one client at a time do it (helpers: 20_data.lua).
--
-- Flow: free_inode (00_common) queues "<ino>:<length>" in `delfiles`; af_reclaim_files walks
-- that file's chunk lists (chunk 0 and the indexes of its `ci<ino>` set, 20_data.lua) from the
-- last, releasing every record's reference: inline slices with no reference left are
-- deleted at once, S3 slices queued in `delslices`. af_reclaim_slices then hands the S3 slices
-- whose time has come to the caller, which deletes their blocks (Lua cannot reach S3) and
-- confirms with af_reclaim_done. Every step is bounded, so a huge file or backlog never makes
-- one call long; a crash between steps repeats a step, never skips one (a block deletion is
-- idempotent, and `delslices` entries are removed only after their blocks are gone).

-- af_bgjob_elect: the election of a background job through `jobs` (name -> last run).
-- KEYS: setting. ARGV: job name, interval (seconds), now offset (seconds added to the server
--   clock: tests inject time).
-- Returns 1 (this caller runs the job now; jobs[name] = now) when the job last ran more than
--   `interval` seconds ago or never, else 0.
-- Errors: none.
register_allow_oom('af_bgjob_elect', function(keys, args)
  local p = prefix_of(keys)
  local t = DATA.now_f(args[3])
  local last = tonumber(redis.call('HGET', k_named(p, 'jobs'), args[1]))
  if last and t - last < (tonumber(args[2]) or 0) then return 0 end
  redis.call('HSET', k_named(p, 'jobs'), args[1], string.format('%.6f', t))
  return 1
end)

-- af_reclaim_files: release the data of deleted files, at most `budget` chunk lists per call.
-- KEYS: setting. ARGV: budget (chunk lists), now offset.
-- Returns {files finished, chunk lists released, files still queued}.
-- A file not finished within the budget stays queued (its index set shrinks as lists go).
-- Errors: none.
register_allow_oom('af_reclaim_files', function(keys, args)
  local p = prefix_of(keys)
  local budget = math.max(1, tonumber(args[1]) or 1)
  local t = DATA.now_f(args[2])
  local dkey = k_named(p, 'delfiles')
  local files, chunks = 0, 0
  local queued = redis.call('ZRANGE', dkey, 0, budget - 1, 'WITHSCORES')
  for k = 1, #queued, 2 do
    if chunks >= budget then break end
    local member = queued[k]
    local ino = string.match(member, '^(%d+):%d+$')
    local left = 0
    -- a restore (45_history.lua) may have brought the inode back: its data is live again
    if ino and redis.call('EXISTS', k_inode(p, ino)) == 1 then ino = nil end
    if ino then
      for _, i in ipairs(DATA.chunk_indexes(p, ino, 0, math.huge)) do
        if chunks >= budget then left = left + 1
        else
          DATA.drop_chunk(p, ino, i, t, t)
          chunks = chunks + 1
        end
      end
    end
    if left == 0 then
      redis.call('ZREM', dkey, member)
      if ino then redis.call('DEL', DATA.k_indexes(p, ino)) end
      files = files + 1
    end
  end
  return { files, chunks, redis.call('ZCARD', dkey) }
end)

-- af_reclaim_slices: the unreferenced slices whose deletion time has come, at most `batch`.
-- Inline slices (their b<id> exists) are deleted here and now; S3 slices are returned for the
-- caller to delete their blocks, and stay queued until af_reclaim_done confirms.
-- KEYS: setting. ARGV: batch, now offset.
-- Returns {inline slices deleted, "<id>_<size>", ...}.
-- Errors: none.
register_allow_oom('af_reclaim_slices', function(keys, args)
  local p = prefix_of(keys)
  local t = DATA.now_f(args[2])
  local skey = k_named(p, 'delslices')
  local due = redis.call('ZRANGEBYSCORE', skey, '-inf', t, 'LIMIT', 0, tonumber(args[1]) or 100)
  local out = { 0 }
  for _, f in ipairs(due) do
    local id, size = string.match(f, '^(%d+)_(%d+)$')
    if not id then
      redis.call('ZREM', skey, f)
    elseif redis.call('DEL', k_inline(p, id)) == 1 then
      redis.call('DECRBY', k_named(p, 'inlinebytes'), size)
      redis.call('ZREM', skey, f)
      out[1] = out[1] + 1
    else
      out[#out + 1] = f
    end
  end
  return out
end)

-- af_reclaim_done: the blocks of these S3 slices are deleted; forget them.
-- KEYS: setting. ARGV: "<id>_<size>" ... Returns the number removed. Errors: none.
register_allow_oom('af_reclaim_done', function(keys, args)
  local p = prefix_of(keys)
  if #args == 0 then return 0 end
  return redis.call('ZREM', k_named(p, 'delslices'), unpack(args))
end)

-- af_expire_trash: remove trash hour-directories older than trash_days, at most `budget`
-- entries per call. The hourly directory named H (ns.trash_hour, 10_namespace.lua) holds what
-- was deleted in [H, H + 1 h); it expires once H + 1 h + trash_days has passed. Each file in it
-- loses that name: its last one ends its life through drop_last_link (kept while open
-- anywhere, else freed into `delfiles`). An emptied hour directory is removed.
-- KEYS: setting. ARGV: budget (entries), now offset (seconds).
-- Returns {entries removed, directories removed, 1 if expired entries remain else 0}.
-- Errors: none.
register_allow_oom('af_expire_trash', function(keys, args)
  local p = prefix_of(keys)
  local budget = math.max(1, tonumber(args[1]) or 1)
  local t, sec, ns_, clock = DATA.now_f(args[2])
  local days = math.max(0, limits(p).trash_days)
  local cutoff = ns.trash_hour(math.floor(t) - days * 86400 - 3600)
  local tkey = k_entries(p, TRASH_INO)
  local removed, dirs, more = 0, 0, 0
  local hours = redis.call('HGETALL', tkey)
  for k = 1, #hours, 2 do
    local name, dino = hours[k], select(2, entry_unpack(hours[k + 1]))
    if string.match(name, '^%d%d%d%d%-%d%d%-%d%d%-%d%d$') and name <= cutoff then
      if removed >= budget then more = 1; break end
      local dkey = k_entries(p, dino)
      local cursor = '0'
      repeat
        local page = redis.call('HSCAN', dkey, cursor, 'COUNT', math.min(100, budget - removed))
        cursor = page[1]
        local items = page[2]
        for j = 1, #items, 2 do
          if removed >= budget then break end
          local typ, ino = entry_unpack(items[j + 1])
          if typ ~= T_DIR then  -- the trash holds files; a directory made there by hand stays
            redis.call('HDEL', dkey, items[j])
            removed = removed + 1
            change(p, keys, clock, 'e', 'expire_trash', ino, dino, items[j])
            local a = attr_get(p, ino)
            if a then
              if a.nlink > 1 then
                a.nlink = a.nlink - 1
                local pk = k_parents(p, ino)
                if redis.call('HINCRBY', pk, dino, -1) <= 0 then redis.call('HDEL', pk, dino) end
                touch(a, false, sec, ns_)
                attr_put(p, ino, a)
              else
                drop_last_link(p, ino, a, sec, ns_)
              end
            end
          end
        end
      until cursor == '0' or removed >= budget
      if redis.call('EXISTS', dkey) == 0 then
        local d = attr_get(p, dino)
        redis.call('HDEL', tkey, name)
        if d then free_inode(p, dino, d, sec) end
        local tr = attr_get(p, TRASH_INO)
        if tr.nlink > 2 then tr.nlink = tr.nlink - 1 end
        touch(tr, true, sec, ns_)
        attr_put(p, TRASH_INO, tr)
        dirs = dirs + 1
        change(p, keys, clock, 'e', 'expire_trash', dino, TRASH_INO, name)
      elseif removed >= budget then
        more = 1
      end
    end
  end
  return { removed, dirs, more }
end)
