# Shared set-up for scripts/serve and scripts/test (sourced, not run).

bootstrap_venv() {
    local extra="$1"
    local stamp=".venv/.installed-$extra"
    if [[ ! -x .venv/bin/python ]]; then
        python3 -m venv .venv
    fi
    # Reinstall only when pyproject.toml changed since the last install.
    if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
        .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$extra]"
        touch "$stamp"
    fi
}

bootstrap_postgres() {
    # The tests create and drop their own databases on the local server.
    if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        if command -v pg_ctlcluster >/dev/null && [[ -d /etc/postgresql ]]; then
            pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
        fi
        for _ in $(seq 1 30); do
            pg_isready -q -h 127.0.0.1 -p 5432 && break
            sleep 1
        done
    fi
}
