#!/usr/bin/env bash
# The one test command: ./scripts/test.sh [extra `cargo test` arguments]
#
# On a Debian machine with the Rust toolchain it:
#   1. installs what is missing: redis-server, PostgreSQL, Chromium and ChromeDriver (apt-get),
#      localstripe (pip);
#   2. starts private, throwaway services on free loopback ports, in a temporary directory:
#      PostgreSQL (fsync off: test data is disposable), redis-server (no persistence) and
#      localstripe (a fake, stateful Stripe API);
#   3. runs `cargo fmt --check`, `cargo clippy -D warnings` and `cargo test --workspace` (dev
#      profile; all three run even if one fails), with these variables exported for the tests:
#        BOXOFFICE_TEST_DATABASE_URL  admin URL to the `postgres` database; each test creates
#                                     its own fresh database through it
#        BOXOFFICE_TEST_REDIS_URL     redis://127.0.0.1:PORT
#        BOXOFFICE_TEST_STRIPE_URL    http://127.0.0.1:PORT (localstripe; any `sk_test_...` key)
#        BOXOFFICE_TEST_REDIS_SERVER  path of redis-server, for tests that start their own
#        BOXOFFICE_TEST_PG_BIN_DIR    directory with initdb/pg_ctl/postgres (embedded-mode tests)
#        BOXOFFICE_TEST_CHROMIUM      path of chromium, driven headless by the browser tests
#        BOXOFFICE_TEST_CHROMEDRIVER  path of chromedriver (each browser test binary starts its own)
#   4. stops the services and removes the temporary directory on exit, failure or Ctrl-C.
# Exits non-zero if any step failed.
#
# Options (environment):
#   BOXOFFICE_TEST_ONLY_SERVICES=1  start the services, check each answers, stop them; no cargo.
#   BOXOFFICE_LINT=0                skip fmt and clippy (quicker runs of a few tests while working).
# Arguments go to `cargo test`; with `-p PACKAGE` only that package is tested.
#   BOXOFFICE_PG_BIN_DIR=DIR        use the PostgreSQL binaries in DIR instead of searching.
#   LOCALSTRIPE_VERSION=X.Y.Z       localstripe version to install if missing (default below).
#
# As root, PostgreSQL (which refuses to run as root) runs as the `postgres` user, created if
# missing. As another user, everything runs as that user, and installing packages needs
# passwordless sudo (or install them first).
set -euo pipefail

readonly DEFAULT_LOCALSTRIPE_VERSION=1.15.10
readonly SERVICE_START_ATTEMPTS=3
readonly READY_TIMEOUT_SECS=60

cd "$(dirname "${BASH_SOURCE[0]}")/.."

section() { printf '\n==> %s\n' "$*"; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

is_root=false
[[ $(id -u) -eq 0 ]] && is_root=true

# ---------------------------------------------------------------------------------------------
# Installing what is missing
# ---------------------------------------------------------------------------------------------

apt_updated=false
apt_install() {
    local sudo=()
    if ! $is_root; then
        if have sudo && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            die "missing packages: $*; install them (apt-get install $*) or run as root"
        fi
    fi
    if ! $apt_updated; then
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=true
    fi
    echo "installing $* (apt-get)"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

has_pg_binaries() { [[ -x $1/initdb && -x $1/pg_ctl && -x $1/postgres ]]; }

# Same search as src/store/embedded_pg.rs: $BOXOFFICE_PG_BIN_DIR alone if set; else PATH,
# `pg_config --bindir`, /usr/lib/postgresql/*/bin (newest first), /usr/local/pgsql/bin.
find_pg_bin_dir() {
    if [[ -n ${BOXOFFICE_PG_BIN_DIR:-} ]]; then
        has_pg_binaries "$BOXOFFICE_PG_BIN_DIR" && echo "$BOXOFFICE_PG_BIN_DIR"
        return
    fi
    local candidates=() dir real
    IFS=: read -r -a candidates <<<"$PATH"
    if have pg_config; then candidates+=("$(pg_config --bindir 2>/dev/null || true)"); fi
    local versioned=()
    mapfile -t versioned < <(compgen -G '/usr/lib/postgresql/*/bin' | sort -V -r)
    candidates+=("${versioned[@]}" /usr/local/pgsql/bin)
    for dir in "${candidates[@]}"; do
        if [[ -z $dir ]] || ! has_pg_binaries "$dir"; then continue; fi
        # Prefer the real directory behind symlinks such as /usr/local/bin/pg_ctl.
        real=$(dirname "$(readlink -f "$dir/pg_ctl")")
        if has_pg_binaries "$real"; then echo "$real"; else echo "$dir"; fi
        return
    done
    return 1
}

# Runs a command as the account that runs PostgreSQL: `postgres` when we are root.
as_pg() {
    if ! $is_root; then
        "$@"
    elif have runuser; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && su -s /bin/sh postgres -c "$(printf '%q ' "$@")")
    fi
}

section "Checking tools"
if [[ ${BOXOFFICE_TEST_ONLY_SERVICES:-} != 1 ]]; then
    have cargo || die "cargo not found: install the Rust toolchain (rustup)"
fi

if [[ -n ${BOXOFFICE_PG_BIN_DIR:-} ]] && ! has_pg_binaries "$BOXOFFICE_PG_BIN_DIR"; then
    die "BOXOFFICE_PG_BIN_DIR=$BOXOFFICE_PG_BIN_DIR does not contain initdb, pg_ctl and postgres"
fi
missing=()
have redis-server || missing+=(redis-server)
pg_bin_dir=$(find_pg_bin_dir) || missing+=(postgresql)
have python3 || missing+=(python3)
# The web app's tests drive a real, headless Chromium through ChromeDriver (WebDriver).
chromium=$(command -v chromium || true)
chromedriver=$(command -v chromedriver || true)
[[ -n $chromium ]] || missing+=(chromium)
[[ -n $chromedriver ]] || missing+=(chromium-driver)
if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
if [[ -z $pg_bin_dir ]]; then
    pg_bin_dir=$(find_pg_bin_dir) || die "no PostgreSQL binaries found even after installing postgresql"
fi
redis_server=$(command -v redis-server) || die "redis-server not found even after installing it"
chromium=$(command -v chromium) || die "chromium not found even after installing it"
chromedriver=$(command -v chromedriver) || die "chromedriver not found even after installing chromium-driver"

if $is_root && ! id -u postgres >/dev/null 2>&1; then
    echo "creating the postgres user (PostgreSQL refuses to run as root)"
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin postgres
fi

# localstripe: use the one python3 can import; otherwise pip-install a pinned version, into a
# cached virtualenv when the interpreter is the distribution's (PEP 668 forbids pip there).
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore
python=python3
if ! python3 -c 'import localstripe' 2>/dev/null; then
    version=${LOCALSTRIPE_VERSION:-$DEFAULT_LOCALSTRIPE_VERSION}
    if python3 -c 'import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
        venv="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/boxoffice/localstripe-venv"
        python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
        if ! "$venv/bin/python" -c 'import localstripe' 2>/dev/null; then
            echo "installing localstripe $version into $venv (pip)"
            python3 -m venv "$venv"
            "$venv/bin/python" -m pip install --quiet "localstripe==$version" || die "pip could not install localstripe"
        fi
        python="$venv/bin/python"
    else
        python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
        echo "installing localstripe $version (pip)"
        python3 -m pip install --quiet "localstripe==$version" || die "pip could not install localstripe"
        python3 -c 'import localstripe' || die "localstripe was installed but python3 cannot import it"
    fi
fi

echo "PostgreSQL: $pg_bin_dir ($("$pg_bin_dir/pg_ctl" --version))"
echo "Redis:      $redis_server ($("$redis_server" --version | cut -d' ' -f3))"
echo "Chromium:   $chromium ($("$chromium" --version 2>/dev/null | head -1)), $chromedriver"
echo "localstripe $("$python" -c 'import importlib.metadata as m; print(m.version("localstripe"))') ($python)"

# ---------------------------------------------------------------------------------------------
# Services, torn down on exit
# ---------------------------------------------------------------------------------------------

# As root, /tmp rather than $TMPDIR: the postgres user must be able to reach the directory.
if $is_root; then work=$(mktemp -d /tmp/boxoffice-test.XXXXXX); else work=$(mktemp -d -t boxoffice-test.XXXXXX); fi
chmod 755 "$work"
pg_data="$work/pg"
pg_started=false
redis_pid=""
stripe_pid=""

cleanup() {
    local status=$?
    set +e
    trap - EXIT INT TERM
    for pid in "$stripe_pid" "$redis_pid"; do
        [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    # Immediate shutdown: the data is thrown away, there is nothing to flush.
    $pg_started && as_pg "$pg_bin_dir/pg_ctl" stop -D "$pg_data" -m immediate -w >/dev/null 2>&1
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Ports the kernel reports free. Ports are drawn together so they differ; a port taken by
# someone else before a service binds it makes that service retry with a fresh one.
free_ports() {
    python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
redis_ping() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'PING\r\n' >&3
        IFS= read -r -t 2 reply <&3 && [[ $reply == +PONG* ]]
    ) 2>/dev/null
}
port_clash() { grep -qiE 'address already in use|could not bind|errno 98' "$1" 2>/dev/null; }

# wait_ready NAME PID CHECK...: waits until CHECK succeeds. Fails if PID exits, or on timeout
# (then PID is stopped), so a failed attempt leaves nothing running.
wait_ready() {
    local name=$1 pid=$2 deadline=$((SECONDS + READY_TIMEOUT_SECS))
    shift 2
    until "$@"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null || true
            echo "$name exited during start-up" >&2
            return 1
        fi
        if ((SECONDS >= deadline)); then
            echo "$name was not ready after ${READY_TIMEOUT_SECS}s" >&2
            kill "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null || true
            return 1
        fi
        sleep 0.1
    done
}

show_log() {
    echo "--- last lines of $1 ---" >&2
    tail -n 30 "$1" >&2 || true
}

read -r pg_port redis_port stripe_port <<<"$(free_ports 3)"

section "Starting PostgreSQL"
pg_password=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
mkdir -m 700 "$pg_data" "$work/pg-socket"
printf '%s\n' "$pg_password" >"$work/pg-password"
chmod 600 "$work/pg-password"
if $is_root; then chown postgres: "$pg_data" "$work/pg-socket" "$work/pg-password"; fi
as_pg "$pg_bin_dir/initdb" -D "$pg_data" -U postgres --pwfile="$work/pg-password" --auth=scram-sha-256 \
    --encoding=UTF8 --locale=C --no-sync >"$work/initdb.log" 2>&1 || {
    show_log "$work/initdb.log"
    die "initdb failed"
}
rm -f "$work/pg-password"
# Many tests run at once, each with its own database and pool; durability is not needed.
as_pg tee -a "$pg_data/postgresql.conf" >/dev/null <<EOF

# scripts/test.sh: a throwaway test instance
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work/pg-socket'
max_connections = 500
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
for attempt in $(seq "$SERVICE_START_ATTEMPTS"); do
    if as_pg "$pg_bin_dir/pg_ctl" start -D "$pg_data" -l "$pg_data/server.log" -o "-p $pg_port" -w -t "$READY_TIMEOUT_SECS" \
        >/dev/null; then
        pg_started=true
        break
    fi
    if ((attempt < SERVICE_START_ATTEMPTS)) && port_clash "$pg_data/server.log"; then
        read -r pg_port <<<"$(free_ports 1)"
        continue
    fi
    show_log "$pg_data/server.log"
    die "PostgreSQL did not start"
done
echo "PostgreSQL ready on 127.0.0.1:$pg_port"

section "Starting Redis"
mkdir "$work/redis"
for attempt in $(seq "$SERVICE_START_ATTEMPTS"); do
    "$redis_server" --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
        --dir "$work/redis" --logfile "$work/redis.log" &
    redis_pid=$!
    if wait_ready redis-server "$redis_pid" redis_ping "$redis_port"; then break; fi
    redis_pid=""
    if ((attempt < SERVICE_START_ATTEMPTS)) && port_clash "$work/redis.log"; then
        read -r redis_port <<<"$(free_ports 1)"
        continue
    fi
    show_log "$work/redis.log"
    die "redis-server did not start"
done
echo "Redis ready on 127.0.0.1:$redis_port"

section "Starting localstripe"
# localstripe's own `localstripe --port N` binds every interface over IPv6 and pickles its
# whole store to the shared /tmp/localstripe.pickle after every POST (slower as tests add
# objects, and racy between concurrent runs). This launcher serves the same app on
# 127.0.0.1 only and keeps the state in memory.
stripe_launcher='
import argparse, logging, socket
from aiohttp import web
from localstripe import resources, server
resources.Store.dump_to_disk = lambda self: None
port = argparse.ArgumentParser()
port.add_argument("--port", type=int, required=True)
port = port.parse_args().port
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", port))
log = logging.getLogger("aiohttp.access")  # localstripe also logs webhook deliveries here
log.setLevel(logging.DEBUG)
log.addHandler(logging.StreamHandler())
web.run_app(server.app, sock=sock, access_log=log, print=None)
'
for attempt in $(seq "$SERVICE_START_ATTEMPTS"); do
    "$python" -c "$stripe_launcher" --port "$stripe_port" >"$work/localstripe.log" 2>&1 &
    stripe_pid=$!
    if wait_ready localstripe "$stripe_pid" tcp_open "$stripe_port"; then break; fi
    stripe_pid=""
    if ((attempt < SERVICE_START_ATTEMPTS)) && port_clash "$work/localstripe.log"; then
        read -r stripe_port <<<"$(free_ports 1)"
        continue
    fi
    show_log "$work/localstripe.log"
    die "localstripe did not start"
done
echo "localstripe ready on 127.0.0.1:$stripe_port"

export BOXOFFICE_TEST_DATABASE_URL="postgres://postgres:$pg_password@127.0.0.1:$pg_port/postgres"
export BOXOFFICE_TEST_REDIS_URL="redis://127.0.0.1:$redis_port"
export BOXOFFICE_TEST_STRIPE_URL="http://127.0.0.1:$stripe_port"
export BOXOFFICE_TEST_REDIS_SERVER="$redis_server"
export BOXOFFICE_TEST_PG_BIN_DIR="$pg_bin_dir"
export BOXOFFICE_TEST_CHROMIUM="$chromium"
export BOXOFFICE_TEST_CHROMEDRIVER="$chromedriver"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

if [[ ${BOXOFFICE_TEST_ONLY_SERVICES:-} == 1 ]]; then
    section "Checking the services"
    psql=$pg_bin_dir/psql
    [[ -x $psql ]] || psql=$(command -v psql) || die "psql not found (package postgresql-client)"
    "$psql" "$BOXOFFICE_TEST_DATABASE_URL" -v ON_ERROR_STOP=1 -qAt \
        -c 'CREATE DATABASE services_check' -c 'DROP DATABASE services_check' -c 'SELECT version()'
    redis_ping "$redis_port" && echo "redis: PONG"
    "$python" - "$BOXOFFICE_TEST_STRIPE_URL" <<'EOF'
import base64, json, sys, urllib.parse, urllib.request
form = urllib.parse.urlencode(
    {"amount": 1000, "currency": "eur", "payment_method": "pm_card_visa", "confirm": "true"}).encode()
request = urllib.request.Request(sys.argv[1] + "/v1/payment_intents", data=form, headers={
    "Authorization": "Basic " + base64.b64encode(b"sk_test_services_check:").decode()})
intent = json.load(urllib.request.urlopen(request, timeout=10))
assert intent["status"] == "succeeded", intent
print("localstripe: PaymentIntent", intent["id"], "with pm_card_visa:", intent["status"])
EOF
    echo "services OK"
    exit 0
fi

failed=()
if [[ ${BOXOFFICE_LINT:-1} != 0 ]]; then
    section "cargo fmt --all -- --check"
    cargo fmt --all -- --check || failed+=(fmt)
    section "cargo clippy --workspace --all-targets -- -D warnings"
    cargo clippy --workspace --all-targets -- -D warnings || failed+=(clippy)
fi
# `-p PACKAGE` among the arguments tests that package alone (`--workspace` would win).
scope=(--workspace)
for arg in "$@"; do
    case $arg in -p | --package | -p* | --package=*) scope=() ;; esac
done
section "cargo test ${scope[*]} $*"
cargo test "${scope[@]}" "$@" || failed+=(test)

# ---- BEGIN fuzz (scripts/fuzz_api.sh) -------------------------------------------------------
# After the tests, schemathesis fuzzes the HTTP API from its OpenAPI document against the server
# binary `cargo test` just built, on a fresh database of the PostgreSQL above (every schemathesis
# check: no 5xx, documented statuses and bodies, valid requests accepted and invalid ones refused;
# and every error a problem document). About three minutes; BOXOFFICE_FUZZ=0 skips it,
# BOXOFFICE_FUZZ_MAX_TIME / BOXOFFICE_FUZZ_MAX_EXAMPLES bound it (see scripts/fuzz_api.sh).
if [[ ${BOXOFFICE_FUZZ:-1} != 0 ]]; then
    section "scripts/fuzz_api.sh (BOXOFFICE_FUZZ=0 skips)"
    ./scripts/fuzz_api.sh || failed+=(fuzz)
fi
# ---- END fuzz --------------------------------------------------------------------------------

if ((${#failed[@]})); then
    section "FAILED: ${failed[*]}"
    exit 1
fi
section "All checks passed"
