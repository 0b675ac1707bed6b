"""Re-hosting keeps only playable MP4 files."""

from __future__ import annotations

from pathlib import Path

import pytest

from reelgate.backends.remote.fakes.clips import clip
from reelgate.domain.errors import UpstreamRefused
from reelgate.worker.watch import probe_mp4


def test_a_real_mp4_passes(tmp_path: Path) -> None:
    path = tmp_path / "ok.mp4"
    path.write_bytes(clip(2, "16:9"))
    probe_mp4(path)


@pytest.mark.parametrize(
    "content",
    [b"", b"<html>Access denied</html>", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64],
)
def test_anything_else_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(UpstreamRefused) as error:
        probe_mp4(path)
    assert error.value.code == "upstream_bad_video"
