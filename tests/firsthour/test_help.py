"""``reelgate serve --help`` names each setting's variable and shows its default."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from reelgate.cli import DEFAULTS, app
from reelgate.settings import Settings

runner = CliRunner()


def help_text(*command: str) -> str:
    """``--help`` of ``command`` as one line: the box drawing gone, whitespace collapsed."""
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "120", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", result.output))


def serve_params() -> list[typer.core.TyperOption]:
    command = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    return [p for p in command.params if p.name != "help"]


def variable(option: str) -> str:
    return "REELGATE_" + option.removeprefix("--").replace("-", "_").upper()


def test_every_serve_option_names_its_variable_and_default() -> None:
    text = help_text("serve")
    params = serve_params()
    assert len(params) >= 10
    for param in params:
        flag = param.opts[0]
        name = variable(flag)
        assert f"(env var: {name})" in text, name
        # the help shows a default right after the variable, for every setting
        after = text.split(f"(env var: {name})", 1)[1]
        assert after.lstrip().startswith("[default: "), (flag, after[:80])


@pytest.mark.parametrize("field", sorted(DEFAULTS))
def test_the_defaults_shown_are_the_settings_defaults(field: str) -> None:
    assert DEFAULTS[field] == str(Settings.model_fields[field].default)
    shown = help_text("serve") + help_text("worker")
    assert f"(env var: REELGATE_{field.upper()}) [default: ({DEFAULTS[field]})]" in shown


def test_flags_do_not_read_the_environment_themselves() -> None:
    # pydantic-settings reads REELGATE_*; a flag that also had envvar= would be a
    # second source of the same setting
    for param in serve_params():
        assert not param.envvar, param.name
    for name in ("worker", "migrate"):
        command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
        assert not any(p.envvar for p in command.params), name


def test_every_serve_option_is_a_setting() -> None:
    for param in serve_params():
        assert param.name in Settings.model_fields, param.name


def test_the_help_says_how_the_signing_secret_is_set() -> None:
    text = help_text("serve")
    assert "REELGATE_SIGNING_SECRET" in text and "environment only" in text
    assert "--signing-secret" not in text


def test_other_commands_name_their_variables() -> None:
    for command in ("worker", "migrate"):
        text = help_text(command)
        assert "(env var: REELGATE_DATA_DIR)" in text, command
        assert "(env var: REELGATE_DATABASE_URL)" in text, command
