#!/usr/bin/env bash
# Runs the Postman collection (postman/referral.postman_collection.json) with
# newman against each example server; exits non-zero when any request does not
# answer as the collection expects.
#
#   scripts/postman.sh                 # both servers: axum, then actix
#   scripts/postman.sh axum            # or only one: axum | actix
#
# What it does:
#   1. installs the pinned newman from postman/package-lock.json into
#      postman/node_modules (`npm ci`; needs Node.js and npm, nothing global);
#   2. builds `referral-server` and `referral-server-actix` (debug);
#   3. for each server: starts it on 127.0.0.1:0 with the in-memory store, no
#      SMS delay, the dev outbox on, an API key made for this run and the
#      reward policy the collection's "Rewards" folder expects (fixed 1000,
#      5 %, welcome 300, RUB), an operator's phone made for this run
#      (REFERRAL_ADMIN_PHONES, for the "Operators" folder), reads its address
#      from the `listening on` line, runs newman with `baseUrl`, `apiKey` and
#      `adminPhone` set, then stops the
#      server (SIGTERM; also on failure);
#   4. prints `NAME: N passed, N failed` (assertions) per server, and exits 1
#      when newman failed on any of them.
set -euo pipefail

cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
COLLECTION=postman/referral.postman_collection.json
NEWMAN=postman/node_modules/.bin/newman

servers=("$@")
((${#servers[@]})) || servers=(axum actix)
for s in "${servers[@]}"; do
    case "$s" in
        axum | actix) ;;
        *) echo "usage: $0 [axum|actix]..." >&2; exit 2 ;;
    esac
done

echo "== installing newman (npm ci in postman/)"
npm ci --prefix postman --no-audit --no-fund --loglevel=error >/dev/null

# Both servers in one build, always, as scripts/schemathesis.sh builds them: the
# same feature set, so after it (in .ci/run) this build has nothing to do.
echo "== building the servers"
cargo build --quiet -p referral-server -p referral-server-actix --bins

WORK=$(mktemp -d)
# The key the collection sends on /api/server/*: random per run, 48 hex digits.
API_KEY=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
# The operator's phone (REFERRAL_ADMIN_PHONES): random per run, as the
# collection's own phones are.
ADMIN_PHONE=+7999$(printf '%07d' $((RANDOM * 32768 + RANDOM))  | cut -c1-7)
SERVER_PID=
stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT

# Starts the binary $1; sets SERVER_PID and BASE.
start_server() {
    : >"$WORK/stdout"
    : >"$WORK/stderr"
    # A clean environment for the server: no inherited REFERRAL_* or DATABASE_URL.
    env -u DATABASE_URL $(env | sed -n 's/^\(REFERRAL_[A-Z_]*\)=.*/-u \1/p') \
        REFERRAL_LISTEN=127.0.0.1:0 REFERRAL_SMS_DELAY_MS=0 REFERRAL_DEV_OUTBOX=1 \
        REFERRAL_API_KEYS="$API_KEY" REFERRAL_REWARD_REFERRER_FIXED=1000 \
        REFERRAL_REWARD_REFERRER_BP=500 REFERRAL_REWARD_WELCOME_FIXED=300 \
        REFERRAL_ADMIN_PHONES="$ADMIN_PHONE" \
        RUST_LOG=warn \
        "$1" >"$WORK/stdout" 2>"$WORK/stderr" &
    SERVER_PID=$!
    BASE=
    for _ in $(seq 1 300); do
        BASE=$(sed -n 's/^listening on //p' "$WORK/stdout" | head -n1)
        [[ -n "$BASE" ]] && return 0
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "$1 exited:" >&2; cat "$WORK/stderr" >&2; return 1
        fi
        sleep 0.1
    done
    echo "$1 did not print its address in 30 s" >&2
    return 1
}

failed=()
for s in "${servers[@]}"; do
    case "$s" in
        axum) bin=referral-server ;;
        actix) bin=referral-server-actix ;;
    esac
    start_server "$TARGET/debug/$bin"
    echo "== newman against $bin at $BASE"
    set +e
    FORCE_COLOR=0 "$NEWMAN" run "$COLLECTION" \
        --env-var "baseUrl=$BASE" --env-var "apiKey=$API_KEY" --env-var "adminPhone=$ADMIN_PHONE" \
        --reporters cli,json --reporter-json-export "$WORK/$s.json" \
        --reporter-cli-no-success-assertions \
        --color=off \
        --timeout-request 10000 --timeout 300000
    status=$?
    set -e
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "$bin died during the run:" >&2; cat "$WORK/stderr" >&2
        status=1
    fi
    stop_server
    if [[ -f "$WORK/$s.json" ]]; then
        node -e '
            const a = require(process.argv[1]).run.stats.assertions;
            console.log(`${process.argv[2]}: ${a.total - a.failed} passed, ${a.failed} failed`);
        ' "$(realpath "$WORK/$s.json")" "$s"
    fi
    ((status == 0)) || failed+=("$s")
done

if ((${#failed[@]})); then
    echo "newman failed against: ${failed[*]}" >&2
    exit 1
fi
