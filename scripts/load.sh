#!/usr/bin/env bash
# The load harness, every scenario in one command (see PERFORMANCE.md).
#
#   scripts/load.sh [--quick]
#
# Builds the release binaries (referral-server, referral-load), then for each
# store starts servers on 127.0.0.1:0 (reading their `listening on
# http://ADDR` line), runs referral-load's scenarios against them and stops
# them:
#   - REFERRAL_SMS_DELAY_MS=0:  profile (64 clients, against the bare route),
#                               invite (64 clients, fresh users);
#   - the default 1-2 s delay:  code (1000 clients, against a bare 1-2 s route).
# A server has one delay setting, hence one server per delay.
#
# The memory store always (DATABASE_URL is removed from the memory servers'
# environment); PostgreSQL with DATABASE_URL, or else a throwaway
# cluster this script starts when PostgreSQL's binaries are installed (as
# scripts/test.sh does); otherwise the PostgreSQL scenarios are skipped with a
# message. Each PostgreSQL server gets a fresh database `referral_load_*`.
#
# --quick: 3-second phases and one round, to check that everything runs.
# LOAD_SECS, LOAD_ROUNDS, LOAD_CLIENTS, LOAD_CODE_CLIENTS override the sizes.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'load.sh: %s\n' "$*" >&2; }

secs=${LOAD_SECS:-10}
rounds=${LOAD_ROUNDS:-3}
clients=${LOAD_CLIENTS:-64}
code_clients=${LOAD_CODE_CLIENTS:-1000}
invite_users=${LOAD_INVITE_USERS:-30000}
if [[ "${1:-}" == --quick ]]; then
    secs=3
    rounds=1
    invite_users=2000
fi

log "building release binaries"
cargo build --release -q -p referral-server -p referral-benches --bin referral-server --bin referral-load
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
server_bin="$target_dir/release/referral-server"
load_bin="$target_dir/release/referral-load"

tmp=$(mktemp -d /tmp/referral-load.XXXXXX)
chmod 755 "$tmp"
pids=()
pg_stop=""
cleanup() {
    local code=$?
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "$pg_stop" ]]; then
        eval "$pg_stop" >/dev/null 2>&1 || true
    fi
    rm -rf "$tmp"
    exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_server NAME [VAR=VALUE...]: starts a server, sets $addr.
start_server() {
    local name=$1
    shift
    local out="$tmp/$name.out"
    : >"$out"
    # -u DATABASE_URL: the memory store must not inherit an exported
    # DATABASE_URL (the server would silently use PostgreSQL); the
    # PostgreSQL runs pass their own in "$@".
    # REFERRAL_IP_MAX_SENDS_PER_HOUR=0: every client of the harness is
    # 127.0.0.1, and the per-client limit (30 codes an hour) is not measured.
    env -u DATABASE_URL REFERRAL_LISTEN=127.0.0.1:0 \
        REFERRAL_JWT_SECRET=load-harness-secret-0123456789abcdef \
        REFERRAL_IP_MAX_SENDS_PER_HOUR=0 \
        RUST_LOG=warn \
        "$@" "$server_bin" >"$out" 2>"$tmp/$name.err" &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 1 600); do
        addr=$(sed -n 's|^listening on http://||p' "$out" | head -n 1)
        if [[ -n "$addr" ]]; then
            log "$name: listening on $addr (pid $pid)"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$tmp/$name.err" >&2
            log "$name: the server exited"
            return 1
        fi
        sleep 0.1
    done
    log "$name: no listening line after 60 s"
    return 1
}

stop_servers() {
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    pids=()
}

# run_store LABEL [VAR=VALUE...]: every scenario on one store.
run_store() {
    local label=$1
    shift
    start_server "$label-nodelay" "$@" REFERRAL_SMS_DELAY_MS=0
    local fast=$addr
    "$load_bin" --target "http://$fast" --scenario profile --clients "$clients" \
        --duration "$secs" --rounds "$rounds" --label "$label"
    "$load_bin" --target "http://$fast" --scenario invite --clients "$clients" \
        --duration "$secs" --users "$invite_users" --label "$label"
    stop_servers
    start_server "$label-delay" "$@"
    "$load_bin" --target "http://$addr" --scenario code --clients "$code_clients" \
        --duration "$secs" --rounds 1 --label "$label"
    stop_servers
}

log "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), load $(cut -d' ' -f1-3 /proc/loadavg)"
run_store memory

# --- PostgreSQL ----------------------------------------------------------------

find_pg_bin() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r); do
        [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]] && { echo "$dir"; return 0; }
    done
    command -v pg_ctl >/dev/null 2>&1 && { dirname "$(command -v pg_ctl)"; return 0; }
    return 1
}

pg_url=${DATABASE_URL:-}
if [[ -z "$pg_url" ]] && PG_BIN=$(find_pg_bin); then
    run_pg=()
    if [[ $(id -u) -eq 0 ]]; then
        id -u postgres >/dev/null 2>&1 ||
            useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/sh postgres
        chown postgres "$tmp"
        run_pg=(runuser -u postgres --)
    fi
    "${run_pg[@]}" "$PG_BIN/initdb" -D "$tmp/pg" -U postgres --auth=trust -E UTF8 \
        --no-sync --no-instructions >"$tmp/initdb.log" 2>&1
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        port=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
        cat >>"$tmp/pg/postgresql.conf" <<EOF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$tmp'
max_connections = 300
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
        if "${run_pg[@]}" "$PG_BIN/pg_ctl" -D "$tmp/pg" -l "$tmp/pg.log" -w start >/dev/null; then
            pg_url="postgres://postgres@127.0.0.1:$port/postgres"
            pg_stop="${run_pg[*]} $PG_BIN/pg_ctl -D $tmp/pg -m immediate -w stop"
            log "throwaway PostgreSQL at $pg_url (fsync off)"
            break
        fi
    done
fi

if [[ -z "$pg_url" ]]; then
    log "DATABASE_URL is not set and PostgreSQL is not installed: skipping the PostgreSQL scenarios"
    exit 0
fi

psql_bin=$(command -v psql || echo "${PG_BIN:-/usr/lib/postgresql/15/bin}/psql")
db="referral_load_$$"
"$psql_bin" "$pg_url" -qAt -c "CREATE DATABASE $db" >/dev/null
db_url="${pg_url%/*}/$db"
run_store postgres DATABASE_URL="$db_url"
"$psql_bin" "$pg_url" -qAt -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
