#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document with schemathesis (PyPI).
#
#   BOXOFFICE_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres scripts/fuzz_api.sh
#
# ./scripts/test.sh runs it after `cargo test` (unless BOXOFFICE_FUZZ=0) with the URL of its
# private PostgreSQL. On its own it:
#   1. installs schemathesis $SCHEMATHESIS_VERSION into a cached virtualenv if missing;
#   2. uses target/debug/boxoffice (built by `cargo test`; rebuilt if missing or older than
#      the sources; BOXOFFICE_BIN=PATH picks another binary);
#   3. creates a fresh database through the admin URL, starts the server on a free loopback
#      port against it, and seeds it over HTTP: a customer, a second customer, an organizer and
#      a staff member, a published and a draft event, an active hold and a purchased ticket, so
#      the fuzzer reaches real objects as well as random ids;
#   4. fetches http://127.0.0.1:PORT/openapi.json and checks it: a query parameter documented
#      `in: path` is a failure (schemathesis would never send it), fixed in the copy it fuzzes;
#   5. runs `st run` on that document with bounded examples per operation and a time budget,
#      hostile values mixed into generated strings and integers, each request signed in as the
#      role its route is for (or as someone else, or anonymously), with every check
#      schemathesis has (`--checks all`, set in its config file) — among them:
#        not_a_server_error           no 5xx, ever
#        status_code_conformance      every status answered is documented for the operation
#        response_schema_conformance  bodies (and SSE frames) match the documented schemas
#        positive_data_acceptance     schema-valid requests are accepted (2xx, 401/403/404/409)
#        negative_data_rejection      schema-invalid requests are refused with a 4xx
#        ignored_auth, missing_required_header   bearer routes refuse missing or made-up tokens
#        use_after_free, ensure_resource_availability, unsupported_method, ... (`st run --help`)
#      plus our own problem_json_errors: every 4xx/5xx is application/problem+json with a
#      `code` and a `status` equal to the HTTP status (hook below). The few exceptions, each
#      for the operations it names and why, are in the config file below. Afterwards it checks
#      that the server is still up, listing the ERROR lines of its log;
#   6. stops the server and drops the database on exit, failure or Ctrl-C.
# Exits non-zero if schemathesis found a failure, the document misplaces parameters, the server
# died, or on any setup error. Each failure prints a curl line that reproduces it.
#
# Options (environment):
#   BOXOFFICE_FUZZ_MAX_EXAMPLES=N   test cases per operation and cycle (default 25)
#   BOXOFFICE_FUZZ_MAX_TIME=SECS    time budget of the schemathesis run (default 120); cycles
#                                   repeat until it is spent
#   BOXOFFICE_FUZZ_SEED=N           hypothesis seed, to reproduce a run
#   BOXOFFICE_FUZZ_ARGS="..."       more `st run` arguments, e.g. "--include-path /events/search"
#   BOXOFFICE_FUZZ_REPORT_DIR=DIR   keep schemathesis' JUnit report and the server log there
#   SCHEMATHESIS_VERSION=X.Y.Z      schemathesis to install (default below; the CLI of 3.x differs)
set -euo pipefail

readonly DEFAULT_SCHEMATHESIS_VERSION=4.32.5
readonly READY_TIMEOUT_SECS=60

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)

section() { printf '\n==> %s\n' "$*"; }
die() {
    printf 'fuzz_api: error: %s\n' "$*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

admin_url=${BOXOFFICE_TEST_DATABASE_URL:-}
[[ -n $admin_url ]] || die "BOXOFFICE_TEST_DATABASE_URL is not set (an admin URL such as postgres://postgres@127.0.0.1:5432/postgres)"
max_examples=${BOXOFFICE_FUZZ_MAX_EXAMPLES:-25}
max_time=${BOXOFFICE_FUZZ_MAX_TIME:-120}
[[ $max_examples =~ ^[1-9][0-9]*$ ]] || die "BOXOFFICE_FUZZ_MAX_EXAMPLES must be a positive integer"
[[ $max_time =~ ^[1-9][0-9]*$ ]] || die "BOXOFFICE_FUZZ_MAX_TIME must be a positive integer"
st_version=${SCHEMATHESIS_VERSION:-$DEFAULT_SCHEMATHESIS_VERSION}

apt_install() {
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if have sudo && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            die "missing packages: $*; install them (apt-get install $*) or run as root"
        fi
    fi
    echo "installing $* (apt-get)"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---------------------------------------------------------------------------------------------
# Tools: python3, psql, schemathesis, the server binary
# ---------------------------------------------------------------------------------------------

section "Checking tools"
have python3 || apt_install python3

# psql: on PATH, beside the test PostgreSQL (scripts/test.sh exports its bin dir), or Debian's.
psql=""
candidates=("$(command -v psql || true)" "${BOXOFFICE_TEST_PG_BIN_DIR:-}/psql" "$(pg_config --bindir 2>/dev/null || true)/psql")
mapfile -t -O "${#candidates[@]}" candidates < <(compgen -G '/usr/lib/postgresql/*/bin/psql' | sort -V -r)
for candidate in "${candidates[@]}"; do
    if [[ -n $candidate && -x $candidate && ! -d $candidate ]]; then
        psql=$candidate
        break
    fi
done
if [[ -z $psql ]]; then
    apt_install postgresql-client
    psql=$(command -v psql) || die "psql not found even after installing postgresql-client"
fi

# schemathesis: always from a cached virtualenv pinned to one version, so the CLI flags below
# hold whatever else python3 has installed (and PEP 668 interpreters are no obstacle).
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore
venv="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/boxoffice/schemathesis-$st_version-venv"
st="$venv/bin/st"
installed_version() { "$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null; }
if [[ ! -x $st || $(installed_version) != "$st_version" ]]; then
    python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
    echo "installing schemathesis $st_version into $venv (pip)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet "schemathesis==$st_version" || die "pip could not install schemathesis"
fi
echo "schemathesis $(installed_version) ($st)"

# The server binary: as `cargo test` left it, unless the sources are newer.
bin=${BOXOFFICE_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/boxoffice}
if [[ -z ${BOXOFFICE_BIN:-} ]]; then
    stale=""
    if [[ -x $bin ]]; then
        stale=$(find src actors/src migrations Cargo.toml Cargo.lock actors/Cargo.toml -newer "$bin" -print -quit)
    fi
    if [[ ! -x $bin || -n $stale ]]; then
        have cargo || die "cargo not found and $bin is missing or stale"
        echo "building the server (cargo build --bin boxoffice)"
        cargo build --quiet --bin boxoffice
    fi
fi
[[ -x $bin ]] || die "no server binary at $bin"
bin=$(readlink -f "$bin")
echo "server: $bin"

# ---------------------------------------------------------------------------------------------
# Database and server, torn down on exit
# ---------------------------------------------------------------------------------------------

work=$(mktemp -d -t boxoffice-fuzz.XXXXXX)
db_name="fuzz_$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')"
db_created=false
server_pid=""

# shellcheck disable=SC2317  # reached through the trap, which shellcheck does not follow
cleanup() {
    local status=$?
    set +e
    trap - EXIT INT TERM
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null
        for _ in $(seq 100); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
    fi
    if $db_created; then
        "$psql" "$admin_url" -qAt -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $db_name WITH (FORCE)" >/dev/null 2>&1 ||
            "$psql" "$admin_url" -qAt -c "DROP DATABASE IF EXISTS $db_name" >/dev/null 2>&1 ||
            echo "fuzz_api: could not drop database $db_name" >&2
    fi
    if [[ -n ${BOXOFFICE_FUZZ_REPORT_DIR:-} ]]; then
        mkdir -p "$BOXOFFICE_FUZZ_REPORT_DIR"
        cp -r "$work/report" "$work/server.log" "$BOXOFFICE_FUZZ_REPORT_DIR/" 2>/dev/null
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section "Starting the server on a fresh database"
"$psql" "$admin_url" -qAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db_name" >/dev/null || die "could not create database $db_name"
db_created=true
# The admin URL with its database name replaced (keeping any ?query).
base=${admin_url%%\?*}
query=""
[[ $admin_url == *\?* ]] && query="?${admin_url#*\?}"
db_url="${base%/*}/$db_name$query"

random_secret() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }
mkdir "$work/data"
: >"$work/server.log"
# Run from $work so no .env of the repository is read; only what is set here configures it.
(
    cd "$work"
    exec env -u REDIS_URL -u STRIPE_SECRET_KEY -u STRIPE_WEBHOOK_SECRET -u STRIPE_API_BASE -u QR_RETIRED_KEYS \
        DATABASE_URL="$db_url" BIND=127.0.0.1:0 BOXOFFICE_DATA_DIR="$work/data" \
        JWT_SECRET="$(random_secret)" QR_SIGNING_KEY="$(random_secret)" COOKIE_SECURE=false \
        AUTH_RATE_LIMIT_PER_MINUTE=1000000 DATABASE_MAX_CONNECTIONS=16 LOG_FORMAT=json RUST_LOG=info \
        "$bin" >"$work/server.log" 2>&1
) &
server_pid=$!
port=""
deadline=$((SECONDS + READY_TIMEOUT_SECS))
until [[ -n $port ]]; do
    port=$(sed -n 's/.*"boxoffice listening".*"addr":"127\.0\.0\.1:\([0-9]*\)".*/\1/p; s/.*"addr":"127\.0\.0\.1:\([0-9]*\)".*"boxoffice listening".*/\1/p' \
        "$work/server.log" | head -n 1)
    if [[ -z $port ]]; then
        if ! kill -0 "$server_pid" 2>/dev/null; then
            tail -n 30 "$work/server.log" >&2
            server_pid=""
            die "the server exited during start-up"
        fi
        ((SECONDS < deadline)) || die "the server did not listen within ${READY_TIMEOUT_SECS}s"
        sleep 0.1
    fi
done
base_url="http://127.0.0.1:$port"
echo "server listening on $base_url (database $db_name)"

# ---------------------------------------------------------------------------------------------
# Seed data, so that ids in paths can name real objects
# ---------------------------------------------------------------------------------------------

section "Seeding users, events, a hold and a ticket"
python3 - "$base_url" >"$work/seed.json" <<'EOF'
import json, sys, urllib.error, urllib.request, uuid

base = sys.argv[1]

def call(method, path, token=None, body=None, expect=(200, 201, 204)):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    if status not in expect:
        sys.exit(f"seeding: {method} {path} answered {status}: {raw[:500]!r}")
    return json.loads(raw) if raw else None

def user(role):
    email = f"{role}-{uuid.uuid4().hex[:12]}@fuzz.example"
    v = call("POST", "/auth/register", body={"email": email, "password": "fuzz-password-1", "name": role, "user_type": role})
    return v["user"]["user_id"], v["access_token"], v["refresh_token"]

seat_map = {
    "tiers": [{"code": "S", "price": 12000}, {"code": "A", "price": 5000}],
    "sections": [
        {"name": "Floor", "tier": "S", "kind": "seated", "rows": [{"label": "A", "seats": 20}, {"label": "B", "seats": 20}]},
        {"name": "Standing", "tier": "A", "kind": "general", "capacity": 200},
    ],
}
customer, customer_token, refresh = user("customer")
other, other_token, _ = user("customer")
organizer, organizer_token, _ = user("organizer")
staff, staff_token, _ = user("staff")
def event():
    return call("POST", "/events/create", organizer_token, {
        "title": "Fuzz concert", "venue_name": "Fuzz hall", "category": "music",
        "event_date": "2031-06-01T19:00:00Z", "seat_map": seat_map, "sales_window": {"per_buyer_limit": 50},
    })["event_id"]
published = event()
call("POST", f"/events/{published}/publish", organizer_token, {})
draft = event()
call("POST", f"/events/{published}/staff", organizer_token, {"staff_id": staff})
hold = call("POST", f"/events/{published}/holds", customer_token, {"seats": ["A-1", "A-2"]})["hold_id"]
bought = call("POST", "/tickets/purchase", customer_token,
              {"event_id": published, "seats": ["B-1"], "payment_method": "pm_card_visa", "include_qr_image": False})
json.dump({
    "tokens": {"customer": customer_token, "other": other_token, "organizer": organizer_token, "staff": staff_token},
    "ids": {"event_id": published, "draft_id": draft, "hold_id": hold, "ticket_id": bought["ticket_id"],
            "user_id": customer, "staff_id": staff},
    "qr": bought["tickets"][0]["qr_token"], "refresh_token": refresh,
}, sys.stdout)
EOF
echo "seeded: $(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["ids"])' "$work/seed.json")"

# ---------------------------------------------------------------------------------------------
# Hooks: real ids and the right role for part of the cases, and the problem+json check
# ---------------------------------------------------------------------------------------------

cat >"$work/hooks.py" <<'EOF'
"""schemathesis hooks for boxoffice (written by scripts/fuzz_api.sh)."""
import hashlib
import json
import os

import schemathesis

SEED = json.load(open(os.environ["BOXOFFICE_FUZZ_SEED_FILE"]))
TOKENS = SEED["tokens"]
IDS = SEED["ids"]


def _pick(case, salt, n):
    """A choice in range(n) derived from the generated data, so replays and shrinking agree."""
    raw = repr((case.method, case.path, sorted((case.path_parameters or {}).items()), salt)).encode()
    return int.from_bytes(hashlib.sha256(raw).digest()[:4], "big") % n


def _role_for(path):
    if "/validate" in path or path.endswith("/check-ins"):
        return "staff"
    if path.startswith("/organizer/"):
        return "organizer"
    if path.startswith("/events/") and not path.endswith(("/holds", "/details", "/search")):
        return "organizer"
    return "customer"


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    """Half the cases name real objects."""
    params = case.path_parameters or {}
    if params and _pick(case, "ids", 2) == 0:
        for name in params:
            if name == "event_id":
                params[name] = IDS["draft_id"] if _pick(case, "draft", 4) == 0 else IDS["event_id"]
            elif name in IDS:
                params[name] = IDS[name]


@schemathesis.auth(refresh_interval=None)
class SeededTokens:
    """Most cases go out with the token of the role their route is for, some as someone else.

    An auth provider rather than a header set in a hook (or `st run --header`), so schemathesis
    knows these credentials are real: `ignored_auth` then probes the same request without them
    and with made-up ones, and cases that leave out `Authorization` on purpose
    (`missing_required_header`) are left without it.
    """

    def get(self, case, ctx):
        who = _pick(case, "token", 8)
        if who == 0:
            return None  # keep what was generated: no token, or a made-up one
        return TOKENS[_role_for(case.path) if who > 2 else ["other", "customer"][who - 1]]

    def set(self, case, token, ctx):
        if case.headers is None:
            case.headers = {}
        case.headers["Authorization"] = "Bearer " + token


@schemathesis.check
def problem_json_errors(ctx, response, case):
    """Every error is an RFC 9457 problem document with our stable `code`."""
    if response.status_code < 400:
        return True
    content_type = ";".join(response.headers.get("content-type", [])).split(";")[0].strip().lower()
    if content_type != "application/problem+json":
        raise AssertionError(
            f"{response.status_code} answered with content type {content_type or '(none)'!r}, "
            f"not application/problem+json: {response.content[:200]!r}"
        )
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"problem document is not JSON: {response.content[:200]!r}")
    if not isinstance(body, dict) or not isinstance(body.get("code"), str) or not body["code"]:
        raise AssertionError(f"problem document without a `code`: {body!r}")
    if body.get("status") != response.status_code:
        raise AssertionError(f"problem `status` {body.get('status')!r} differs from HTTP {response.status_code}")
    return True
EOF

# Hostile values mixed into generated strings and integers (schemathesis "dictionaries"): NUL
# bytes, SQL fragments, timestamps PostgreSQL cannot store, overflowing numbers, and a few real
# names (seat labels, sections, sort keys, test cards) that let requests get further in.
# ---------------------------------------------------------------------------------------------
# The document itself: a parameter declared `in: path` that its path has no `{slot}` for is a
# query parameter documented in the wrong place (schemathesis would silently never send it).
# That is reported as a failure, and fuzzing runs on a corrected copy so the query is covered.
# ---------------------------------------------------------------------------------------------

section "Checking the OpenAPI document"
doc_problems=0
python3 - "$base_url" "$work/openapi.json" >"$work/doc-problems.txt" <<'EOF' || doc_problems=$?
import json, re, sys, urllib.request
doc = json.load(urllib.request.urlopen(sys.argv[1] + "/openapi.json", timeout=30))
problems = 0
for path, item in doc.get("paths", {}).items():
    slots = set(re.findall(r"{([^}]+)}", path))
    for method, op in item.items():
        if not isinstance(op, dict):
            continue
        misplaced = []
        for param in op.get("parameters", []):
            if param.get("in") == "path" and param.get("name") not in slots:
                misplaced.append(param["name"])
                param["in"] = "query"
                param["required"] = False
        if misplaced:
            problems += len(misplaced)
            print(f"  {method.upper()} {path}: {', '.join(misplaced)} documented `in: path` (and required), "
                  "but the path has no slot for them: query parameters")
json.dump(doc, open(sys.argv[2], "w"))
sys.exit(min(problems, 100))
EOF
if ((doc_problems > 0)); then
    echo "misplaced parameters (an IntoParams struct without #[into_params(parameter_in = Query)]):"
    cat "$work/doc-problems.txt"
    echo "(fuzzing a corrected copy of the document; these count as failures)"
else
    echo "no misplaced parameters"
fi

# Auto sign-up is off: the hook below signs every request in as one of the seeded users.
cat >"$work/schemathesis.toml" <<'EOF'
[auth]
auto-signup = false

[dictionaries.hostile_strings]
values = [
    "a\u0000b", "\u0000", "%00", "' OR '1'='1", "1; DROP TABLE events; --", "\") OR 1=1 --", "*", "!:*&|",
    "../../etc/passwd", "<script>alert(1)</script>", "\u202eevil", "\u00e9\u00e8", "  ", "BO1.AAAA", "Bearer x",
    "-200000-01-01T00:00:00Z", "+262143-12-31T23:59:59Z", "0000-01-01T00:00:00Z", "-4714-11-24T00:00:00Z",
    "9999-12-31T23:59:59.999999999Z", "2030-01-01T00:00:00Z", "1970-01-01T00:00:00+14:00",
    "A-1", "B-20", "A-0", "A-99999999999", "Floor", "Standing", "S", "GA",
    "relevance", "-price", "date", "png", "svg", "pm_card_visa", "pm_card_chargeDeclined", "card",
]

[dictionaries.hostile_integers]
values = [0, -1, 1, 50, 51, 2147483647, 2147483648, 4294967295, 4294967296, -9223372036854775808, 9223372036854775807]

[generation.dictionaries.string]
dictionary = "hostile_strings"
probability = 0.25

[generation.dictionaries.integer]
dictionary = "hostile_integers"
probability = 0.25

# Every check, built-in and custom (`--checks all`). Said here rather than on the command line,
# where it would override the per-operation exceptions below.
[checks]
enabled = true
# A schema-invalid body larger than MAX_BODY_BYTES (1 MiB) is refused before it is parsed:
# 413 `payload_too_large`, a refusal like any other 4xx (schemathesis' list, plus 413).
negative_data_rejection.expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]

# Exceptions to every check, each for the operations it names only.
#
# Bodies that name an event's seats, sections or tiers, or times relative to now: a seat label
# the event does not have (422 `unknown_seat`, `unknown_section`), a seat map whose rows name a
# tier it does not list (422 `invalid_seat_map`), an event date in the past or a sales window
# that closes before it opens (422) are rules about the data, not its shape, that no schema
# states (like an id that names nothing, which is a 404); so is a ticket code that only the
# server can sign (422 `invalid_qr`), a staff assignment naming a user who is not staff
# (422 `not_staff`), and a payment method id the payment provider does not know (422
# `payment_invalid`: the test provider takes `pm_…` ids and `card`, Stripe its own ids).
# Schema-valid bodies may get 422 here.
[[operations]]
include-name-regex = '^(POST /events/\{event_id\}/(holds|seats/block|seats/unblock|check-ins|staff)|POST /tickets/purchase|POST /holds/\{hold_id\}/purchase|POST /tickets/\{ticket_id\}/validate|POST /events/create|PUT /events/\{event_id\}/(update|seatmap|sales-window))$'
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]

# Stripe's webhook accepts a delivery only with Stripe's signature over it (400 `bad_signature`),
# which the fuzzer cannot make: no schema-valid body is accepted without it.
[[operations]]
include-name = "POST /payments/stripe/webhook"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "413", "5xx"]

EOF

# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

section "schemathesis: $max_examples examples per operation and cycle, ${max_time}s budget"
st_args=(
    run "$work/openapi.json" --url "$base_url"
    --max-examples "$max_examples"
    --request-timeout 30
    --generation-database none
    --report junit --report-dir "$work/report"
    --no-color
    # Every warning but dictionary_mismatch: the hostile strings are meant not to fit most schemas.
    --warnings "missing_auth,missing_test_data,base_url_mismatch,validation_mismatch,missing_deserializer,unused_openapi_auth,unsupported_regex,method_not_allowed,unresolvable_reference,rate_limited,timeout_units"
)
[[ -n ${BOXOFFICE_FUZZ_SEED:-} ]] && st_args+=(--seed "$BOXOFFICE_FUZZ_SEED")
extra_args=()
[[ -n ${BOXOFFICE_FUZZ_ARGS:-} ]] && read -r -a extra_args <<<"$BOXOFFICE_FUZZ_ARGS"
# `run_st BUDGET WORKERS [more st run arguments]`: schemathesis with `st_args`, then
# BOXOFFICE_FUZZ_ARGS (which may override the budget and workers), then the arguments given.
run_st() {
    local budget=$1 workers=$2
    shift 2
    # A hard stop well past the budget, in case a request hangs.
    (cd "$work" && BOXOFFICE_FUZZ_SEED_FILE="$work/seed.json" SCHEMATHESIS_HOOKS="$work/hooks.py" \
        timeout --kill-after=30 $((budget + 300)) "$st" --config-file "$work/schemathesis.toml" \
        "${st_args[@]}" --max-time "$budget" --workers "$workers" "${extra_args[@]}" "$@")
}
st_status=0
run_st "$max_time" 2 || st_status=$?

# Hypothesis, which schemathesis draws its cases with, now and then raises an internal error
# while *generating* a case, before any request is sent (a FlakyFailure out of its own
# lambda-source cache: once in a 15-minute run on two workers, not reproducible with the same
# seed on one operation). That says nothing about the server, so when the report holds no
# failure and every error is such a generation error, the operations it hit are fuzzed again,
# alone and on one worker; their result is what counts. A failure of a check (a 5xx, a wrong
# status, a body off its schema) is never re-run.
if ((st_status == 1)); then
    mapfile -t flaky_ops < <(python3 - "$work/report" <<'EOF'
import glob, sys, xml.etree.ElementTree as ET
failures, flaky, other = 0, [], 0
for path in glob.glob(sys.argv[1] + "/*.xml"):
    for case in ET.parse(path).getroot().iter("testcase"):
        for child in case:
            if child.tag == "failure":
                failures += 1
            elif child.tag == "error":
                text = (child.text or "") + child.attrib.get("message", "")
                if "hypothesis" in text and ("FlakyFailure" in text or "Inconsistent results" in text):
                    flaky.append(case.attrib["name"])
                else:
                    other += 1
if failures == 0 and other == 0:
    print("\n".join(sorted(set(flaky))))
EOF
    )
    if ((${#flaky_ops[@]} > 0)); then
        section "schemathesis raised a generation error (Hypothesis) on ${#flaky_ops[@]} operation(s); fuzzing them again alone"
        rerun_args=()
        for op in "${flaky_ops[@]}"; do
            echo "  $op"
            rerun_args+=(--include-name "$op")
        done
        rm -rf "$work/report"
        st_status=0
        run_st $((max_time < 60 ? max_time : 60)) 1 "${rerun_args[@]}" || st_status=$?
    fi
fi

section "Summary"
failures=()
case $st_status in
0) ;;
124 | 137) failures+=("schemathesis did not finish within its budget and 300s") ;;
*) failures+=("schemathesis found failures (exit $st_status; each above with a curl line that reproduces it)") ;;
esac
if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "the server died during the run:"
    tail -n 30 "$work/server.log"
    failures+=("the server died")
elif ! python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/healthz", timeout=10)' "$base_url" 2>/dev/null; then
    failures+=("the server no longer answers /healthz")
fi
python3 - "$base_url" <<'EOF' 2>/dev/null || true
import collections, re, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1] + "/metrics", timeout=10).read().decode()
by_status = collections.Counter()
for m in re.finditer(r'^boxoffice_http_requests_total\{([^}]*)\} (\d+)', text, re.M):
    status = re.search(r'status="(\d+)"', m.group(1))
    by_status[status.group(1) if status else "?"] += int(m.group(2))
print("server answers by status:", ", ".join(f"{k}: {v}" for k, v in sorted(by_status.items())) or "none")
EOF
errors=$(grep -c '"level":"ERROR"' "$work/server.log" || true)
if ((errors > 0)); then
    echo "server log: $errors ERROR line(s) (the internal errors behind any 5xx):"
    grep '"level":"ERROR"' "$work/server.log" | sed 's/"timestamp":"[^"]*",//' | sort | uniq -c | sort -rn | head -n 20
fi
if ((doc_problems > 0)); then
    echo "the OpenAPI document documents $doc_problems query parameter(s) as path parameters:"
    cat "$work/doc-problems.txt"
    failures+=("the OpenAPI document misplaces $doc_problems parameter(s)")
fi
if ((${#failures[@]} == 0)); then
    echo "fuzz_api: no failures (every schemathesis check, and problem_json_errors)"
    exit 0
fi
printf 'fuzz_api: FAILED: %s\n' "${failures[@]}"
exit 1
