"""The README's first hour: its settings table matches the flags, its commands run as written."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import typer.main

from reelgate.cli import app
from reelgate.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def settings_table() -> list[tuple[list[str], str]]:
    """The variables of each row of the settings table in "Running it", and the row."""
    section = README.split("\n## Running it", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    assert lines and "variable" in lines[0], "no settings table under Running it"
    rows = []
    for line in lines[2:]:  # past the header and its rule
        first = line.split("|")[1]
        rows.append((re.findall(r"`(REELGATE_[A-Z_]+)`", first), line))
    return rows


def serve_flags() -> set[str]:
    command = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    return {opt for param in command.params for opt in param.opts}


def test_every_variable_in_the_table_is_a_setting_and_a_flag_of_serve() -> None:
    rows = settings_table()
    assert len(rows) >= 8
    flags = serve_flags()
    for variables, row in rows:
        assert variables, row
        for variable in variables:
            field = variable.removeprefix("REELGATE_").lower()
            assert field in Settings.model_fields, variable
            if "environment only" in row:
                assert f"--{field.replace('_', '-')}" not in flags, variable
                continue
            assert f"--{field.replace('_', '-')}" in flags, f"{variable}: no flag on serve"


def test_the_readme_explains_the_environment_only_setting() -> None:
    only = [row for _, row in settings_table() if "environment only" in row]
    assert only, "no row says which settings have no flag"
    assert "except" in README.split("\n## Running it", 1)[1].split("|", 1)[0]


def commands() -> list[list[str]]:
    """Each command line of the README's bash blocks, as words (continuations joined)."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                found.append(shlex.split(line, comments=True))
    return found


def test_no_command_needs_an_activated_virtual_environment() -> None:
    for words in commands():
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):  # VAR=value before it
            words = words[1:]
        if words and words[0] == "export":
            continue
        assert words and words[0] != "reelgate", f"`reelgate` is not on a fresh PATH: {words}"


def test_the_scripts_the_readme_runs_exist_and_run() -> None:
    used = {words[0] for words in commands() if words and words[0].startswith("scripts/")}
    used |= set(re.findall(r"`(scripts/[a-z]+)", README))
    assert {"scripts/serve", "scripts/reelgate", "scripts/test"} <= used
    for script in used:
        path = ROOT / script
        assert path.is_file() and os.access(path, os.X_OK), script


def test_the_readme_shows_what_serve_prints() -> None:
    block = README.split("`scripts/serve` prints something like:", 1)[1].split("```", 2)[1]
    assert "reelgate is serving at http://127.0.0.1:8000" in block
    assert "API key (shown once, also kept in data/first-api-key)" in block
    assert ".venv/bin/reelgate" in block and "/docs" in block


def test_the_installer_says_what_it_does() -> None:
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    before_install = bootstrap.split('pip install --quiet --disable-pip-version-check -e ".[', 1)[0]
    assert 'echo "installing' in before_install and "about a minute" in before_install
