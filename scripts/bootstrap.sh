# Shared set-up for scripts/serve, scripts/reelgate and scripts/test (sourced, not run).

bootstrap_venv() {
    local extra="$1"
    local stamp=".venv/.installed-$extra"
    if [[ ! -x .venv/bin/python ]]; then
        echo "creating the virtual environment .venv (python3 -m venv)…" >&2
        python3 -m venv .venv
    fi
    # Reinstall only when pyproject.toml changed since the last install.
    if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
        if [[ "$extra" == dev ]]; then
            what="reelgate, its dependencies and the test tools"
        else
            what="reelgate and its dependencies"
        fi
        echo "installing $what into .venv (first run: about a minute)…" >&2
        .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$extra]"
        touch "$stamp"
        echo "installed; the reelgate command is .venv/bin/reelgate (or scripts/reelgate)" >&2
    fi
}

bootstrap_postgres() {
    # The tests create and drop their own databases on the local server.
    if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        if command -v pg_ctlcluster >/dev/null && [[ -d /etc/postgresql ]]; then
            echo "starting the local PostgreSQL server for the tests…" >&2
            pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
        fi
        for _ in $(seq 1 30); do
            pg_isready -q -h 127.0.0.1 -p 5432 && break
            sleep 1
        done
    fi
}
