#!/usr/bin/env bash
# Set up what the test suite needs (Debian packages, PostgreSQL, Prism, .venv) and run every check.
# Usage: scripts/test.sh [pytest args...]   Idempotent: on a machine that is ready it only runs the checks.
set -euo pipefail

# Debian packages the tests use; later issues add theirs here.
DEBIAN_PACKAGES="influxdb mosquitto mosquitto-clients libcoap3-bin chromium"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PRISM_DIR="$ROOT/tests/prism"

step() { printf '[test.sh] %s\n' "$*"; }
die() { printf '[test.sh] FAILED: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

install_debian_packages() {
    local wanted="$DEBIAN_PACKAGES" missing=() pkg
    command -v npm >/dev/null || wanted="$wanted nodejs npm"
    for pkg in $wanted; do installed "$pkg" || missing+=("$pkg"); done
    if [ ${#missing[@]} -eq 0 ]; then
        step "debian packages: all present"
        return
    fi
    step "debian packages: installing ${missing[*]}"
    # Keep the packages' own services (influxd on :8086, a second mosquitto) from starting:
    # the tests run their own instances on free ports.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
        added_policy=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >/dev/null || { [ $added_policy -eq 0 ] || as_root rm -f "$policy"; die "apt-get install ${missing[*]}"; }
    [ $added_policy -eq 0 ] || as_root rm -f "$policy"
}

ensure_postgres() {
    if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        step "postgresql: running on 127.0.0.1:5432"
        return
    fi
    [ -d /etc/postgresql ] || die "postgresql: no cluster under /etc/postgresql"
    local version
    version="$(ls /etc/postgresql | sort -V | tail -n 1)"
    step "postgresql: starting cluster $version/main"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 60); do
        pg_isready -q -h 127.0.0.1 -p 5432 && return
        sleep 1
    done
    die "postgresql: not accepting connections on 127.0.0.1:5432 after 60 s"
}

ensure_prism() {
    local stamp="$PRISM_DIR/node_modules/.iothub-lock.sha256" want
    want="$(sha256sum "$PRISM_DIR/package-lock.json" | cut -d' ' -f1)"
    if [ -x "$PRISM_DIR/node_modules/.bin/prism" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        step "prism: node_modules up to date"
        return
    fi
    step "prism: npm ci in tests/prism"
    (cd "$PRISM_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || die "npm ci in tests/prism"
    echo "$want" >"$stamp"
}

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "python3 must be 3.11 or newer"
        step "venv: creating .venv with $(python3 --version)"
        python3 -m venv "$VENV"
    fi
    local stamp="$VENV/.iothub-pyproject.sha256" want
    want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    # urllib3-future (niquests, from grafana-client) overwrites urllib3 with itself at every start through a
    # .pth file unless it is built without that override; requests-based tools (schemathesis) then break on
    # its pool internals. Keep the two side by side: build it from source with the override off.
    export URLLIB3_NO_OVERRIDE=1 PIP_NO_BINARY=urllib3-future
    if compgen -G "$VENV/lib/python3*/site-packages/urllib3_future.pth" >/dev/null; then
        step "venv: reinstalling urllib3 and urllib3-future side by side"
        "$VENV/bin/python" -m pip uninstall -q -y urllib3 urllib3-future || die "pip uninstall urllib3"
        rm -f "$stamp"
    fi
    if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        step "venv: dependencies up to date"
        return
    fi
    step "venv: pip install -e '.[test]'"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]' || die "pip install"
    echo "$want" >"$stamp"
}

install_debian_packages
ensure_postgres
ensure_prism
ensure_venv
step "dtls: DTLSSocket for CoAP over DTLS-PSK"
"$ROOT/scripts/install_dtls.sh" "$VENV/bin/python" || die "scripts/install_dtls.sh"

# Run every check even after a failure, so one run shows all that is wrong.
failed=()
step "ruff check ."
"$VENV/bin/ruff" check . || failed+=("ruff check")
step "ruff format --check ."
"$VENV/bin/ruff" format --check . || failed+=("ruff format")
step "mypy"
"$VENV/bin/mypy" || failed+=("mypy")
step "pytest $*"
status=0
"$VENV/bin/python" -m pytest "$@" || status=$?
# Exit 5 means no test ran: a suite that tests nothing must not pass.
[ $status -eq 0 ] || failed+=("pytest (exit $status)")

if [ ${#failed[@]} -gt 0 ]; then
    die "${failed[*]}"
fi
step "all checks passed"
