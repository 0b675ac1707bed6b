"""Blobs as files under one folder, written atomically (temp file, fsync, rename)."""

from __future__ import annotations

import asyncio
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from reelgate.domain.errors import InvalidRequest, NotFound, Unavailable

_KEY = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_.-]+)*$")


class LocalBlobs:
    """``BlobStore`` in a local folder; the API serves the files through signed URLs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / ".tmp"

    def local_path(self, key: str) -> Path:
        if not _KEY.match(key) or ".." in key.split("/"):
            raise InvalidRequest(f"invalid blob key {key!r}")
        return self.root / key

    def presigned_url(self, key: str, *, expires_in: int) -> str | None:
        return None

    def _install(self, key: str, source: Path) -> None:
        target = self.local_path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(source, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(source, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _staged(self) -> Path:
        self._tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self._tmp, suffix=".part")
        os.close(fd)
        return Path(name)

    def _put_file(self, key: str, path: Path) -> None:
        try:
            self._install(key, path)  # a rename, when on the same file system
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            staged = self._staged()  # another file system: copy beside the target first
            try:
                shutil.move(path, staged)
                self._install(key, staged)
            finally:
                staged.unlink(missing_ok=True)

    def _put_bytes(self, key: str, data: bytes) -> None:
        staged = self._staged()
        try:
            staged.write_bytes(data)
            self._install(key, staged)
        finally:
            staged.unlink(missing_ok=True)

    async def put_file(self, key: str, path: Path) -> None:
        await self._run(self._put_file, key, path)

    async def put_bytes(self, key: str, data: bytes) -> None:
        await self._run(self._put_bytes, key, data)

    async def get_bytes(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self.local_path(key).read_bytes)
        except FileNotFoundError:
            raise NotFound(f"no blob {key!r}") from None

    async def exists(self, key: str) -> bool:
        return self.local_path(key).is_file()

    async def delete(self, key: str) -> None:
        self.local_path(key).unlink(missing_ok=True)

    async def ping(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise Unavailable(f"storage folder {self.root} is not writable")
        except OSError as exc:
            raise Unavailable(f"storage folder {self.root}: {exc}") from exc

    @staticmethod
    async def _run(fn: Callable[..., None], *args: object) -> None:
        try:
            await asyncio.to_thread(fn, *args)
        except OSError as exc:
            raise Unavailable(f"storage: {exc}") from exc

    async def close(self) -> None:
        return None
