"""The client's two dealings with local files: the image it uploads, the video it saves.

Both twins use these; the async one runs :func:`image_part` in a worker thread.
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from reelgate.client._base import CreateParams, ImageInput, ImagePart

_MAGIC: tuple[tuple[bytes, int, str, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png", "png"),
    (b"\xff\xd8\xff", 0, "image/jpeg", "jpg"),
    (b"WEBP", 8, "image/webp", "webp"),
    (b"GIF8", 0, "image/gif", "gif"),
)


def _sniff(content: bytes) -> tuple[str, str] | None:
    for magic, at, media_type, suffix in _MAGIC:
        if content[at : at + len(magic)] == magic:
            return media_type, suffix
    return None


def image_part(image: ImageInput) -> ImagePart:
    """Read ``image`` into ``(filename, content, media type)`` for a multipart upload.

    The media type comes from the content's first bytes, else from the file name.
    """
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        content, name = path.read_bytes(), path.name
    elif isinstance(image, bytes | bytearray | memoryview):
        content, name = bytes(image), ""
    else:
        content = image.read()
        name = os.path.basename(str(getattr(image, "name", "") or ""))
        if not isinstance(content, bytes):
            raise TypeError("input_reference must be opened in binary mode")
    sniffed = _sniff(content)
    guessed = mimetypes.guess_type(name)[0] if name else None
    media_type = sniffed[0] if sniffed else guessed or "application/octet-stream"
    if not name:
        name = f"image.{sniffed[1] if sniffed else 'bin'}"
    return name, content, media_type


def image_of(params: CreateParams) -> ImagePart | None:
    """The upload for ``params["input_reference"]``, if any."""
    image = params.get("input_reference")
    return None if image is None else image_part(image)


def target_path(path: str | os.PathLike[str], video_id: str) -> Path:
    """Where a download lands: ``path`` itself, or ``<path>/<id>.mp4`` for a folder."""
    target = Path(path)
    if target.is_dir():
        return target / f"{video_id}.mp4"
    return target


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[IO[bytes]]:
    """A temporary file beside ``target``, renamed onto it only when the block succeeds.

    A failed or interrupted download never leaves a truncated file at ``target``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed below, renamed, not deleted)
        mode="w+b", dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False
    )
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), 0o666 & ~_umask())  # as open() would have made it
        os.replace(handle.name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
