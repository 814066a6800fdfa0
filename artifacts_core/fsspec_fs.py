"""An fsspec filesystem over a volume: ``fsspec.filesystem("artifacts", volume=vol)``.

pandas, pyarrow, dask and every other fsspec user can then read and write a workspace with
``artifacts://path/in/workspace`` URLs. It is a frontend like the others: every call goes through
the volume's path API (one canonicaliser, the same errors, the same consistency).

The volume is either passed in (``volume=``; it stays owned by the caller) or opened from the
same arguments as ``open_volume`` (``meta_url=``, ``key_prefix=``, ...; closed with the
filesystem). Instances are not cached by fsspec: a volume is a live connection.
"""

from __future__ import annotations

import datetime as _dt
import stat as _stat

from fsspec.spec import AbstractFileSystem

from artifacts_core.errors import Exists, NotFound

#: Copy buffer for cp_file: one block, so a copy streams block by block.
COPY_BUFFER = 4 << 20


def _type(mode: int) -> str:
    if _stat.S_ISDIR(mode):
        return "directory"
    if _stat.S_ISREG(mode):
        return "file"
    return "other"


class ArtifactsFileSystem(AbstractFileSystem):
    protocol = "artifacts"
    root_marker = "/"
    cachable = False

    def __init__(self, volume=None, **open_args) -> None:
        super().__init__()
        if volume is None:
            from artifacts_core.volume import open_volume

            volume = open_volume(**open_args)
            self._owned = True
        else:
            self._owned = False
        self.vol = volume

    def close(self) -> None:
        if self._owned:
            self.vol.close()

    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path)
        if path.startswith("artifacts://"):
            path = path[len("artifacts://"):]
        path = "/" + path.strip("/")
        return path

    def _info_from_stat(self, path: str, st) -> dict:
        info = {
            "name": path, "size": st.st_size if not _stat.S_ISDIR(st.st_mode) else 0,
            "type": _type(st.st_mode), "mode": st.st_mode, "nlink": st.st_nlink, "ino": st.st_ino,
            "uid": st.st_uid, "gid": st.st_gid, "mtime": st.st_mtime, "created": st.st_ctime,
            "islink": _stat.S_ISLNK(st.st_mode),
        }
        return info

    def info(self, path, **kwargs) -> dict:
        path = self._strip_protocol(path)
        st = self.vol.lstat(path)
        if _stat.S_ISLNK(st.st_mode):
            try:
                target = self.vol.stat(path)
            except (NotFound, PermissionError):
                target = st
            out = self._info_from_stat(path, target)
            out["islink"] = True
            return out
        return self._info_from_stat(path, st)

    def ls(self, path, detail=True, **kwargs):
        path = self._strip_protocol(path)
        st = self.vol.stat(path)
        if not _stat.S_ISDIR(st.st_mode):
            entries = [self._info_from_stat(path, st)]
        else:
            base = path.rstrip("/")
            entries = []
            for entry in self.vol.scandir(path):
                if base == "" and entry.name in (".stats", ".config", ".accesslog", ".trash"):
                    continue  # internal files are for people and tools, not data pipelines
                entries.append(self._info_from_stat(f"{base}/{entry.name}", entry.stat(follow_symlinks=False)))
        entries.sort(key=lambda e: e["name"])
        return entries if detail else [e["name"] for e in entries]

    def _open(self, path, mode="rb", block_size=None, autocommit=True, cache_options=None, **kwargs):
        path = self._strip_protocol(path)
        if "r" not in mode and self.auto_mkdir_parent(path):
            pass
        return self.vol.open(path, mode)

    def auto_mkdir_parent(self, path: str) -> bool:
        parent = self._parent(path)
        if parent and parent != "/" and not self.vol.exists(parent):
            self.vol.makedirs(parent, exist_ok=True)
            return True
        return False

    def mkdir(self, path, create_parents=True, **kwargs) -> None:
        path = self._strip_protocol(path)
        if create_parents:
            self.vol.makedirs(path, exist_ok=False)
        else:
            self.vol.mkdir(path)

    def makedirs(self, path, exist_ok=False) -> None:
        self.vol.makedirs(self._strip_protocol(path), exist_ok=exist_ok)

    def rmdir(self, path) -> None:
        self.vol.rmdir(self._strip_protocol(path))

    def rm_file(self, path) -> None:
        self.vol.remove(self._strip_protocol(path))

    def _rm(self, path) -> None:
        path = self._strip_protocol(path)
        if self.vol.isdir(path):
            self.vol.rmdir(path)
        else:
            self.vol.remove(path)

    def rm(self, path, recursive=False, maxdepth=None) -> None:
        paths = self.expand_path(path, recursive=recursive, maxdepth=maxdepth)
        for p in reversed(paths):  # children before their directories
            self._rm(p)

    def cp_file(self, path1, path2, **kwargs) -> None:
        path1, path2 = self._strip_protocol(path1), self._strip_protocol(path2)
        if self.vol.isdir(path1):
            self.vol.makedirs(path2, exist_ok=True)
            return
        self.auto_mkdir_parent(path2)
        with self.vol.open(path1, "rb") as src, self.vol.open(path2, "wb") as dst:
            while data := src.read(COPY_BUFFER):
                dst.write(data)

    def mv(self, path1, path2, recursive=False, maxdepth=None, **kwargs) -> None:
        if isinstance(path1, str) and isinstance(path2, str) and not self._glob_like(path1):
            src, dst = self._strip_protocol(path1), self._strip_protocol(path2)
            if self.vol.isdir(dst) and not self.vol.isdir(src):
                dst = dst.rstrip("/") + "/" + src.rsplit("/", 1)[-1]
            self.auto_mkdir_parent(dst)
            self.vol.rename(src, dst)
            return
        super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)

    @staticmethod
    def _glob_like(path: str) -> bool:
        return any(c in path for c in "*?[")

    def cat_file(self, path, start=None, end=None, **kwargs) -> bytes:
        path = self._strip_protocol(path)
        with self.vol.open(path, "rb") as f:
            size = f.seek(0, 2)
            start = 0 if start is None else (start if start >= 0 else max(size + start, 0))
            end = size if end is None else (end if end >= 0 else max(size + end, 0))
            f.seek(start)
            return f.read(max(end - start, 0))

    def pipe_file(self, path, value, mode="overwrite", **kwargs) -> None:
        path = self._strip_protocol(path)
        self.auto_mkdir_parent(path)
        if mode == "create" and self.vol.exists(path):
            raise Exists("file exists", path=path)
        self.vol.write_bytes(path, value)

    def touch(self, path, truncate=True, **kwargs) -> None:
        path = self._strip_protocol(path)
        if truncate or not self.vol.exists(path):
            self.auto_mkdir_parent(path)
            self.vol.write_bytes(path, b"")
        else:
            self.vol.utime(path)

    def created(self, path) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(self.vol.stat(self._strip_protocol(path)).st_ctime, _dt.UTC)

    def modified(self, path) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(self.vol.stat(self._strip_protocol(path)).st_mtime, _dt.UTC)
