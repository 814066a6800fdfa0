"""Small shared types. Inode numbers and slice ids are distinct ``NewType``s so one cannot be
passed where the other is expected."""

from __future__ import annotations

from typing import NewType

Ino = NewType("Ino", int)
SliceId = NewType("SliceId", int)

ROOT_INO = Ino(1)

#: A file is cut into chunks of 64 MiB: the unit of the metadata slice lists (JuiceFS-proven:
#: large enough that a 1 GiB file needs 16 lists, small enough that one list stays short).
CHUNK_SIZE = 64 << 20
#: Default block size: the unit of an S3 object. 4 MiB amortises request latency while a
#: whole-block GET (needed because blocks are compressed) stays cheap for small reads.
DEFAULT_BLOCK_SIZE = 4 << 20
