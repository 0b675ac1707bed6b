"""The server-side commands: keys, migrate, settings errors."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from reelgate.cli import app

runner = CliRunner()


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    created = runner.invoke(app, ["keys", "create", "--owner", "acme", "--name", "ci", *data])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("rg_") and len(secret) > 40

    listed = runner.invoke(app, ["keys", "list", *data])
    assert listed.exit_code == 0
    line = listed.stdout.strip().splitlines()[-1]
    key_id, prefix, owner, name, state, _, role, limits = line.split("\t")
    assert (owner, name, state, role, limits) == ("acme", "ci", "active", "user", "no limits")
    assert secret.startswith(prefix.rstrip("…")) and secret not in listed.stdout

    revoked = runner.invoke(app, ["keys", "revoke", key_id, *data])
    assert revoked.exit_code == 0 and key_id in revoked.stdout
    assert "revoked" in runner.invoke(app, ["keys", "list", *data]).stdout
    missing = runner.invoke(app, ["keys", "revoke", "key_nope", *data])
    assert missing.exit_code == 1 and "no API key" in missing.output


def test_migrate_and_bad_settings(tmp_path: Path) -> None:
    result = runner.invoke(app, ["migrate", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0 and (tmp_path / "reelgate.db").is_file()
    bad = runner.invoke(app, ["migrate", "--database-url", "mysql://x"])
    assert bad.exit_code == 2 and "REELGATE_DATABASE_URL must start with" in bad.output
    result = runner.invoke(app, ["serve", "--port", "99999", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "port" in result.output
