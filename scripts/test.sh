#!/usr/bin/env bash
# THE test command of the workspace: every test, the PostgreSQL ones included.
#
#   scripts/test.sh [extra cargo test args...]   (with -p/--package: only those packages)
#
# With DATABASE_URL set, the tests run against that server (each PostgreSQL
# test creates its own database `referral_t_*` on it, so the URL's user needs
# CREATEDB). Without it, this script starts a throwaway PostgreSQL cluster of
# its own on 127.0.0.1 (a free port, trust auth, fsync off), installing
# Debian's `postgresql` package first when it is missing and we may install
# (root, or sudo without a password), and stops and deletes the cluster
# afterwards, whatever happened. The exit code is cargo test's.
#
# It also exports REFERRAL_TEST_PGCTL, a command taking `stop` or `start`,
# which the restart test of referral-sqlx uses to take the server down and
# bring it back, and REFERRAL_TEST_PGBOUNCER_URL: a PgBouncer in transaction
# mode (Debian's `pgbouncer`, installed like PostgreSQL when missing) in front
# of the throwaway cluster, which referral-sqlx's kit also runs through. With
# DATABASE_URL set, REFERRAL_TEST_PGBOUNCER_URL is taken from the environment
# as well (the PgBouncer tests skip without it, and fail under CI).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'test.sh: %s\n' "$*" >&2; }

# Every crate of the workspace, unless the arguments pick packages themselves.
run_tests() {
    local scope=(--workspace) arg
    for arg in "$@"; do
        case "$arg" in
            -p | -p* | --package | --package=* | --manifest-path | --manifest-path=*) scope=() ;;
            --) break ;;
        esac
    done
    log "cargo test ${scope[*]} --all-features $*"
    cargo test "${scope[@]}" --all-features "$@"
}

if [[ -n "${DATABASE_URL:-}" ]]; then
    log "using DATABASE_URL from the environment"
    run_tests "$@"
    exit $?
fi

# --- find or install PostgreSQL's server binaries ----------------------------

find_pg_bin() {
    local dir
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"
        return 0
    fi
    # Debian and Ubuntu keep them off PATH, one folder per major version.
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

as_root=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        as_root=(none)
    fi
fi

if ! command -v pgbouncer >/dev/null 2>&1 && [[ ! -x /usr/sbin/pgbouncer ]]; then
    if [[ "${as_root[0]:-}" == none ]]; then
        log "PgBouncer is not installed and this user cannot install it."
        log "Install it (Debian: apt-get install pgbouncer) or set DATABASE_URL."
        exit 1
    fi
    log "installing PgBouncer (apt-get install pgbouncer)"
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null
fi
PGBOUNCER=$(command -v pgbouncer 2>/dev/null || echo /usr/sbin/pgbouncer)

if ! PG_BIN=$(find_pg_bin); then
    if [[ "${as_root[0]:-}" == none ]]; then
        log "PostgreSQL (initdb, pg_ctl) is not installed and this user cannot install it."
        log "Install it (Debian: apt-get install postgresql) or set DATABASE_URL."
        exit 1
    fi
    log "installing PostgreSQL (apt-get install postgresql)"
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    PG_BIN=$(find_pg_bin) || { log "PostgreSQL was installed but initdb was not found"; exit 1; }
fi
log "PostgreSQL binaries: $PG_BIN ($("$PG_BIN/pg_ctl" --version))"

# --- a throwaway cluster -----------------------------------------------------

# PostgreSQL refuses to run as root: then the cluster belongs to `postgres`.
pg_user=""
if [[ $(id -u) -eq 0 ]]; then
    pg_user=postgres
    if ! id -u "$pg_user" >/dev/null 2>&1; then
        useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/sh "$pg_user"
    fi
fi

as_pg() {
    if [[ -n "$pg_user" ]]; then
        if command -v runuser >/dev/null 2>&1; then
            runuser -u "$pg_user" -- "$@"
        else
            su "$pg_user" -s /bin/sh -c "$(printf '%q ' "$@")"
        fi
    else
        "$@"
    fi
}

tmp=$(mktemp -d /tmp/referral-pg.XXXXXX)
data="$tmp/data"
cleanup() {
    local code=$?
    if [[ -f "$tmp/pgbouncer.pid" ]]; then
        kill "$(cat "$tmp/pgbouncer.pid")" 2>/dev/null || true
    fi
    if [[ -f "$data/postmaster.pid" ]]; then
        as_pg "$PG_BIN/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$tmp"
    exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

chmod 755 "$tmp"
[[ -n "$pg_user" ]] && chown "$pg_user" "$tmp"
(cd "$tmp" && as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 \
    --no-sync --no-instructions >"$tmp/initdb.log" 2>&1) || {
    cat "$tmp/initdb.log" >&2
    exit 1
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The helper the restart test calls: `pgctl stop` / `pgctl start`.
cat >"$tmp/pgctl" <<EOF
#!/usr/bin/env bash
set -euo pipefail
case "\${1:-}" in
    stop)  cmd=("$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 60 stop) ;;
    start) cmd=("$PG_BIN/pg_ctl" -D "$data" -l "$tmp/server.log" -w -t 60 start) ;;
    *) echo "usage: \$0 stop|start" >&2; exit 2 ;;
esac
if [[ -n "$pg_user" ]]; then
    exec runuser -u "$pg_user" -- "\${cmd[@]}" </dev/null >/dev/null
else
    exec "\${cmd[@]}" </dev/null >/dev/null
fi
EOF
chmod 755 "$tmp/pgctl"

started=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
    port=$((20000 + RANDOM % 40000))
    port_free "$port" || continue
    # Settings go into postgresql.conf, so `pgctl start` brings back the same server.
    cat >>"$data/postgresql.conf" <<EOF

# scripts/test.sh: a throwaway cluster for tests
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$tmp'
max_connections = 500
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    if "$tmp/pgctl" start; then
        started=yes
        break
    fi
    log "could not start PostgreSQL on port $port; trying another"
done
if [[ -z "$started" ]]; then
    cat "$tmp/server.log" >&2 || true
    exit 1
fi

# If this script is killed outright (SIGKILL skips the EXIT trap), a detached
# watchdog still stops the cluster and removes its folder once we are gone.
if command -v setsid >/dev/null 2>&1; then
    stop_cmd=$(printf '%q ' "$PG_BIN/pg_ctl" -D "$data" -m immediate -w stop)
    [[ -n "$pg_user" ]] && stop_cmd="runuser -u $pg_user -- $stop_cmd"
    setsid bash -c "while kill -0 $$ 2>/dev/null; do sleep 5; done
        if [[ -f $(printf '%q' "$data/postmaster.pid") ]]; then $stop_cmd; fi
        rm -rf $(printf '%q' "$tmp")" </dev/null >/dev/null 2>&1 &
fi

export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
export REFERRAL_TEST_PGCTL="$tmp/pgctl"
log "throwaway PostgreSQL at $DATABASE_URL (data in $data)"

# PgBouncer in transaction mode in front of it: every database of the server
# (the tests create their own), trust auth for the one user, sqlx's
# `extra_float_digits` startup parameter ignored (PgBouncer refuses unknown
# ones, and refuses `options`: what PgStoreOptions::transaction_pooler is
# for). Like PostgreSQL, it refuses to run as root.
echo '"postgres" ""' >"$tmp/pgbouncer.users"
bouncer_started=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
    bport=$((20000 + RANDOM % 40000))
    port_free "$bport" || continue
    cat >"$tmp/pgbouncer.ini" <<BOUNCER
[databases]
* = host=127.0.0.1 port=$port
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bport
unix_socket_dir =
auth_type = trust
auth_file = $tmp/pgbouncer.users
pool_mode = transaction
max_client_conn = 2000
default_pool_size = 60
ignore_startup_parameters = extra_float_digits
logfile = $tmp/pgbouncer.log
pidfile = $tmp/pgbouncer.pid
BOUNCER
    [[ -n "$pg_user" ]] && chown "$pg_user" "$tmp/pgbouncer.ini" "$tmp/pgbouncer.users"
    if as_pg "$PGBOUNCER" -d -q "$tmp/pgbouncer.ini" </dev/null; then
        for _ in $(seq 50); do
            if (exec 3<>"/dev/tcp/127.0.0.1/$bport") 2>/dev/null; then
                bouncer_started=yes
                break
            fi
            sleep 0.1
        done
        [[ -n "$bouncer_started" ]] && break
    fi
    log "could not start PgBouncer on port $bport; trying another"
done
if [[ -z "$bouncer_started" ]]; then
    cat "$tmp/pgbouncer.log" >&2 || true
    exit 1
fi
# Killed outright, this script leaves PgBouncer to a watchdog, as the cluster.
if command -v setsid >/dev/null 2>&1; then
    bouncer_pid=$(cat "$tmp/pgbouncer.pid" 2>/dev/null || true)
    if [[ "$bouncer_pid" =~ ^[0-9]+$ ]]; then
        setsid bash -c "while kill -0 $$ 2>/dev/null; do sleep 5; done
            kill $bouncer_pid 2>/dev/null" </dev/null >/dev/null 2>&1 &
    fi
fi
export REFERRAL_TEST_PGBOUNCER_URL="postgres://postgres@127.0.0.1:$bport/postgres"
log "PgBouncer in transaction mode at $REFERRAL_TEST_PGBOUNCER_URL ($("$PGBOUNCER" --version | head -n 1))"

set +e
run_tests "$@"
code=$?
set -e
exit "$code"
