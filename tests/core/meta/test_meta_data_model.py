"""A Hypothesis state machine driving the data map (writes inline and to S3, appends, truncate,
fallocate, copy_file_range, compaction, reclaim, deleting files) against a sparse byte model,
on real Redis. At the end every file is deleted and reclaimed: then every S3 slice must have been
deleted exactly once, and no inline byte, reference or queue entry may be left."""

from __future__ import annotations

import itertools
import os

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from test_meta_data import Blobs, read_file, refs, write

from artifacts_core.errors import InvalidArgument
from artifacts_core.meta.attrs import SLICE_INLINE, SLICE_S3, SliceRecord, unpack_slice
from artifacts_core.meta.data import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE
from artifacts_core.types import CHUNK_SIZE, ROOT_INO

_ids = itertools.count(500_000)
GRACE_PAST = 3600.0
# Offsets near the start of a file and around the first chunk boundary: where the edge cases are.
offsets = st.sampled_from([0, CHUNK_SIZE - 40]).flatmap(lambda base: st.integers(base, base + 80))
lengths = st.integers(1, 60)
payloads = st.binary(min_size=1, max_size=60).map(lambda b: bytes(x or 1 for x in b))  # no zeros
WINDOWS = ((0, 160), (CHUNK_SIZE - 64, CHUNK_SIZE + 120))
FILES = ("a", "b")


class Model:
    def __init__(self) -> None:
        self.bytes: dict[int, int] = {}
        self.length = 0

    def put(self, offset: int, data: bytes) -> None:
        for i, b in enumerate(data):
            if b:
                self.bytes[offset + i] = b
            else:
                self.bytes.pop(offset + i, None)
        self.length = max(self.length, offset + len(data))

    def zero(self, start: int, end: int) -> None:
        for k in [k for k in self.bytes if start <= k < end]:
            del self.bytes[k]

    def read(self, start: int, end: int) -> bytes:
        end = min(end, self.length)
        return bytes(self.bytes.get(i, 0) for i in range(start, end)) if end > start else b""


class DataMachine(RuleBasedStateMachine):
    def __init__(self, factory) -> None:
        super().__init__()
        self.meta = factory(f"{{u_{os.getpid()}_w_{next(_ids)}}}:")
        self.blobs = Blobs()
        self.models = {name: Model() for name in FILES}
        self.inos = {name: self.meta.create(ROOT_INO, name)[0] for name in FILES}

    @rule(name=st.sampled_from(FILES), offset=offsets, data=payloads, inline=st.booleans())
    def write(self, name, offset, data, inline):
        write(self.meta, self.inos[name], offset, data, self.blobs, inline=inline)
        self.models[name].put(offset, data)

    @rule(name=st.sampled_from(FILES), data=payloads, inline=st.booleans())
    def append(self, name, data, inline):
        model = self.models[name]
        result = write(self.meta, self.inos[name], 0, data, self.blobs, inline=inline, append=True)
        assert result.offset == model.length
        model.put(model.length, data)

    @rule(name=st.sampled_from(FILES), length=offsets)
    def truncate(self, name, length):
        attr = self.meta.truncate(self.inos[name], length)
        model = self.models[name]
        model.zero(length, 1 << 62)
        model.length = length
        assert attr.length == length

    @rule(name=st.sampled_from(FILES), offset=offsets, length=lengths,
          mode=st.sampled_from([0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                FALLOC_FL_ZERO_RANGE, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE]))
    def fallocate(self, name, offset, length, mode):
        model = self.models[name]
        self.meta.fallocate(self.inos[name], mode, offset, length)
        newlen = model.length if mode & FALLOC_FL_KEEP_SIZE else max(model.length, offset + length)
        if mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE):
            model.zero(offset, min(offset + length, newlen))
        model.length = newlen

    @rule(src=st.sampled_from(FILES), dst=st.sampled_from(FILES), soff=offsets, doff=offsets,
          length=lengths)
    def copy(self, src, dst, soff, doff, length):
        s, d = self.models[src], self.models[dst]
        n = min(length, s.length - soff)
        if src == dst and n > 0 and soff < doff + n and doff < soff + n:
            try:
                self.meta.copy_file_range(self.inos[src], soff, self.inos[dst], doff, length)
            except InvalidArgument:
                return
            raise AssertionError("overlapping copy in one file must be EINVAL")
        copied, _ = self.meta.copy_file_range(self.inos[src], soff, self.inos[dst], doff, length)
        assert copied == max(n, 0)
        if n > 0:
            d.put(doff, s.read(soff, soff + n).ljust(n, b"\0"))

    @rule(name=st.sampled_from(FILES), index=st.integers(0, 1), to_s3=st.booleans(),
          keep_min=st.sampled_from([1 << 20, 8, 30]))
    def compact(self, name, index, to_s3, keep_min):
        blobs = self.blobs

        def writer(job):
            data = job.data(blobs.read)
            if to_s3 or not job.inline_ok:
                blobs.data[job.slice_id] = data
                return SliceRecord(job.start, job.slice_id, len(data), 0, len(data), SLICE_S3), None
            return SliceRecord(job.start, job.slice_id, len(data), 0, len(data), SLICE_INLINE), data

        # keep_min small, so that keeping an untouched head of S3 slices is exercised too
        result = self.meta.compact_chunk(self.inos[name], index, writer, prefer_s3=to_s3,
                                         keep_min=keep_min)
        assert result.status in ("swapped", "empty", "skipped")

    @rule(past_grace=st.booleans())
    def reclaim(self, past_grace):
        self.meta.reclaim(self.blobs.delete, interval=None, now_offset=GRACE_PAST if past_grace else 0)

    @rule(name=st.sampled_from(FILES), data=payloads, inline=st.booleans(), at=offsets)
    def write_file(self, name, data, inline, at):
        """writeFile: the whole content replaced by ``data`` at ``at`` (zeros before it)."""
        sid = self.meta.new_slice_id()
        index, pos = divmod(at, CHUNK_SIZE)
        n = min(len(data), CHUNK_SIZE - pos)
        if not inline:
            self.blobs.data[sid] = data
        rec = SliceRecord(pos, sid, len(data), 0, n, SLICE_INLINE if inline else SLICE_S3)
        pieces = [(index, rec, data if inline else None)]
        if n < len(data):
            pieces.append((index + 1, SliceRecord(0, sid, len(data), n, len(data) - n, rec.kind),
                           data if inline else None))
        self.meta.replace_content(self.inos[name], at + len(data), pieces)
        self.models[name] = Model()
        self.models[name].put(at, data)

    @rule(name=st.sampled_from(FILES))
    def replace(self, name):
        """Delete a file (its data released, shared slices kept) and start a new one."""
        self.meta.unlink(ROOT_INO, name)
        self.inos[name] = self.meta.create(ROOT_INO, name)[0]
        self.models[name] = Model()

    @invariant()
    def contents_match(self):
        for name in FILES:
            model, ino = self.models[name], self.inos[name]
            attr = self.meta.read_chunk_attr(ino, 0)[0]
            assert attr.length == model.length
            for start, end in WINDOWS:
                if start < model.length:
                    assert read_file(self.meta, ino, self.blobs, start, end) == model.read(start, end)

    @invariant()
    def references_match_the_records(self):
        """Every non-hole record holds one reference: ``sliceref`` (references - 1, missing = 1)
        agrees with a count over every chunk list, and a referenced slice is never queued."""
        meta = self.meta
        pattern = meta.keys.prefix.replace("{", "\\{").replace("}", "\\}") + "c[0-9]*"
        counts: dict[str, int] = {}
        inodes = {str(ino) for ino in self.inos.values()}
        for key in meta.client.command("KEYS", pattern):
            ino, _, index = key.decode().rpartition("c")[2].partition("_")
            if int(index) >= 1 and ino in inodes:  # every list of index >= 1 is in its file's set
                assert meta.client.command("SISMEMBER", meta.keys.chunk_indexes(int(ino)), index)
            for raw in meta.client.command("LRANGE", key, 0, -1):
                r = unpack_slice(raw)
                if r.id:
                    counts[f"{r.id}_{r.size}"] = counts.get(f"{r.id}_{r.size}", 0) + 1
        stored = refs(meta)
        assert {f: n for f, n in counts.items() if n > 1} == {f: v + 1 for f, v in stored.items()}
        queued = {m.decode() for m in meta.client.command("ZRANGE", meta.keys.delslices, 0, -1)}
        assert not queued & set(counts)

    def teardown(self):
        for name in FILES:
            self.meta.unlink(ROOT_INO, name)
        self.meta.reclaim(self.blobs.delete, interval=None, now_offset=GRACE_PAST)
        meta = self.meta
        assert self.blobs.data == {}, "an S3 slice was never deleted"
        assert len(self.blobs.deleted) == len(set(self.blobs.deleted)), "a slice was deleted twice"
        assert meta.inline_bytes() == 0 and refs(meta) == {}
        assert meta.client.command("ZCARD", meta.keys.delfiles) == 0
        assert meta.client.command("ZCARD", meta.keys.delslices) == 0
        assert meta.client.command("ZCARD", meta.keys.inlinechunks) == 0
        assert meta.client.command("KEYS", meta.keys.prefix.replace("{", "\\{").replace("}", "\\}") + "ci*") == []
        leftover = meta.client.command("KEYS", meta.keys.prefix.replace("{", "\\{").replace("}", "\\}") + "[bc][0-9]*")
        assert leftover == [], leftover
        meta.close()


def test_data_map_matches_the_model(meta_factory):
    run_state_machine_as_test(lambda: DataMachine(meta_factory),
                              settings=settings(max_examples=120, stateful_step_count=40, deadline=None))


def test_data_map_matches_the_model_on_a_cluster(meta_factory, redis_cluster):
    run_state_machine_as_test(lambda: DataMachine(lambda prefix: meta_factory(prefix, url=redis_cluster.url)),
                              settings=settings(max_examples=25, stateful_step_count=30, deadline=None))
