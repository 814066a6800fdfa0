"""An fsspec filesystem over a volume: ``fsspec.filesystem("artifacts", volume=vol)``.

pandas, pyarrow, dask and every other fsspec user can then read and write a workspace with
``artifacts://path/in/workspace`` URLs. It is a frontend like the others: every call goes through
the volume's path API (one canonicaliser, the same errors, the same consistency).

The volume is either passed in (``volume=``; it stays owned by the caller) or opened from the
same arguments as ``open_volume`` (``meta_url=``, ``key_prefix=``, ...; closed with the
filesystem). Instances are not cached by fsspec: a volume is a live connection.

One hook, ``_locate(path) -> (volume, path in it, outer prefix)``, is where a path meets a volume:
here always the one volume, with names as they are. ``artifacts_cli.fsspec_url`` (the class the
``artifacts`` protocol is registered to) overrides it so that ``artifacts://handle/workspace/path``
URLs work with nothing but the CLI's login; every method below goes through it.
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

    # -- where a path lives ----------------------------------------------------------------------

    def _locate(self, path) -> tuple:
        """``(volume, path inside it, outer prefix)``: names shown to fsspec are prefix + path."""
        return self.vol, self._strip_protocol(path), ""

    @staticmethod
    def _outer(prefix: str, inner: str) -> str:
        return prefix + inner if inner != "/" else (prefix or "/")

    def _info_from_stat(self, path: str, st) -> dict:
        info = {
            "name": path, "size": st.st_size if not _stat.S_ISDIR(st.st_mode) else 0,
            "type": _type(st.st_mode), "mode": st.st_mode, "nlink": st.st_nlink, "ino": st.st_ino,
            "uid": st.st_uid, "gid": st.st_gid, "mtime": st.st_mtime, "created": st.st_ctime,
            "islink": _stat.S_ISLNK(st.st_mode),
        }
        return info

    def info(self, path, **kwargs) -> dict:
        vol, inner, prefix = self._locate(path)
        name = self._outer(prefix, inner)
        st = vol.lstat(inner)
        if _stat.S_ISLNK(st.st_mode):
            try:
                target = vol.stat(inner)
            except (NotFound, PermissionError):
                target = st
            out = self._info_from_stat(name, target)
            out["islink"] = True
            return out
        return self._info_from_stat(name, st)

    def ls(self, path, detail=True, **kwargs):
        vol, inner, prefix = self._locate(path)
        st = vol.stat(inner)
        if not _stat.S_ISDIR(st.st_mode):
            entries = [self._info_from_stat(self._outer(prefix, inner), st)]
        else:
            base = inner.rstrip("/")
            entries = []
            for entry in vol.scandir(inner):
                if base == "" and entry.name in (".stats", ".config", ".accesslog", ".trash"):
                    continue  # internal files are for people and tools, not data pipelines
                entries.append(self._info_from_stat(f"{prefix}{base}/{entry.name}",
                                                    entry.stat(follow_symlinks=False)))
        entries.sort(key=lambda e: e["name"])
        return entries if detail else [e["name"] for e in entries]

    def _open(self, path, mode="rb", block_size=None, autocommit=True, cache_options=None, **kwargs):
        vol, inner, _ = self._locate(path)
        if "r" not in mode:
            self._mkdir_parent(vol, inner)
        return vol.open(inner, mode)

    def auto_mkdir_parent(self, path: str) -> bool:
        vol, inner, _ = self._locate(path)
        return self._mkdir_parent(vol, inner)

    def _mkdir_parent(self, vol, inner: str) -> bool:
        parent = self._parent(inner)
        if parent and parent != "/" and not vol.exists(parent):
            vol.makedirs(parent, exist_ok=True)
            return True
        return False

    def mkdir(self, path, create_parents=True, **kwargs) -> None:
        vol, inner, _ = self._locate(path)
        if create_parents:
            vol.makedirs(inner, exist_ok=False)
        else:
            vol.mkdir(inner)

    def makedirs(self, path, exist_ok=False) -> None:
        vol, inner, _ = self._locate(path)
        vol.makedirs(inner, exist_ok=exist_ok)

    def rmdir(self, path) -> None:
        vol, inner, _ = self._locate(path)
        vol.rmdir(inner)

    def rm_file(self, path) -> None:
        vol, inner, _ = self._locate(path)
        vol.remove(inner)

    def _rm(self, path) -> None:
        vol, inner, _ = self._locate(path)
        if vol.isdir(inner):
            vol.rmdir(inner)
        else:
            vol.remove(inner)

    def rm(self, path, recursive=False, maxdepth=None) -> None:
        paths = self.expand_path(path, recursive=recursive, maxdepth=maxdepth)
        for p in reversed(paths):  # children before their directories
            self._rm(p)

    def cp_file(self, path1, path2, **kwargs) -> None:
        (src_vol, src, _), (dst_vol, dst, _) = self._locate(path1), self._locate(path2)
        if src_vol.isdir(src):
            dst_vol.makedirs(dst, exist_ok=True)
            return
        self._mkdir_parent(dst_vol, dst)
        with src_vol.open(src, "rb") as fsrc, dst_vol.open(dst, "wb") as fdst:
            while data := fsrc.read(COPY_BUFFER):
                fdst.write(data)

    def mv(self, path1, path2, recursive=False, maxdepth=None, **kwargs) -> None:
        if isinstance(path1, str) and isinstance(path2, str) and not self._glob_like(path1):
            (vol, src, _), (dst_vol, dst, _) = self._locate(path1), self._locate(path2)
            if dst_vol is vol:  # a rename inside one volume; across volumes: copy, then delete
                if vol.isdir(dst) and not vol.isdir(src):
                    dst = dst.rstrip("/") + "/" + src.rsplit("/", 1)[-1]
                self._mkdir_parent(vol, dst)
                vol.rename(src, dst)
                return
        super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)

    @staticmethod
    def _glob_like(path: str) -> bool:
        return any(c in path for c in "*?[")

    def cat_file(self, path, start=None, end=None, **kwargs) -> bytes:
        vol, inner, _ = self._locate(path)
        with vol.open(inner, "rb") as f:
            size = f.seek(0, 2)
            start = 0 if start is None else (start if start >= 0 else max(size + start, 0))
            end = size if end is None else (end if end >= 0 else max(size + end, 0))
            f.seek(start)
            return f.read(max(end - start, 0))

    def pipe_file(self, path, value, mode="overwrite", **kwargs) -> None:
        vol, inner, _ = self._locate(path)
        self._mkdir_parent(vol, inner)
        if mode == "create" and vol.exists(inner):
            raise Exists("file exists", path=inner)
        vol.write_bytes(inner, value)

    def touch(self, path, truncate=True, **kwargs) -> None:
        vol, inner, _ = self._locate(path)
        if truncate or not vol.exists(inner):
            self._mkdir_parent(vol, inner)
            vol.write_bytes(inner, b"")
        else:
            vol.utime(inner)

    def created(self, path) -> _dt.datetime:
        vol, inner, _ = self._locate(path)
        return _dt.datetime.fromtimestamp(vol.stat(inner).st_ctime, _dt.UTC)

    def modified(self, path) -> _dt.datetime:
        vol, inner, _ = self._locate(path)
        return _dt.datetime.fromtimestamp(vol.stat(inner).st_mtime, _dt.UTC)
