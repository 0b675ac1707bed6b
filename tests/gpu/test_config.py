"""Local models in the configuration file, and start-up without the gpu extra."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from reelgate.config import ConfigError, load_config
from reelgate.settings import Settings
from reelgate.wiring import build


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "reelgate.toml"
    path.write_text(text)
    return path


WAN = """
[local_models."wan-2.1-t2v-1.3b"]
pipeline = "wan"
weights = "/srv/models/Wan2.1-T2V-1.3B-Diffusers"
"""


def test_defaults_and_catalog_entry(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, WAN))
    wan = config.local_models["wan-2.1-t2v-1.3b"]
    assert (wan.device, wan.dtype, wan.frame_rate, wan.cpu_offload) == (
        "cuda",
        "bfloat16",
        16,
        False,
    )
    spec = config.local_specs()[0]
    assert (spec.id, spec.min_seconds, spec.max_seconds, spec.resolutions) == (
        "wan-2.1-t2v-1.3b",
        1,
        5,
        ("480p",),
    )


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ('device = "cpu"\ncpu_offload = true\n', "cpu_offload needs a CUDA device"),
        ('device = "gpu0"\n', "device must be cpu, cuda or cuda:N"),
        ("image_input = true\n", "image_input needs pipeline wan-ti2v or ltx"),
        ('pipeline2 = "x"\n', "pipeline2"),
        ("min_seconds = 4\nmax_seconds = 2\n", "max_seconds must be at least min_seconds"),
    ],
)
def test_bad_local_models_fail_at_start(tmp_path: Path, extra: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_config(write(tmp_path, WAN + extra))


def test_a_seedance_id_can_be_served_locally(tmp_path: Path) -> None:
    text = WAN.replace("wan-2.1-t2v-1.3b", "doubao-seedance-1-0-pro") + "max_seconds = 4\n"
    settings = Settings(data_dir=tmp_path, config=str(write(tmp_path, text)), workers=0)
    components = build(settings)
    spec = components.catalog.get("doubao-seedance-1-0-pro")
    assert (
        spec.max_seconds == 4
        and components.renderers["doubao-seedance-1-0-pro"].name == "diffusers"
    )


def test_route_and_local_model_conflict(tmp_path: Path) -> None:
    text = WAN + '[providers.p]\nkind = "preview"\n[[routes."wan-2.1-t2v-1.3b"]]\nprovider = "p"\n'
    with pytest.raises(ConfigError, match="local model"):
        load_config(write(tmp_path, text))


def test_without_the_extra_a_worker_fails_naming_the_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    settings = Settings(data_dir=tmp_path, config=str(write(tmp_path, WAN)), workers=1)
    with pytest.raises(ConfigError, match=r"pip install 'reelgate\[gpu\]'"):
        build(settings)
    build(Settings(data_dir=tmp_path, config=str(write(tmp_path, WAN)), workers=0))  # API only


def test_the_base_install_never_imports_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from reelgate.settings import Settings\n"
        "from reelgate.wiring import build\n"
        "import reelgate.api.app, reelgate.renderers.diffusers\n"
        f"build(Settings(data_dir={str(tmp_path)!r}, config={str(write(tmp_path, WAN))!r}))\n"
        "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
