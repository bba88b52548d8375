//! `referral-load`: drives a running referral server over HTTP on loopback
//! with N concurrent clients for D seconds, and a bare axum route started in
//! this process as the floor, in the same run.
//!
//! ```sh
//! referral-load --target http://127.0.0.1:8080 --scenario profile --clients 64 --duration 10
//! ```
//!
//! Scenarios:
//! - `profile`: `GET /api/profile` against `GET /bare/profile`, a route that
//!   answers the very bytes of a real profile answer (same size); rounds
//!   alternate floor and server, and the ratio of the median req/s is
//!   printed (target ≥ 0.70 on the memory store).
//! - `invite`: `POST /api/profile/invite`, each request a fresh user
//!   activating one of 100 owners' codes (users logged in first through the
//!   API and the dev outbox, so the server needs `REFERRAL_SMS_DELAY_MS=0`).
//!   Ends early when the prepared users run out.
//! - `code`: `POST /api/auth/code` with a new phone each request (so per-phone
//!   limits never answer), against `POST /bare/code`, a route that sleeps
//!   1–2 s like the simulated SMS; run the server with the default delay.
//!
//! Each client owns one keep-alive connection and sends its next request
//! when the previous answer arrived. Bounded: the target must be a loopback
//! address, clients ≤ 2000, duration ≤ 120 s, prepared users ≤ 200 000.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use referral_benches::api::{Login, login};
use serde_json::json;
use tokio::runtime::Runtime;

const MAX_CLIENTS: usize = 2000;
const MAX_SECS: u64 = 120;
const MAX_USERS: usize = 200_000;
/// Owners of the codes the `invite` scenario activates.
const OWNERS: usize = 100;

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(
    name = "referral-load",
    about = "Load a running referral server on loopback"
)]
struct Args {
    /// The server's base URL (loopback only), as printed on its
    /// `listening on` line.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    target: String,
    /// What to drive.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Concurrent clients (each one keep-alive connection), at most 2000.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds each measured phase runs, at most 120.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Rounds of (floor, server) for the scenarios with a floor; medians are
    /// printed.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Users logged in before an `invite` run (each activates once), at most
    /// 200 000.
    #[arg(long, default_value_t = 20_000)]
    users: usize,
    /// A label for the output lines (say `memory` or `postgres`).
    #[arg(long, default_value = "server")]
    label: String,
}

/// What to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// `GET /api/profile` against the bare profile route.
    Profile,
    /// `POST /api/profile/invite` with fresh users.
    Invite,
    /// `POST /api/auth/code` with new phones against the bare 1–2 s route.
    Code,
}

/// The requests one client sends.
#[derive(Clone)]
enum Work {
    /// GET with a bearer token, round-robin over the tokens.
    Get {
        url: String,
        tokens: Arc<Vec<String>>,
    },
    /// POST a new phone each time (`prefix`, then `offset` plus a counter).
    Code {
        url: String,
        prefix: u64,
        offset: u64,
    },
    /// Each request takes the next prepared invitee and activates an owner's
    /// code.
    Invite {
        url: String,
        invitees: Arc<Vec<String>>,
        codes: Arc<Vec<String>>,
    },
}

/// What one phase measured.
struct Phase {
    route: String,
    requests: u64,
    errors: Vec<(String, u64)>,
    elapsed: Duration,
    hist: Histogram<u64>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self, scenario: &str, target: &str, clients: usize) {
        let errors: u64 = self.errors.iter().map(|(_, n)| n).sum();
        let detail = if self.errors.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k}×{n}"))
                .collect();
            format!(" ({})", parts.join(", "))
        };
        println!(
            "{scenario:<8} {target:<9} {:<26} {clients:>7} {:>6.1} {:>9} {:>9.0} {:>8.2} {:>8.2} {errors:>7}{detail}",
            self.route,
            self.elapsed.as_secs_f64(),
            self.requests,
            self.rate(),
            self.hist.value_at_quantile(0.5) as f64 / 1000.0,
            self.hist.value_at_quantile(0.99) as f64 / 1000.0,
        );
    }
}

fn header_line() {
    println!(
        "{:<8} {:<9} {:<26} {:>7} {:>6} {:>9} {:>9} {:>8} {:>8} {:>7}",
        "scenario",
        "target",
        "route",
        "clients",
        "secs",
        "requests",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors"
    );
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// Runs `clients` clients doing `work` for `duration` (or until `invite`
/// runs out of users).
async fn drive(route: &str, work: Work, clients: usize, duration: Duration) -> Phase {
    let next = Arc::new(AtomicUsize::new(0));
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (work, next, counter) = (work.clone(), Arc::clone(&next), Arc::clone(&counter));
            tokio::spawn(async move {
                let http = client();
                let mut hist =
                    Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("bounds");
                let mut errors: Vec<(String, u64)> = Vec::new();
                let mut requests = 0_u64;
                let mut i = c;
                while Instant::now() < deadline {
                    let (req, expect) = match &work {
                        Work::Get { url, tokens } => {
                            let token = &tokens[i % tokens.len()];
                            i += clients;
                            (http.get(url).bearer_auth(token), StatusCode::OK)
                        }
                        Work::Code {
                            url,
                            prefix,
                            offset,
                        } => {
                            let n = offset + counter.fetch_add(1, Ordering::Relaxed);
                            let phone = format!("+7{prefix}{:08}", n % 100_000_000);
                            (
                                http.post(url).json(&json!({ "phone": phone })),
                                StatusCode::ACCEPTED,
                            )
                        }
                        Work::Invite {
                            url,
                            invitees,
                            codes,
                        } => {
                            let k = next.fetch_add(1, Ordering::Relaxed);
                            let Some(token) = invitees.get(k) else { break };
                            let code = &codes[k % codes.len()];
                            let body = json!({ "invite_code": code });
                            (
                                http.post(url).bearer_auth(token).json(&body),
                                StatusCode::OK,
                            )
                        }
                    };
                    let sent = Instant::now();
                    let outcome = match req.send().await {
                        Ok(resp) => {
                            let status = resp.status();
                            match resp.bytes().await {
                                Ok(_) if status == expect => None,
                                Ok(_) => Some(status.as_u16().to_string()),
                                Err(_) => Some("body".to_owned()),
                            }
                        }
                        Err(e) if e.is_timeout() => Some("timeout".to_owned()),
                        Err(_) => Some("io".to_owned()),
                    };
                    let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                    hist.saturating_record(micros.max(1));
                    requests += 1;
                    if let Some(kind) = outcome {
                        match errors.iter_mut().find(|(k, _)| *k == kind) {
                            Some((_, n)) => *n += 1,
                            None => errors.push((kind, 1)),
                        }
                    }
                }
                (requests, errors, hist)
            })
        })
        .collect();
    let mut phase = Phase {
        route: route.to_owned(),
        requests: 0,
        errors: Vec::new(),
        elapsed: Duration::ZERO,
        hist: Histogram::new_with_bounds(1, 120_000_000, 3).expect("bounds"),
    };
    for t in tasks {
        let (requests, errors, hist) = t.await.expect("a client panicked");
        phase.requests += requests;
        phase.hist.add(&hist).expect("same bounds");
        for (kind, n) in errors {
            match phase.errors.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, m)) => *m += n,
                None => phase.errors.push((kind, n)),
            }
        }
    }
    phase.elapsed = start.elapsed();
    phase
}

/// Logs `count` new users in, 64 at a time; their tokens and invite codes.
async fn login_many(base: &str, prefix: u64, count: usize) -> Vec<Login> {
    let started = Instant::now();
    // A run-specific block of phones, so runs against one database do not meet.
    let base_n = u64::try_from(
        std::time::SystemTime::UNIX_EPOCH
            .elapsed()
            .unwrap_or_default()
            .as_millis()
            % 90_000,
    )
    .unwrap_or(0)
        * 1000;
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..64.min(count))
        .map(|_| {
            let (next, base) = (Arc::clone(&next), base.to_owned());
            tokio::spawn(async move {
                let http = client();
                let mut out = Vec::new();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= count {
                        break;
                    }
                    let n = (base_n + k as u64) % 100_000_000;
                    let phone = format!("+7{prefix}{n:08}");
                    match login(&http, &base, &phone).await {
                        Ok(l) => out.push((k, l)),
                        Err(e) => panic!("setting up users: {e}"),
                    }
                }
                out
            })
        })
        .collect();
    let mut all = Vec::with_capacity(count);
    for t in tasks {
        all.extend(t.await.expect("a set-up client panicked"));
    }
    all.sort_by_key(|(k, _)| *k);
    println!(
        "# logged in {count} users through the API in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    all.into_iter().map(|(_, l)| l).collect()
}

/// Starts the floor: a bare axum server on 127.0.0.1:0 in its own runtime
/// (two workers, as the server's), answering `profile_body` on
/// `GET /bare/profile`, and 202 after 1–2 s on `POST /bare/code`.
fn start_bare(profile_body: Vec<u8>) -> (Runtime, SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let body = bytes_body(profile_body);
    let seed = Arc::new(AtomicU64::new(0x9E37_79B9_7F4A_7C15));
    let app = Router::new()
        .route(
            "/bare/profile",
            get(move || {
                let body = body.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        )],
                        body,
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/bare/code",
            post(move || {
                let seed = Arc::clone(&seed);
                async move {
                    // A uniform 1000–2000 ms, like REFERRAL_SMS_DELAY_MS's default.
                    let x = splitmix(seed.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed));
                    tokio::time::sleep(Duration::from_millis(1000 + x % 1001)).await;
                    (
                        StatusCode::ACCEPTED,
                        [(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        )],
                        r#"{"phone":"+79990000000","expires_in":300,"retry_after":60}"#,
                    )
                }
            }),
        );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the bare server");
    let addr = listener.local_addr().expect("an address");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking socket");
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        let _ = axum::serve(listener, app).await;
    });
    (rt, addr)
}

fn bytes_body(body: Vec<u8>) -> axum::body::Bytes {
    axum::body::Bytes::from(body)
}

fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        f64::midpoint(xs[n / 2 - 1], xs[n / 2])
    }
}

/// The base URL if it is plain HTTP to a loopback address.
fn loopback_base(target: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(target).map_err(|e| format!("--target {target:?}: {e}"))?;
    if url.scheme() != "http" {
        return Err("--target must be http://".to_owned());
    }
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(format!(
            "--target {target}: only loopback addresses are allowed"
        ));
    }
    Ok(target.trim_end_matches('/').to_owned())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let base = match loopback_base(&args.target) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("referral-load: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if args.clients == 0 || args.clients > MAX_CLIENTS {
        eprintln!("referral-load: --clients must be 1 to {MAX_CLIENTS}");
        return std::process::ExitCode::from(2);
    }
    if args.duration == 0 || args.duration > MAX_SECS {
        eprintln!("referral-load: --duration must be 1 to {MAX_SECS} seconds");
        return std::process::ExitCode::from(2);
    }
    if args.users == 0 || args.users > MAX_USERS || args.rounds == 0 || args.rounds > 10 {
        eprintln!("referral-load: --users must be 1 to {MAX_USERS}, --rounds 1 to 10");
        return std::process::ExitCode::from(2);
    }
    // The clients' runtime: two workers, like the server's on this machine.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let duration = Duration::from_secs(args.duration);
    let label = args.label.as_str();
    match args.scenario {
        Scenario::Profile => rt.block_on(async {
            let users = login_many(&base, 901, args.clients.clamp(1, 256)).await;
            let tokens: Arc<Vec<String>> =
                Arc::new(users.into_iter().map(|l| l.access_token).collect());
            // The floor answers the very bytes of a real profile answer.
            let body = client()
                .get(format!("{base}/api/profile"))
                .bearer_auth(&tokens[0])
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .expect("a profile")
                .bytes()
                .await
                .expect("a profile body")
                .to_vec();
            println!("# profile body: {} bytes", body.len());
            let (bare_rt, bare) = start_bare(body);
            header_line();
            let (mut floor, mut ours, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..args.rounds {
                let work = Work::Get {
                    url: format!("http://{bare}/bare/profile"),
                    tokens: Arc::clone(&tokens),
                };
                let f = drive("GET /bare/profile", work, args.clients, duration).await;
                f.print("profile", "bare", args.clients);
                let work = Work::Get {
                    url: format!("{base}/api/profile"),
                    tokens: Arc::clone(&tokens),
                };
                let s = drive("GET /api/profile", work, args.clients, duration).await;
                s.print("profile", label, args.clients);
                ratios.push(s.rate() / f.rate());
                floor.push(f.rate());
                ours.push(s.rate());
            }
            println!(
                "# profile {label}: median {:.0} req/s, bare median {:.0} req/s, median ratio {:.2} (target >= 0.70)",
                median(ours),
                median(floor),
                median(ratios)
            );
            bare_rt.shutdown_background();
        }),
        Scenario::Invite => rt.block_on(async {
            let users = login_many(&base, 902, args.users + OWNERS).await;
            let codes: Arc<Vec<String>> = Arc::new(
                users[..OWNERS]
                    .iter()
                    .map(|l| l.profile.invite_code.clone())
                    .collect(),
            );
            let invitees: Arc<Vec<String>> = Arc::new(
                users[OWNERS..]
                    .iter()
                    .map(|l| l.access_token.clone())
                    .collect(),
            );
            header_line();
            let work = Work::Invite {
                url: format!("{base}/api/profile/invite"),
                invitees,
                codes,
            };
            let s = drive("POST /api/profile/invite", work, args.clients, duration).await;
            s.print("invite", label, args.clients);
            if s.requests as usize >= args.users {
                println!("# invite {label}: the {} prepared users ran out before {} s", args.users, args.duration);
            }
        }),
        Scenario::Code => rt.block_on(async {
            let (bare_rt, bare) = start_bare(Vec::new());
            header_line();
            let prefix = 903;
            let (mut floor, mut ours) = (Vec::new(), Vec::new());
            for round in 0..args.rounds {
                let work = Work::Code {
                    url: format!("http://{bare}/bare/code"),
                    prefix,
                    offset: 0,
                };
                let f = drive("POST /bare/code", work, args.clients, duration).await;
                f.print("code", "bare", args.clients);
                // New phones each round and run: a time-based block of a
                // million, then the counter.
                let block = std::time::SystemTime::UNIX_EPOCH
                    .elapsed()
                    .unwrap_or_default()
                    .as_secs()
                    + round as u64;
                let work = Work::Code {
                    url: format!("{base}/api/auth/code"),
                    prefix,
                    offset: (block % 100) * 1_000_000,
                };
                let s = drive("POST /api/auth/code", work, args.clients, duration).await;
                s.print("code", label, args.clients);
                floor.push(f.rate());
                ours.push(s.rate());
            }
            println!(
                "# code {label}: median {:.0} req/s (target >= 530), bare 1-2 s route median {:.0} req/s",
                median(ours),
                median(floor)
            );
            bare_rt.shutdown_background();
        }),
    }
    std::process::ExitCode::SUCCESS
}
