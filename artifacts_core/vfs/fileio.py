"""Real Python file objects over VFS handles: ``vol.open()`` returns what ``io.open`` would.

``VFSRawIO`` is an ``io.RawIOBase`` over one VFS handle; ``open_file`` wraps it exactly as
``io.open`` does (``BufferedReader``/``BufferedWriter``/``BufferedRandom``, then ``TextIOWrapper``
for text modes), so seek/tell, readinto, readline, iteration and context managers all behave.
``close()`` commits the data (flush, then release) and raises a storage failure instead of losing
it silently.
"""

from __future__ import annotations

import io
import os

from artifacts_core.errors import InvalidArgument, IsADirectory
from artifacts_core.types import Ino
from artifacts_core.vfs.core import VFS

#: Buffer of the binary layer: large enough that small Python writes become few VFS calls, small
#: enough that a text editor's save stays one inline slice when the file is small.
BUFFER_SIZE = 256 << 10


def mode_flags(mode: str) -> tuple[int, bool, bool]:
    """(os flags, binary, appending) for an ``io.open`` mode string."""
    chars = set(mode)
    if len(mode) != len(chars) or not chars <= set("rwaxbt+") or len(chars & set("rwax")) != 1 \
            or {"b", "t"} <= chars:
        raise InvalidArgument(f"invalid mode: {mode!r}")
    plus = "+" in chars
    if "r" in chars:
        flags = os.O_RDWR if plus else os.O_RDONLY
    else:
        flags = (os.O_RDWR if plus else os.O_WRONLY) | os.O_CREAT
        if "w" in chars:
            flags |= os.O_TRUNC
        elif "a" in chars:
            flags |= os.O_APPEND
        else:
            flags |= os.O_EXCL
    return flags, "b" in chars, "a" in chars


class VFSRawIO(io.RawIOBase):
    def __init__(self, vfs: VFS, fh: int, ino: Ino, name: str, flags: int) -> None:
        super().__init__()
        self._vfs = vfs
        self._fh = fh
        self._ino = ino
        self.name = name
        self._flags = flags
        self._pos = 0
        self._closing = False
        acc = flags & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
        self._readable = acc in (os.O_RDONLY, os.O_RDWR)
        self._writable = acc in (os.O_WRONLY, os.O_RDWR)
        self.mode = "rb" if not self._writable else ("rb+" if self._readable else "wb")
        if vfs.handle_is_dir(fh):  # as io.FileIO: opening a directory is EISDIR, not a file of zeros
            raise IsADirectory("is a directory", path=name)
        if flags & os.O_APPEND:
            self._pos = self._size()

    def _size(self) -> int:
        return self._vfs.getattr(self._ino).length

    def readable(self) -> bool:
        return self._readable

    def writable(self) -> bool:
        return self._writable

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self._checkClosed()
        if not self._readable:
            raise io.UnsupportedOperation("not readable")
        view = memoryview(buffer).cast("B")
        data = self._vfs.read_buffer(self._fh, self._pos, len(view))  # copied once, into the caller's buffer
        n = len(data)
        view[:n] = data
        self._pos += n
        return n

    def readall(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            data = self._vfs.read(self._fh, self._pos, 4 << 20)
            if not data:
                return b"".join(chunks)
            chunks.append(data)
            self._pos += len(data)

    def write(self, data) -> int:
        self._checkClosed()
        if not self._writable:
            raise io.UnsupportedOperation("not writable")
        n = self._vfs.write(self._fh, self._pos, data)
        if self._flags & os.O_APPEND:
            self._pos = self._size()
        else:
            self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size() + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if pos < 0:
            raise OSError(22, "Invalid argument: negative seek position")
        self._pos = pos
        return pos

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def truncate(self, size: int | None = None) -> int:
        self._checkClosed()
        if not self._writable:
            raise io.UnsupportedOperation("not writable")
        size = self._pos if size is None else size
        self._vfs.truncate(self._ino, size)
        return size

    def flush(self) -> None:
        if not self.closed and self._writable and not self._closing:
            self._vfs.flush(self._fh)

    def fileno(self) -> int:
        raise io.UnsupportedOperation("workspace files have no OS file descriptor")

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._writable:
                self._vfs.flush(self._fh)
        finally:
            self._closing = True  # io's close() calls flush() again: the error was raised once
            try:
                super().close()
            finally:
                self._vfs.release(self._fh)


def wrap(raw: VFSRawIO, *, binary: bool, buffering: int, encoding: str | None, errors: str | None,
         newline: str | None, line_buffering: bool = False):
    if buffering == 0:
        if not binary:
            raise ValueError("can't have unbuffered text I/O")
        return raw
    size = BUFFER_SIZE if buffering in (-1, 1) else buffering
    buffered: io.BufferedRandom | io.BufferedWriter | io.BufferedReader
    if raw.readable() and raw.writable():
        buffered = io.BufferedRandom(raw, size)
    elif raw.writable():
        buffered = io.BufferedWriter(raw, size)
    else:
        buffered = io.BufferedReader(raw, size)
    if binary:
        return buffered
    text = io.TextIOWrapper(buffered, encoding=encoding or "utf-8", errors=errors, newline=newline,
                            line_buffering=line_buffering or buffering == 1, write_through=False)
    # A plain attribute of TextIOWrapper, set as io.open sets it; typeshed declares it read-only.
    text.mode = raw.mode.replace("b", "")  # type: ignore[misc]
    return text
