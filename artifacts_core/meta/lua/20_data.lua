-- 20_data.lua: the data map -- chunk slice lists, inline slices, commits (incl. append slices).
--
-- A file's data is one list per 64 MiB chunk, `c<ino>_<index>`, of 25-byte records
-- (pos u32, id u64, size u32, off u32, len u32, kind u8; attrs.py) in commit order; later records
-- win, id 0 is a hole. Inline slices (kind 1) keep their bytes in Redis under `b<id>`, written by
-- the commit itself, so a small write is one round trip for data and metadata (DESIGN.md §3).
--
-- Invariants every function of 20_*/21_*/4x_* keeps:
-- * no visible data beyond a file's length: a commit extends the length to cover its record, a
--   shrinking truncate hides the rest of its last chunk behind a hole and drops the chunks past
--   it, holes are pushed with RPUSHX (a missing list already reads as zeros);
-- * the chunk lists a file may have are chunk 0 and the indexes in its set `ci<ino>` (added by
--   every push that may create a list of index >= 1). Truncate, delete and whole-file replace
--   walk those, never 0 .. length / CHUNK_SIZE: a sparse 1 PiB file must not make one call loop
--   over 16 million chunk indexes while Redis serves every other workspace;
-- * every non-hole record holds ONE reference to its slice: `sliceref` field "<id>_<size>" holds
--   references - 1 (missing = 1, the common case costs no field). A record that goes away
--   releases its reference (DATA.release); a slice with no reference left is queued in
--   `delslices` scored by the time it may be deleted (a grace period lets readers holding an old
--   view finish); an inline slice released with no grace is deleted at once;
-- * a commit is idempotent and bound to its owner: every commit carries the session that
--   reserved its slice id (`owner`, '0' for a client without a session); an id outside the
--   owner's reserved range is refused (DATA.claim), and "<owner>:<id>" is remembered in
--   `commits` (zset -> commit time) for DATA.COMMIT_TTL seconds, so the same owner's second
--   commit of it is a no-op returning the attr -- and no other client's commit ever is;
-- * `inlinebytes` = the sum of the sizes of all `b<id>` keys; `inlinechunks` (zset:
--   "<ino>_<index>" -> time of the last inline write) indexes the chunks that may hold inline
--   slices, for the background migration of quiet inline data to S3.
--
-- Every helper of 20_* .. 4x_* lives in the one `DATA` table (the library is a single Lua chunk,
-- and Lua 5.1 allows 200 locals per function).

local DATA = {}

-- Largest file length: 2^50 bytes (1 PiB). Lengths, offsets and chunk positions stay exact
-- integers in Lua's doubles (exact to 2^53) with room for sums; no agent file is near it.
DATA.MAX_LENGTH = 1125899906842624
-- Seconds a committed slice id is remembered: a retry comes within the client's timeout (10 s)
-- plus reconnection; two minutes covers a Redis failover, and bounds the zset to two minutes of
-- commits (about 10 MB at a sustained 1000 commits/s).
DATA.COMMIT_TTL = 120
DATA.KIND_S3, DATA.KIND_INLINE = 0, 1
DATA.S_IXGRP = 8  -- 0o010: group exec, the condition for clearing S_ISGID on write

-- Server time as fractional seconds (+ `offset`: tests inject time), seconds, nanoseconds and
-- the TIME reply (for change records).
function DATA.now_f(offset)
  local sec, ns_, clock = now()
  return sec + ns_ / 1e9 + (tonumber(offset) or 0), sec, ns_, clock
end

function DATA.rec_pack(pos, id, size, off, len, kind)
  return struct.pack(SLICE_FMT, pos, id, size, off, len, kind)
end

function DATA.hole(pos, len) return DATA.rec_pack(pos, 0, len, 0, len, 0) end

function DATA.rec_unpack(s)
  local r = {}
  r.pos, r.id, r.size, r.off, r.len, r.kind = struct.unpack(SLICE_FMT, s)
  return r
end

function DATA.ref_field(id, size) return istr(id) .. '_' .. istr(size) end

-- Append to `out` the (id, bytes) pairs of the inline slices among the records `recs` that
-- overlap the chunk range [lo, hi), each id once; returns `out`. (Readers get a chunk's inline
-- bytes in the same call as its slice list.)
function DATA.add_inline(p, recs, lo, hi, out)
  local seen = {}
  for _, s in ipairs(recs) do
    if string.byte(s, SLICE_SIZE) == DATA.KIND_INLINE then
      local r = DATA.rec_unpack(s)
      local id = istr(r.id)
      if not seen[id] and r.pos < hi and r.pos + r.len > lo then
        seen[id] = true
        local data = redis.call('GET', k_inline(p, id))
        if data then
          out[#out + 1] = id
          out[#out + 1] = data
        end
      end
    end
  end
  return out
end
function DATA.k_indexes(p, ino) return p .. 'ci' .. istr(ino) end

-- A list of chunk `indx` may now exist: remember its index (chunk 0 is always looked at).
function DATA.note_chunk(p, ino, indx)
  if tonumber(indx) >= 1 then redis.call('SADD', DATA.k_indexes(p, ino), istr(indx)) end
end

-- The chunk indexes in [lo, hi] whose lists may exist, in descending order.
function DATA.chunk_indexes(p, ino, lo, hi)
  local out = {}
  for _, m in ipairs(redis.call('SMEMBERS', DATA.k_indexes(p, ino))) do
    local i = tonumber(m)
    if i >= lo and i <= hi then out[#out + 1] = i end
  end
  table.sort(out, function(x, y) return x > y end)
  if lo <= 0 and hi >= 0 then out[#out + 1] = 0 end
  return out
end
function DATA.chunk_member(ino, indx) return istr(ino) .. '_' .. istr(indx) end

-- `n` more references to slice (id, size).
function DATA.ref_add(p, id, size, n)
  local v = redis.call('HINCRBY', k_named(p, 'sliceref'), DATA.ref_field(id, size), n)
  if v == 0 then redis.call('HDEL', k_named(p, 'sliceref'), DATA.ref_field(id, size)) end
end

-- One record `r` went away: drop its reference. With none left, the slice is deleted at time
-- `when` (inline bytes at once when `when` <= `t`, otherwise through `delslices`).
function DATA.release(p, r, when, t)
  if r.id == 0 then return end
  local f = DATA.ref_field(r.id, r.size)
  local v = redis.call('HINCRBY', k_named(p, 'sliceref'), f, -1)
  if v >= 0 then
    if v == 0 then redis.call('HDEL', k_named(p, 'sliceref'), f) end
    return
  end
  redis.call('HDEL', k_named(p, 'sliceref'), f)
  if r.kind == DATA.KIND_INLINE and when <= t then
    if redis.call('DEL', k_inline(p, r.id)) == 1 then
      redis.call('DECRBY', k_named(p, 'inlinebytes'), r.size)
    end
  else
    redis.call('ZADD', k_named(p, 'delslices'), when, f)
  end
end

-- Drop a whole chunk list: release every record, forget the list. Returns records released.
function DATA.drop_chunk(p, ino, indx, when, t)
  local key = k_chunk(p, ino, indx)
  HIST.cow(key)  -- a checkpoint's copy takes its references before these are released
  local recs = redis.call('LRANGE', key, 0, -1)
  for _, s in ipairs(recs) do DATA.release(p, DATA.rec_unpack(s), when, t) end
  redis.call('DEL', key)
  redis.call('ZREM', k_named(p, 'inlinechunks'), DATA.chunk_member(ino, indx))
  if tonumber(indx) >= 1 then redis.call('SREM', DATA.k_indexes(p, ino), istr(indx)) end
  return #recs
end

-- A write or truncate by a non-root caller clears S_ISUID, and S_ISGID when group-exec is set
-- (Linux file_remove_privs / should_remove_suid). Returns whether the mode changed.
function DATA.kill_suid(a, uid)
  if uid == 0 then return false end
  local perm = perm_bits(a)
  local clear = 0
  if bit_set(perm, S_ISUID) then clear = clear + S_ISUID end
  if bit_set(perm, S_ISGID) and bit_set(perm, DATA.S_IXGRP) then clear = clear + S_ISGID end
  a.mode = a.mode - clear
  return clear > 0
end

-- The attr of a regular file to change the data of, or an error reply.
-- `other` is the errno for non-regular, non-directory inodes (EINVAL, ENODEV for fallocate).
function DATA.file_attr(p, ino, other)
  local a = attr_get(p, ino)
  if not a then return nil, fail('ENOENT', 'no such inode ' .. istr(ino)) end
  if ftype(a) == T_DIR then return nil, fail('EISDIR', 'inode ' .. istr(ino) .. ' is a directory') end
  if ftype(a) ~= T_FILE then return nil, fail(other or 'EINVAL', 'not a regular file') end
  return a
end

-- New length `newlen` for `a`: the space difference, after the quota check (nil, err on refusal).
function DATA.space_delta(p, a, newlen)
  local d = space_of(newlen) - space_of(a.length)
  if d > 0 then
    local err = check_quota(p, d, 0)
    if err then return nil, err end
  end
  return d
end

-- ---- who may commit a slice id (DESIGN.md §10: a rollback never mixes two clients' data) ---
-- The first words of the refusal; the client (meta/data.py) drops its batch when it sees them.
DATA.LOST = 'slice reservation lost'

function DATA.commit_member(owner, sid) return owner .. ':' .. sid end

-- May `owner` commit slice `sid`? 'retry' when it committed it already (the commit is a no-op);
-- nil when the id lies in the owner's reserved range (`slicebatches`, 22_reserve.lua); else
-- nil and the ESTALE reply: the reservation is gone -- Redis lost it (restarted from an older
-- state, failed over to a replica that was behind) or the session ended -- and the client must
-- not commit under an id that may now be someone else's. A check: writes nothing.
function DATA.claim(p, owner, sid)
  if redis.call('ZSCORE', k_named(p, 'commits'), DATA.commit_member(owner, sid)) then return 'retry' end
  local lo, hi = string.match(redis.call('HGET', k_named(p, 'slicebatches'), owner) or '', '^(%d+)-(%d+)$')
  local id = tonumber(sid)
  if lo and id and id >= tonumber(lo) and id <= tonumber(hi) then return nil end
  return nil, fail('ESTALE', DATA.LOST .. ': slice ' .. sid .. ' is not reserved by session ' .. owner
    .. ' (Redis lost recent writes, or the session ended)')
end

-- Writes: remember that `owner` committed slice `sid` (a retry is then a no-op), and forget
-- commits older than DATA.COMMIT_TTL.
function DATA.note_commit(p, owner, sid, t)
  local commits = k_named(p, 'commits')
  redis.call('ZADD', commits, t, DATA.commit_member(owner, sid))
  redis.call('ZREMRANGEBYSCORE', commits, '-inf', t - DATA.COMMIT_TTL)
end

-- Writes: the records of a committed slice (`sid`, `size` bytes), one per piece {chunk index,
-- pos, off, len} (a slice in two pieces holds two references), its inline bytes when `data` is
-- given (counted in `inlinebytes`, the chunks noted in `inlinechunks`) and the commit by `owner`
-- (DATA.note_commit). Returns the length of the last list pushed and of the longest.
function DATA.push_pieces(p, ino, sid, size, pieces, data, t, owner)
  local id = tonumber(sid)
  local kind = data and DATA.KIND_INLINE or DATA.KIND_S3
  local last, longest = 0, 0
  for _, pc in ipairs(pieces) do
    last = redis.call('RPUSH', k_chunk(p, ino, pc[1]), DATA.rec_pack(pc[2], id, size, pc[3], pc[4], kind))
    longest = math.max(longest, last)
    DATA.note_chunk(p, ino, pc[1])
    if data then redis.call('ZADD', k_named(p, 'inlinechunks'), t, DATA.chunk_member(ino, pc[1])) end
  end
  if #pieces > 1 then DATA.ref_add(p, id, size, #pieces - 1) end
  if data then
    redis.call('SET', k_inline(p, sid), data)
    redis.call('INCRBY', k_named(p, 'inlinebytes'), size)
  end
  DATA.note_commit(p, owner, sid, t)
  return last, longest
end

-- Hole records over the file range [s, e) on the chunks that exist (RPUSHX: a missing list is
-- zeros already). Returns nothing.
function DATA.push_holes(p, ino, s, e)
  if e <= s then return end
  for _, i in ipairs(DATA.chunk_indexes(p, ino, math.floor(s / CHUNK_SIZE), math.floor((e - 1) / CHUNK_SIZE))) do
    local cs = i * CHUNK_SIZE
    local a, b = math.max(s, cs) - cs, math.min(e, cs + CHUNK_SIZE) - cs
    redis.call('RPUSHX', k_chunk(p, ino, i), DATA.hole(a, b - a))
  end
end

-- af_read_chunk: a chunk's slice list and the bytes of its inline slices, in one round trip.
-- KEYS: setting. ARGV: ino, chunk index, [start, end: only inline slices whose records intersect
--   this chunk range are returned -- a small read of a chunk full of inline slices does not
--   fetch them all; default the whole chunk].
-- Returns {attr (91 bytes) or nil, records (n * 25 bytes concatenated), id1, bytes1, id2, ...}:
-- the inline slices asked for, each once; a missing b<id> (a race with its deletion after the
-- grace period) is left out, and the reader reports EIO for it.
-- Errors: none (a missing inode gives a nil attr and usually an empty list). Read-only.
redis.register_function{
  function_name = 'af_read_chunk',
  callback = function(keys, args)
    local p = prefix_of(keys)
    local lo, hi = tonumber(args[3]) or 0, tonumber(args[4]) or CHUNK_SIZE
    local recs = redis.call('LRANGE', k_chunk(p, args[1], args[2]), 0, -1)
    return DATA.add_inline(p, recs, lo, hi, { redis.call('GET', k_inode(p, args[1])), table.concat(recs) })
  end,
  flags = { 'no-writes' },
}

-- af_commit: commit one written slice to a file: its record(s), length, mtime/ctime, gen, used
-- space; with `data`, the bytes of an inline slice in the same call.
-- KEYS: setting.
-- ARGV: ino, chunk index, pos (in the chunk), slice id, size, off, len, append ('1'|'0'),
--   uid (the writer: non-root clears setuid/setgid), owner (the session that reserved the
--   slice id, '0' for none), [data: the inline slice's `size` bytes].
--   Append: index and pos are ignored; the data goes at the file's length at commit time. If
--   that crosses a chunk boundary, the record is split into two (the second at pos 0 of the
--   next chunk, both referencing the slice: 2 references), so an append always lands whole.
-- Returns {attr, records in the longest chunk list it pushed to, file offset where the data landed,
--   duplicate (1 if this owner already committed this slice id: nothing changed; attr may be
--   nil if the inode is gone since)}.
-- Errors: ESTALE (the slice id is not in the owner's reservation: DATA.claim), ENOENT (inode
--   gone; the caller deletes the uploaded blocks), EISDIR, EINVAL (bad record, not a regular
--   file), EFBIG, ENOSPC (capacity), EAGAIN (inline refused: over the inline limit or the
--   volume's inline cap -- store the slice in S3 instead; never ENOSPC).
-- All checks before the first write.
redis.register_function('af_commit', function(keys, args)
  local p = prefix_of(keys)
  local ino, sid = args[1], args[4]
  local indx, pos, id = tonumber(args[2]), tonumber(args[3]), tonumber(args[4])
  local size, off, len = tonumber(args[5]), tonumber(args[6]), tonumber(args[7])
  local append, uid, owner, data = args[8] == '1', tonumber(args[9]) or 0, args[10] or '0', args[11]
  if not (id and id > 0 and size and off and len and len > 0 and off >= 0 and off + len <= size
      and size <= CHUNK_SIZE) then
    return fail('EINVAL', 'invalid slice record')
  end
  local retry, cerr = DATA.claim(p, owner, sid)
  if retry then return { redis.call('GET', k_inode(p, ino)), 0, -1, 1 } end
  if cerr then return cerr end
  local a, err = DATA.file_attr(p, ino)
  if not a then return err end
  if data then
    if #data ~= size then return fail('EINVAL', 'inline data length differs from the slice size') end
    local ierr = inline_error(p, size, size)
    if ierr then return ierr end
  end
  local pieces
  if append then
    indx = math.floor(a.length / CHUNK_SIZE)
    pos = a.length - indx * CHUNK_SIZE
    local first = math.min(len, CHUNK_SIZE - pos)
    pieces = { { indx, pos, off, first } }
    if first < len then pieces[2] = { indx + 1, 0, off + first, len - first } end
  else
    if not (indx and pos and indx >= 0 and pos >= 0 and pos + len <= CHUNK_SIZE) then
      return fail('EINVAL', 'slice position outside its chunk')
    end
    pieces = { { indx, pos, off, len } }
  end
  local last = pieces[#pieces]
  local new_end = last[1] * CHUNK_SIZE + last[2] + last[4]
  if new_end > DATA.MAX_LENGTH then return fail('EFBIG', 'file too large') end
  local newlen = math.max(a.length, new_end)
  local dspace, qerr = DATA.space_delta(p, a, newlen)
  if not dspace then return qerr end
  -- writes
  local t, sec, ns_, clock = DATA.now_f()
  local _, count = DATA.push_pieces(p, ino, sid, size, pieces, data, t, owner)
  DATA.kill_suid(a, uid)
  close_write(p, ino, a, newlen, dspace, sec, ns_)
  change(p, keys, clock, 'd', 'commit', ino)
  return { attr_pack(a), count, pieces[1][1] * CHUNK_SIZE + pieces[1][2], 0 }
end)
