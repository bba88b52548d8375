#!/usr/bin/env bash
# pgbench with custom scripts of the statements PgStore sends: the floor of
# the PostgreSQL bench (benches/benches/postgres.rs), from C code with no pool.
#
#   DATABASE_URL=postgres://... benches/pgbench/run.sh
#
# Creates a database referral_pgbench_<pid> on that server, applies
# referral-sqlx's migrations and setup.sql, inserts the bench population
# (100 000 users; users 1..1000 own 5 referrals each; fresh users with live
# login codes), then runs profile.sql, activate.sql and verify.sql at 1, 16
# and 64 clients (-M prepared, -j 2, PGBENCH_SECS seconds each, default 10)
# and drops the database. Prints one line per run: script, clients, tps.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

: "${DATABASE_URL:?set DATABASE_URL (a server where this user may CREATE DATABASE)}"
secs=${PGBENCH_SECS:-10}
pg_bin=""
if ! command -v pgbench >/dev/null 2>&1; then
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r | head -n 1)/
fi
psql=("${pg_bin}psql" -qAtX -v ON_ERROR_STOP=1)

db="referral_pgbench_$$"
"${psql[@]}" "$DATABASE_URL" -c "CREATE DATABASE $db" >/dev/null
url="${DATABASE_URL%/*}/$db"
trap '"${psql[@]}" "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true' EXIT

for f in ../../referral-sqlx/migrations/*.sql; do
    "${psql[@]}" "$url" -f "$f" >/dev/null
done
"${psql[@]}" "$url" -f setup.sql >/dev/null
fresh=600000 # fresh users for activations and for login codes
"${psql[@]}" "$url" >/dev/null <<SQL
SELECT format('SELECT referral_bench_users(%s, %s, now())', f, least(f + 49999, 100000 + 2 * $fresh))
  FROM generate_series(1, 100000 + 2 * $fresh, 50000) AS f
\\gexec
SELECT referral_bench_activations(o, 1001 + (o - 1) * 5, 1005 + (o - 1) * 5, now())
  FROM generate_series(1, 1000) AS o;
SELECT setval('referral_bench_next', 100001);
SELECT referral_bench_codes(100001 + $fresh,
       array_fill('\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea,
                  ARRAY[$fresh]), now());
SELECT setval('referral_bench_next_code', 100001 + $fresh);
VACUUM ANALYZE;
SQL

for script in profile activate verify; do
    for clients in 1 16 64; do
        tps=$("${pg_bin}pgbench" -n -M prepared -j 2 -c "$clients" -T "$secs" \
            -D owners=1000 -f "$script.sql" "$url" 2>&1 |
            sed -n 's/^tps = \([0-9.]*\).*/\1/p')
        printf 'pgbench %-8s clients %2d  %8.0f tps\n' "$script" "$clients" "$tps"
    done
done
