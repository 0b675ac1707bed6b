"""The configuration file: a valid one routes models; a bad one names file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from reelgate.cli import app
from reelgate.config import ConfigError, load_config
from reelgate.domain.catalog import Catalog

MODELS = [spec.id for spec in Catalog()]
GOOD = """\
# Seedance 2.0 on BytePlus, falling back to Volcengine; 1.0 pro on CometAPI.
[providers.byteplus]
kind = "ark"
base_url = "https://ark.ap-southeast.bytepluses.com/api/v3"
region = "ap-southeast"
api_key_env = "ARK_KEY"
max_concurrent = 8

[providers.volcengine]
kind = "ark"
base_url = "https://ark.cn-beijing.volces.com/api/v3"
api_key_env = "VOLC_KEY"

[providers.comet]
kind = "cometapi"
base_url = "https://api.cometapi.com"
api_key_env = "COMET_KEY"

[watch]
min_interval = 5

[[routes."doubao-seedance-2-0"]]
provider = "byteplus"
model = "dreamina-seedance-2-0-260128"

[[routes."doubao-seedance-2-0"]]
provider = "volcengine"

[[routes."doubao-seedance-1-0-pro"]]
provider = "comet"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "reelgate.toml"
    path.write_text(text)
    return path


def test_a_good_file_routes_models_in_order(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), models=MODELS)
    assert config.remote_routes() == {
        "doubao-seedance-2-0": [
            ("byteplus", "dreamina-seedance-2-0-260128"),
            ("volcengine", "doubao-seedance-2-0"),
        ],
        "doubao-seedance-1-0-pro": [("comet", "doubao-seedance-1-0-pro")],
    }
    assert config.watch.min_interval == 5 and config.providers["byteplus"].max_concurrent == 8
    env = {"ARK_KEY": "a", "VOLC_KEY": "v", "COMET_KEY": "c"}
    assert config.api_keys(env) == {"byteplus": "a", "volcengine": "v", "comet": "c"}
    with pytest.raises(ConfigError, match="COMET_KEY") as missing:
        config.api_keys({"ARK_KEY": "secret-a", "VOLC_KEY": "secret-v"})
    assert "secret" not in str(missing.value)
    unused = load_config(
        write(tmp_path, GOOD.replace('provider = "comet"', 'provider = "byteplus"'))
    )
    assert unused.api_keys({"ARK_KEY": "a", "VOLC_KEY": "v"}) == {
        "byteplus": "a",
        "volcengine": "v",
    }


def test_no_file_means_the_preview_renderer_only() -> None:
    assert load_config("").remote_routes() == {}


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (("max_concurrent = 8", "max_concurrent = 0"), ":7: providers.byteplus.max_concurrent:"),
        (('kind = "cometapi"', 'kind = "sora"'), ":15: providers.comet.kind:"),
        (("min_interval = 5", "min_intervall = 5"), ":20: watch.min_intervall:"),
        (('provider = "volcengine"', 'provider = "nope"'), ":22: routes.doubao-seedance-2-0:"),
        (("min_interval = 5", "min_interval = 50"), ":19: watch: max_interval must be"),
        (('"doubao-seedance-1-0-pro"', '"doubao-seedance-9"'), ":29: routes.doubao-seedance-9:"),
        (('api_key_env = "VOLC_KEY"', ""), ":9: providers.volcengine:"),
        (("[watch]", "[watch"), "not valid TOML"),
    ],
)
def test_a_bad_file_names_the_line_and_the_field(
    tmp_path: Path, change: tuple[str, str], where: str
) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as error:
        load_config(path, models=MODELS)
    assert str(error.value).startswith(str(path)) and where in str(error.value), error.value


def test_serve_refuses_a_bad_file_before_serving(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("max_concurrent = 8", "max_concurrent = -1"))
    result = CliRunner().invoke(
        app, ["serve", "--config", str(path), "--data-dir", str(tmp_path / "data")]
    )
    assert result.exit_code == 2
    assert f"{path}:7: providers.byteplus.max_concurrent" in result.output
    assert "serving at" not in result.output
