//! The operators' CSV export over HTTP (issue 12): `referral-server` on
//! PostgreSQL streams `GET /api/admin/export/referrals.csv` of 10,000 and of
//! 1,000,000 referrals; for each, rows per second (first request byte to
//! last response byte) and the server process's memory: its peak resident
//! size (`VmHWM` of `/proc/<pid>/status`) before and after the export, and
//! the largest `VmRSS` sampled every 10 ms during it. Constant memory means
//! the same peak for both sizes.
//!
//! ```sh
//! cargo build --release -p referral-server
//! DATABASE_URL=postgres://… cargo run --release -p referral-benches --bin export-scale [-- ROWS [SMALL]]
//! ```
//! For each size it creates a database `referral_bench_*`, bulk-inserts the
//! users and activations as `PgStore` writes them (users past the 100th
//! referred by the first 100), starts the server binary
//! (`REFERRAL_SERVER_BIN`, default `target/release/referral-server` of this
//! workspace) on it with `REFERRAL_ADMIN_PHONES` naming user 1, logs that
//! operator in through the API (the code from the dev outbox), streams the
//! export counting its rows, stops the server and drops the database.
//! Linux only (`/proc`). Without `DATABASE_URL` it says it skips.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use referral_benches::api::login;
use referral_benches::pg;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time")
}

/// `DATABASE_URL` with its database replaced by `name`.
fn url_of_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let rest = base.find("://").map_or(0, |i| {
        i + 3 + base[i + 3..].find('/').unwrap_or(base.len() - i - 3)
    });
    let mut out = format!("{}/{name}", &base[..rest]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A memory figure of `/proc/<pid>/status` (`VmHWM`, `VmRSS`), in KiB.
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The server process, stopped when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(bin: &PathBuf, database_url: &str, admin_phone: &str) -> Self {
        let mut child = Command::new(bin)
            .env("DATABASE_URL", database_url)
            .env("REFERRAL_LISTEN", "127.0.0.1:0")
            .env("REFERRAL_SMS_DELAY_MS", "0")
            .env("REFERRAL_DEV_OUTBOX", "1")
            .env("REFERRAL_ADMIN_PHONES", admin_phone)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("the server's stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the server's first line");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the server said {line:?}"))
            .to_owned();
        Self { child, base }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one export measured.
struct Figures {
    rows: u64,
    bytes: u64,
    seconds: f64,
    hwm_before: u64,
    hwm_after: u64,
    rss_before: u64,
    rss_max: u64,
}

async fn export(server: &Server, token: &str) -> Figures {
    let http = reqwest::Client::new();
    let pid = server.pid();
    // A warm-up admin call, so the figures before are of a running server.
    let r = http
        .get(format!("{}/api/admin/users?limit=1", server.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /api/admin/users");
    assert_eq!(r.status().as_u16(), 200, "the operator is let in");
    let hwm_before = proc_kib(pid, "VmHWM");
    let rss_before = proc_kib(pid, "VmRSS");
    let max = Arc::new(AtomicU64::new(rss_before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (max, done) = (Arc::clone(&max), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                max.fetch_max(proc_kib(pid, "VmRSS"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let started = Instant::now();
    let mut response = http
        .get(format!("{}/api/admin/export/referrals.csv", server.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET export");
    assert_eq!(response.status().as_u16(), 200, "the export");
    let (mut lines, mut bytes) = (0u64, 0u64);
    while let Some(chunk) = response.chunk().await.expect("a chunk") {
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    sampler.join().expect("the sampler");
    Figures {
        rows: lines.saturating_sub(1), // the header row
        bytes,
        seconds,
        hwm_before,
        hwm_after: proc_kib(pid, "VmHWM"),
        rss_before,
        rss_max: max.load(Ordering::Relaxed),
    }
}

async fn measure(url: &str, bin: &PathBuf, referrals: u64) {
    let options = pg::fresh_database(url).await.expect("a bench database");
    let admin = sqlx::PgPool::connect_with(options.clone())
        .await
        .expect("a pool");
    let started = Instant::now();
    let n = referrals + 100;
    pg::insert_users(&admin, 1, n, t0()).await.expect("users");
    let per = referrals / 100;
    for owner in 1..=100 {
        let from = 101 + (owner - 1) * per;
        let to = if owner == 100 { n } else { from + per - 1 };
        pg::insert_activations(&admin, owner, from, to, t0())
            .await
            .expect("activations");
    }
    sqlx::query("VACUUM ANALYZE")
        .execute(&admin)
        .await
        .expect("analyze");
    admin.close().await;
    println!(
        "# {referrals} referrals bulk-inserted in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let name = options.get_database().expect("a database name").to_owned();
    let admin_phone = pg::phone(1).to_e164();
    let server = Server::start(bin, &url_of_database(url, &name), &admin_phone);
    let token = login(&reqwest::Client::new(), &server.base, &admin_phone)
        .await
        .unwrap_or_else(|e| panic!("the operator's log-in: {e}"))
        .access_token;
    let f = export(&server, &token).await;
    drop(server);
    assert_eq!(f.rows, referrals, "every referral exported once");
    println!(
        "{:>10} {:>8.2} {:>10.0} {:>8.1} {:>10} {:>10} {:>10} {:>10}",
        f.rows,
        f.seconds,
        f.rows as f64 / f.seconds,
        f.bytes as f64 / f.seconds / 1e6,
        f.rss_before,
        f.rss_max,
        f.hwm_before,
        f.hwm_after,
    );
    pg::drop_database(url, &options).await.expect("drop");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let big: u64 = args
        .next()
        .map_or(1_000_000, |a| a.parse().expect("a number of referrals"));
    let small: u64 = args
        .next()
        .map_or(10_000, |a| a.parse().expect("a number of referrals"));
    let Some(url) = pg::database_url("export-scale") else {
        return;
    };
    let bin = std::env::var_os("REFERRAL_SERVER_BIN").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/release/referral-server"
            ))
        },
        PathBuf::from,
    );
    assert!(
        bin.exists(),
        "{} is missing: cargo build --release -p referral-server, or set REFERRAL_SERVER_BIN",
        bin.display()
    );
    println!(
        "{:>10} {:>8} {:>10} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "rows", "seconds", "rows/s", "MB/s", "RSS0 KiB", "RSSmax KiB", "HWM0 KiB", "HWM1 KiB"
    );
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(async {
            for referrals in [small, big] {
                measure(&url, &bin, referrals).await;
            }
        });
}
