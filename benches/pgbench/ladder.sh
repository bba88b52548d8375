#!/usr/bin/env bash
# The ceiling ladder of issue 13 from pgbench (a C client, so what is measured
# is the server's work): the one-INSERT floor against each rung of ladder.sql
# and the real referral_activate / referral_register, at 16 and 64 clients,
# in interleaved rounds. The same rungs through the Rust client: bin pg-ladder.
#
#   DATABASE_URL=postgres://... benches/pgbench/ladder.sh [ROUNDS]
#
# Creates a database referral_ladder_<pid> on that server (referral-sqlx's
# migrations, setup.sql, ladder.sql, 1 000 code owners and 3 000 000 fresh
# users), runs each script for PGBENCH_SECS seconds (default 5, -M prepared,
# -j 2), each run under `flock "$BENCH_LOCK"` when BENCH_LOCK names a lock
# file (so runs of other benchmarks on the machine do not overlap them; the
# lock is released between runs), and drops the database. Prints one line per run: round, clients, rung, tps, ratio to the
# floor of the same round and clients, load average before.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

: "${DATABASE_URL:?set DATABASE_URL (a server where this user may CREATE DATABASE)}"
rounds=${1:-3}
secs=${PGBENCH_SECS:-5}
pg_bin=""
if ! command -v pgbench >/dev/null 2>&1; then
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r | head -n 1)/
fi
psql=("${pg_bin}psql" -qAtX -v ON_ERROR_STOP=1)

db="referral_ladder_$$"
"${psql[@]}" "$DATABASE_URL" -c "CREATE DATABASE $db" >/dev/null
url="${DATABASE_URL%/*}/$db"
tmp=$(mktemp -d)
trap '"${psql[@]}" "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true; rm -rf "$tmp"' EXIT

for f in ../../referral-sqlx/migrations/*.sql; do
    "${psql[@]}" "$url" -f "$f" >/dev/null
done
"${psql[@]}" "$url" -f setup.sql >/dev/null
"${psql[@]}" "$url" -f ladder.sql >/dev/null
"${psql[@]}" "$url" >/dev/null <<'SQL'
SELECT format('SELECT referral_bench_users(%s, %s, now())', f, least(f + 49999, 3000000))
  FROM generate_series(1, 3000000, 50000) AS f
\gexec
INSERT INTO ru_c SELECT * FROM referral_users;
CREATE TABLE bench_floor (id bigserial PRIMARY KEY, v text NOT NULL);
CREATE TABLE bench_owner (n int PRIMARY KEY, id uuid NOT NULL, code text NOT NULL);
INSERT INTO bench_owner SELECT n, referral_bench_id(n), referral_bench_code(n) FROM generate_series(1, 1000) n;
CREATE SEQUENCE act_seq START 1001;
CREATE SEQUENCE reg_seq START 10000001;
VACUUM ANALYZE;
SQL

# The scripts: the next fresh user activates the code of a random owner; a
# new phone registers. The owner's id and code come from bench_owner in
# every activation rung alike (the real function is given the code).
echo "INSERT INTO bench_floor (v) VALUES ('row');" >"$tmp/floor.sql"
act=(lad_a0 lad_b0 lad_n0 lad_c0 lad_a lad_b lad_c lad_d)
for f in "${act[@]}"; do
    cat >"$tmp/$f.sql" <<SQL
\\set owner random(1, 1000)
SELECT $f(referral_bench_id(s.k), o.id, o.code, now()) FROM nextval('act_seq') AS s(k), bench_owner o WHERE o.n = :owner;
SQL
done
for f in lad_f referral_activate; do
    cat >"$tmp/$f.sql" <<SQL
\\set owner random(1, 1000)
SELECT r.outcome FROM nextval('act_seq') AS s(k), bench_owner o, LATERAL $f(referral_bench_id(s.k), o.code, now(), 3600000000, 10) r WHERE o.n = :owner;
SQL
done
reg=(reg_a reg_c reg_b0 reg_b)
for f in "${reg[@]}"; do
    cat >"$tmp/$f.sql" <<SQL
SELECT $f(referral_bench_phone(s.k), referral_bench_id(s.k), now(), ARRAY['R' || s.k::text]) FROM nextval('reg_seq') AS s(k);
SQL
done
cat >"$tmp/referral_register.sql" <<'SQL'
SELECT r.outcome FROM nextval('reg_seq') AS s(k), LATERAL referral_register(referral_bench_phone(s.k), referral_bench_id(s.k), now(), ARRAY['R' || s.k::text]) r;
SQL

rungs=(floor "${act[@]}" lad_f referral_activate "${reg[@]}" referral_register)
for round in $(seq 1 "$rounds"); do
    for clients in 16 64; do
        floor=""
        for rung in "${rungs[@]}"; do
            load=$(cut -d' ' -f1 /proc/loadavg)
            tps=$(${BENCH_LOCK:+flock "$BENCH_LOCK"} "${pg_bin}pgbench" -n -M prepared -j 2 -c "$clients" -T "$secs" \
                -f "$tmp/$rung.sql" "$url" 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
            [ -n "$floor" ] || floor=$tps
            printf 'round %d clients %2d %-18s %8.0f tps (%.2f)  load %s\n' \
                "$round" "$clients" "$rung" "$tps" "$(echo "$tps / $floor" | bc -l)" "$load"
        done
    done
done
