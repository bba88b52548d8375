#!/usr/bin/env bash
# schemathesis (PyPI) against the axum server's OpenAPI document: every
# generated request must get an answer that is not a 5xx and that conforms to
# the documented schema (status, body). Bounded in examples and time.
#
#   scripts/schemathesis.sh            # from the workspace root
#
# What it does:
#   1. a Python venv with a pinned schemathesis (SCHEMATHESIS_VENV, default
#      $CARGO_TARGET_DIR/schemathesis-venv or target/schemathesis-venv),
#      reused when the pinned version is already there;
#   2. builds `referral-server` (with `referral-server-actix`, the build of
#      scripts/postman.sh) and starts it on 127.0.0.1:0 with the in-memory
#      store, no SMS delay, a fixed JWT secret, and reads its address from
#      the `listening on` line;
#   3. runs schemathesis with a token of a logged-in user who is also an
#      operator (REFERRAL_ADMIN_PHONES), so the user and the admin routes are
#      reached, except the one that blocks a user (the fuzzer would block its
#      own user and see only 403 `user_blocked` from then on; the contract
#      suite and Postman cover it), every check (`--checks all`: among
#      them positive_data_acceptance, a schema-valid request must not be
#      refused, and negative_data_rejection, a schema-invalid one must be),
#      in both generation modes, with the one data-dependent exception of
#      scripts/schemathesis.toml (422 on POST /api/profile/invite), at most SCHEMATHESIS_MAX_EXAMPLES (30)
#      cases per operation and SCHEMATHESIS_MAX_TIME (60) seconds (the fuzzing
#      phase repeats until that budget is spent);
#   4. stops the server (also on failure) and exits with schemathesis's code.
#
# Settings: SCHEMATHESIS_SEED for a reproducible run (default 1).
set -euo pipefail

VERSION=4.32.5
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
VENV=${SCHEMATHESIS_VENV:-$TARGET/schemathesis-venv}
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-30}
MAX_TIME=${SCHEMATHESIS_MAX_TIME:-60}
SEED=${SCHEMATHESIS_SEED:-1}

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$VERSION"; then
    echo "== installing schemathesis $VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
fi

echo "== building referral-server"
# With referral-server-actix, as scripts/postman.sh builds them: one feature set
# for both scripts, so the second build of .ci/run has nothing to do.
cargo build --quiet -p referral-server -p referral-server-actix --bins
BIN="$TARGET/debug/referral-server"

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Created here: the background job below opens them only once it has forked.
: >"$WORK/stdout"
: >"$WORK/stderr"
# A clean environment for the server: no inherited REFERRAL_* or DATABASE_URL.
# No per-client send limit: every request comes from 127.0.0.1, and past 30
# codes the code route would only answer 429 (documented, but no 202 left to check).
env -u DATABASE_URL $(env | sed -n 's/^\(REFERRAL_[A-Z_]*\)=.*/-u \1/p') \
    REFERRAL_LISTEN=127.0.0.1:0 REFERRAL_SMS_DELAY_MS=0 REFERRAL_IP_MAX_SENDS_PER_HOUR=0 \
    REFERRAL_JWT_SECRET=schemathesis-secret-0123456789abcdef REFERRAL_ADMIN_PHONES=+79990000001 \
    RUST_LOG=warn \
    "$BIN" >"$WORK/stdout" 2>"$WORK/stderr" &
SERVER_PID=$!
BASE=
for _ in $(seq 1 300); do
    BASE=$(sed -n 's/^listening on //p' "$WORK/stdout" | head -n1)
    [[ -n "$BASE" ]] && break
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "the server exited:" >&2; cat "$WORK/stderr" >&2; exit 1
    fi
    sleep 0.1
done
[[ -n "$BASE" ]] || { echo "the server did not start" >&2; exit 1; }
echo "== server at $BASE"

# A logged-in user, so the authenticated routes answer more than 401.
PHONE=+79990000001
curl -fsS -X POST "$BASE/api/auth/code" -H 'content-type: application/json' \
    -d "{\"phone\": \"$PHONE\"}" >/dev/null
CODE=$(curl -fsS "$BASE/api/dev/sms?phone=$PHONE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["code"])')
TOKEN=$(curl -fsS -X POST "$BASE/api/auth/verify" -H 'content-type: application/json' \
    -d "{\"phone\": \"$PHONE\", \"code\": \"$CODE\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

echo "== schemathesis $VERSION: at most $MAX_EXAMPLES examples per operation, ${MAX_TIME}s"
set +e
# One worker: with two threads, hypothesis's lambda-source parsing hit CPython
# 3.11's "AST constructor recursion depth mismatch" (a race in `ast` across
# threads), reported by schemathesis as a runtime error of an operation.
"$VENV/bin/schemathesis" --config-file scripts/schemathesis.toml \
    run "$BASE/api/openapi.json" \
    --url "$BASE" \
    --checks all \
    --max-examples "$MAX_EXAMPLES" \
    --max-time "$MAX_TIME" \
    --seed "$SEED" \
    --workers 1 \
    --request-timeout 10 \
    --header "Authorization: Bearer $TOKEN" \
    --exclude-path-regex '/block$' \
    --suppress-health-check all \
    --no-color
STATUS=$?
set -e
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "the server died during the run:" >&2; cat "$WORK/stderr" >&2; exit 1
fi
exit $STATUS
