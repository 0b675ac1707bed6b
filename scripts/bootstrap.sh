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
            what="reelgate, its dependencies and the test tools (with a CPU build of torch)"
            took="a few minutes"
        else
            what="reelgate and its dependencies"
            took="about a minute"
        fi
        echo "installing $what into .venv (first run: $took)…" >&2
        .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
        if [[ "$extra" == dev ]]; then
            # The tests' extra pulls torch (reelgate[gpu]); take the CPU build first (the
            # file 2.13.0+cpu in PIP_FIND_LINKS=/opt/wheels on these machines), so that the
            # range is met and pip never downloads a CUDA build of several GB.
            .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
        fi
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

bootstrap_chromium() {
    # The dashboard's browser tests drive Debian's chromium (never a downloaded build).
    if [[ ! -x /usr/bin/chromium && "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        echo "installing Debian's chromium package for the dashboard's browser tests (apt-get)…" >&2
        { DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ||
            echo "could not install chromium: the browser tests will say why they skip" >&2
    fi
}
