"""Blobs as files under one folder, written atomically (temp file, fsync, rename).

Every failure of the file system (a full disk, a folder that stopped being writable,
an I/O error) becomes ``Unavailable``: a transient fault that the worker retries with
backoff, never a task's end. ``probe_folder`` and ``check_writable`` tell whether
storage takes writes now, with a minimum of free space (``REELGATE_MIN_FREE_BYTES``):
the worker claims nothing while it does not, and ``/readyz`` answers 503.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from reelgate.domain.errors import InvalidRequest, NotFound, Unavailable
from reelgate.ports import BlobStore

_KEY = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_.-]+)*$")
PROBE_BYTES = b"\0" * 512  # what a probe writes: one small block
T = TypeVar("T")


def free_bytes(folder: Path) -> int:
    """The bytes an unprivileged writer may still use on ``folder``'s file system."""
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def probe_folder(folder: Path, min_free_bytes: int = 0) -> None:
    """Raise ``Unavailable`` unless ``folder`` takes a small write now (blocking).

    The probe creates the folder if needed, writes a small file, fsyncs and deletes it,
    then checks that at least ``min_free_bytes`` are free. The message names the folder
    and the cause: it is for the log and the operator, never for a client.
    """
    probe = folder / f".probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, PROBE_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
        free = free_bytes(folder)
    except OSError as exc:
        raise Unavailable(f"storage folder {folder} cannot take writes: {exc}") from exc
    if free < min_free_bytes:
        raise Unavailable(
            f"storage folder {folder} has {free} bytes free, "
            f"less than REELGATE_MIN_FREE_BYTES ({min_free_bytes})"
        )


async def check_writable(
    blobs: BlobStore, folders: Iterable[Path] = (), *, min_free_bytes: int = 0
) -> None:
    """Raise ``Unavailable`` unless ``blobs`` and every one of ``folders`` take writes now.

    Local blobs and the folders get ``probe_folder`` (with the free-space minimum);
    other blob stores their own ``ping``.
    """
    for folder in folders:
        await asyncio.to_thread(probe_folder, folder, min_free_bytes)
    if isinstance(blobs, LocalBlobs):
        await asyncio.to_thread(probe_folder, blobs.root, min_free_bytes)
    else:
        await blobs.ping()


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
        path = self.local_path(key)
        try:
            return await self._run(path.read_bytes)
        except Unavailable as exc:
            if isinstance(exc.__cause__, FileNotFoundError):
                raise NotFound(f"no blob {key!r}") from None
            raise

    async def exists(self, key: str) -> bool:
        return await self._run(self.local_path(key).is_file)

    async def delete(self, key: str) -> None:
        await self._run(self.local_path(key).unlink, True)

    async def ping(self) -> None:
        """Raise ``Unavailable`` unless the folder takes a small write (write, fsync, delete)."""
        await asyncio.to_thread(probe_folder, self.root)

    @staticmethod
    async def _run(fn: Callable[..., T], *args: object) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except OSError as exc:
            raise Unavailable(f"storage: {exc}") from exc

    async def close(self) -> None:
        return None
