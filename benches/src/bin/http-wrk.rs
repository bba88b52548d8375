//! `http-wrk`: the HTTP figures of PERFORMANCE.md from an independent client.
//!
//! ```sh
//! cargo build --release -p referral-server -p referral-server-actix -p referral-benches --bin http-wrk
//! target/release/http-wrk --rounds 3 --duration 5
//! ```
//!
//! Starts, each in its own process on 127.0.0.1:0 and on the memory store:
//! `referral-server` (axum), `referral-server-actix`, and two bare servers
//! (this binary again, `--serve-bare axum|actix`): one route per measured
//! path on plain `axum::serve` and on a plain actix-web `HttpServer` (the
//! same worker count as the servers), each answering the very bytes a real
//! server answered (same status, length and content type), with no
//! authentication, store or layer; and the same bare axum routes served as
//! `referral-server` serves its own (`--serve-bare axum-cores`: one
//! single-threaded runtime per core, connections handed out in turn), to
//! show what that runtime model gives a route without our work. Then,
//! through the real API (code, dev outbox, verify), it logs in an owner and
//! ten referees who activate the owner's code, and runs
//! `wrk -t1 -c<connections> -d<duration>` (Debian's `wrk`, an efficient C
//! client) against every target in turn, interleaved round by round (bare
//! axum, bare axum per core, axum server, bare actix, actix server, then
//! again), on:
//! - `GET /api/profile` as the owner (ten referrals in the answer);
//! - `GET /api/profile/referrals` as the owner (a page of ten);
//! - `POST /api/profile/invite` as a referee sending the code it already
//!   activated: API.md's safe retry, 200 with the referee's profile. An
//!   activation is a one-time write, so the retry is the repeatable request
//!   on this route: authentication, the JSON body, the store's activation
//!   rule (which finds the same code) and the profile of the answer.
//!
//! Prints every run (req/s, p50, p99, non-2xx, the load average before it)
//! and, per route and target, the median req/s with its ratio to the bare
//! route of the same framework and to bare axum. With `--harness`, also runs
//! this project's own client (`referral-load --scenario profile`, next to
//! this binary) against the axum server for comparison.
//!
//! With `--before DIR`, the build in DIR (its `referral-server`,
//! `referral-server-actix` and `http-wrk`, for its bare routes) runs in the
//! same rounds, each of its targets right after this build's: a change's
//! before and after measured in one interleaved run, under the same load.
//!
//! Loopback only, bounded (duration ≤ 60 s, rounds ≤ 10, connections ≤ 512);
//! every process it starts is killed when it ends.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use referral_benches::api::login;
use serde_json::json;

/// The servers' allocator, for the bare routes too (they run in this
/// binary): the ratio compares like with like.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MAX_SECS: u64 = 60;
const MAX_ROUNDS: usize = 10;
const MAX_CONNECTIONS: usize = 512;
/// Referees of the owner whose profile and page are read.
const REFEREES: usize = 10;

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(
    name = "http-wrk",
    about = "The servers against bare routes, measured with wrk on loopback"
)]
struct Args {
    /// Rounds of (bare axum, axum, bare actix, actix) per route.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds of each wrk run.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// wrk's connections (`-c`); one wrk thread (`-t1`).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Only these routes (default: all three).
    #[arg(long, value_enum)]
    route: Vec<RouteKind>,
    /// Also run `referral-load --scenario profile` against the axum server.
    #[arg(long)]
    harness: bool,
    /// Where `referral-server` and `referral-server-actix` are (default:
    /// this binary's directory).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Also measure the build in this directory (its `referral-server`,
    /// `referral-server-actix` and `http-wrk`, for its bare routes) in the
    /// same rounds, each target beside this build's: a before/after in one
    /// interleaved run.
    #[arg(long)]
    before: Option<PathBuf>,
    /// Internal: serve the bare routes on this framework.
    #[arg(long, value_enum, hide = true)]
    serve_bare: Option<Framework>,
    /// Internal: the directory of the bare routes' bodies.
    #[arg(long, hide = true)]
    bodies: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Framework {
    Axum,
    /// The bare axum routes served as `referral-server` serves its routes:
    /// one single-threaded runtime per core, connections handed out in
    /// turn (no header timer, connection limit or graceful shutdown).
    AxumCores,
    Actix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum RouteKind {
    Profile,
    Referrals,
    Invite,
}

impl RouteKind {
    const ALL: [Self; 3] = [Self::Profile, Self::Referrals, Self::Invite];

    fn path(self) -> &'static str {
        match self {
            Self::Profile => "/api/profile",
            Self::Referrals => "/api/profile/referrals",
            Self::Invite => "/api/profile/invite",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Profile => "GET /api/profile",
            Self::Referrals => "GET /api/profile/referrals",
            Self::Invite => "POST /api/profile/invite (retry)",
        }
    }

    /// The file of the body the bare route answers.
    fn file(self) -> &'static str {
        match self {
            Self::Profile => "profile.json",
            Self::Referrals => "referrals.json",
            Self::Invite => "invite.json",
        }
    }
}

// --- the bare servers ----------------------------------------------------------

fn read_bodies(dir: &Path) -> [(RouteKind, Vec<u8>); 3] {
    RouteKind::ALL.map(|r| {
        let body = std::fs::read(dir.join(r.file())).expect("a body file of the bare routes");
        (r, body)
    })
}

fn bare_axum_app(dir: &Path) -> axum::Router {
    use axum::body::Bytes;
    use axum::http::{HeaderValue, header};
    use axum::response::IntoResponse as _;
    use axum::routing::{get, post};

    let bodies = read_bodies(dir);
    let answer = |body: Bytes| {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response()
    };
    let mut app = axum::Router::new();
    for (route, body) in bodies {
        let body = Bytes::from(body);
        app = match route {
            RouteKind::Invite => app.route(
                route.path(),
                post(move |_request: Bytes| {
                    let body = body.clone();
                    async move { answer(body) }
                }),
            ),
            _ => app.route(
                route.path(),
                get(move || {
                    let body = body.clone();
                    async move { answer(body) }
                }),
            ),
        };
    }
    app
}

/// A listener on 127.0.0.1:0 for a bare axum server, its
/// `listening on http://ADDR` line written (what [`start`] waits for).
async fn bind_announced() -> tokio::net::TcpListener {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the bare axum server");
    println!(
        "listening on http://{}",
        listener.local_addr().expect("an address")
    );
    listener
}

fn serve_bare_axum(dir: &Path) {
    let app = bare_axum_app(dir);
    // A multi-thread runtime with one worker per core, as `#[tokio::main]`
    // gives the default of an axum app.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let listener = bind_announced().await;
        axum::serve(listener, app).await.expect("serve");
    });
}

/// The bare axum routes on one single-threaded runtime per core, as
/// `referral-server`'s accept loop (examples/axum-server/src/serve.rs)
/// serves its routes: what that accept loop gives a route without our work.
fn serve_bare_axum_cores(dir: &Path) {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;

    let app = bare_axum_app(dir);
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let mut senders = Vec::new();
    for _ in 0..workers {
        let (sender, mut accepted) = tokio::sync::mpsc::unbounded_channel::<std::net::TcpStream>();
        let app = app.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a worker runtime");
        std::thread::spawn(move || {
            rt.block_on(async move {
                let builder = hyper::server::conn::http1::Builder::new();
                while let Some(stream) = accepted.recv().await {
                    let stream = tokio::net::TcpStream::from_std(stream).expect("register");
                    let conn = builder.serve_connection(
                        TokioIo::new(stream),
                        TowerToHyperService::new(app.clone()),
                    );
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
            });
        });
        senders.push(sender);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let listener = bind_announced().await;
        for n in 0.. {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let stream = stream.into_std().expect("a std stream");
            let _ = senders[n % senders.len()].send(stream);
        }
    });
}

fn serve_bare_actix(dir: &Path) {
    use actix_web::web::{self, Bytes};
    use actix_web::{App, HttpResponse, HttpServer};

    let bodies = read_bodies(dir).map(|(route, body)| (route, Bytes::from(body)));
    // One worker per core, as referral-server-actix.
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            let mut app = App::new();
            for (route, body) in bodies.clone() {
                let handler = move || {
                    let body = body.clone();
                    async move {
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body(body)
                    }
                };
                app = match route {
                    RouteKind::Invite => app.route(
                        route.path(),
                        web::post().to({
                            let handler = handler.clone();
                            move |_request: Bytes| handler()
                        }),
                    ),
                    _ => app.route(route.path(), web::get().to(handler)),
                };
            }
            app
        })
        .workers(workers)
        .bind("127.0.0.1:0")
        .expect("bind the bare actix server");
        println!("listening on http://{}", server.addrs()[0]);
        server.run().await.expect("serve");
    });
}

// --- processes -----------------------------------------------------------------

/// A child process, killed when dropped.
struct Server {
    name: String,
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command` and reads its `listening on http://ADDR` line.
fn start(name: String, mut command: Command) -> Result<Server, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{name}: could not start {command:?}: {e}"))?;
    let stdout = child.stdout.take().expect("a piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent && let Some(addr) = line.strip_prefix("listening on http://") {
                let _ = tx.send(addr.trim().to_owned());
                sent = true;
            }
        }
    });
    let mut server = Server {
        name,
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| format!("{}: no `listening on` line within 60 s", server.name))?;
    server.addr = addr
        .parse()
        .map_err(|e| format!("{}: bad address {addr:?}: {e}", server.name))?;
    if !server.addr.ip().is_loopback() {
        return Err(format!("{}: not on loopback: {addr}", server.name));
    }
    eprintln!(
        "http-wrk: {} listening on {} (pid {})",
        server.name,
        server.addr,
        server.child.id()
    );
    Ok(server)
}

/// A referral server on the memory store, codes readable at the dev outbox,
/// no send delay or per-client send limit (every client is 127.0.0.1).
fn referral_server(name: String, bin: &Path) -> Result<Server, String> {
    let mut command = Command::new(bin);
    command
        .env_remove("DATABASE_URL")
        .env("REFERRAL_LISTEN", "127.0.0.1:0")
        .env(
            "REFERRAL_JWT_SECRET",
            "http-wrk-harness-secret-0123456789abcdef",
        )
        .env("REFERRAL_SMS_DELAY_MS", "0")
        .env("REFERRAL_DEV_OUTBOX", "1")
        .env("REFERRAL_IP_MAX_SENDS_PER_HOUR", "0")
        .env("RUST_LOG", "warn");
    start(name, command)
}

/// The requests of one server: tokens and the bodies it answered.
struct World {
    owner_token: String,
    referee_token: String,
    invite_body: String,
    answers: BTreeMap<RouteKind, Vec<u8>>,
}

async fn set_up(base: &str) -> Result<World, String> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let owner = login(&http, base, "+79000000000").await?;
    let invite_body = json!({ "invite_code": owner.profile.invite_code }).to_string();
    let mut referee_token = String::new();
    for n in 1..=REFEREES {
        let referee = login(&http, base, &format!("+790000000{n:02}")).await?;
        let status = http
            .post(format!("{base}/api/profile/invite"))
            .bearer_auth(&referee.access_token)
            .header("content-type", "application/json")
            .body(invite_body.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?
            .status();
        if status != reqwest::StatusCode::OK {
            return Err(format!("activation: {status}"));
        }
        referee_token = referee.access_token;
    }
    let mut answers = BTreeMap::new();
    for route in RouteKind::ALL {
        let request = match route {
            RouteKind::Invite => http
                .post(format!("{base}{}", route.path()))
                .bearer_auth(&referee_token)
                .header("content-type", "application/json")
                .body(invite_body.clone()),
            _ => http
                .get(format!("{base}{}", route.path()))
                .bearer_auth(&owner.access_token),
        };
        let response = request.send().await.map_err(|e| e.to_string())?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(format!("{}: {}", route.label(), response.status()));
        }
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        answers.insert(route, body.to_vec());
    }
    Ok(World {
        owner_token: owner.access_token,
        referee_token,
        invite_body,
        answers,
    })
}

// --- wrk -----------------------------------------------------------------------

/// What one wrk run measured.
#[derive(Debug, Clone)]
struct Run {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
    socket_errors: String,
    load: String,
    /// Requests wrk completed.
    requests: u64,
    /// The server process's CPU time (user + system) per request, µs.
    cpu_us: f64,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

/// The CPU time (user + system, all threads) process `pid` has used, in
/// seconds (`/proc/PID/stat`, clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // The fields after the command name (which may hold spaces).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => f64::NAN,
    }
}

/// `12.5us`, `1.20ms`, `2.00s` as milliseconds.
fn millis(text: &str) -> f64 {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (text, f64::NAN)
    };
    number.parse::<f64>().map_or(f64::NAN, |n| n * factor)
}

fn parse_wrk(output: &str, load: String) -> Result<Run, String> {
    let mut run = Run {
        rate: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        non_2xx: 0,
        socket_errors: String::new(),
        load,
        requests: 0,
        cpu_us: f64::NAN,
    };
    for line in output.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            run.rate = rest.trim().parse().unwrap_or(f64::NAN);
        } else if let Some(rest) = line.strip_prefix("50%") {
            run.p50_ms = millis(rest.trim());
        } else if let Some(rest) = line.strip_prefix("99%") {
            run.p99_ms = millis(rest.trim());
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            run.non_2xx = rest.trim().parse().unwrap_or(u64::MAX);
        } else if let Some((n, rest)) = line.split_once(" requests in ")
            && rest.ends_with("read")
        {
            run.requests = n.trim().parse().unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            run.socket_errors = rest.trim().to_owned();
        }
    }
    if run.rate.is_nan() {
        return Err(format!("no Requests/sec in wrk's output:\n{output}"));
    }
    Ok(run)
}

fn wrk(
    dir: &Path,
    pid: u32,
    url: &str,
    route: RouteKind,
    world: &World,
    connections: usize,
    secs: u64,
) -> Result<Run, String> {
    let mut command = Command::new("wrk");
    command
        .arg("-t1")
        .arg(format!("-c{connections}"))
        .arg(format!("-d{secs}s"))
        .arg("--latency")
        .arg("--timeout")
        .arg("10s");
    match route {
        RouteKind::Invite => {
            // POST needs a script: method, body and headers.
            let script = dir.join("invite.lua");
            let lua = format!(
                "wrk.method = \"POST\"\nwrk.body = '{}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer {}\"\n",
                world.invite_body, world.referee_token
            );
            std::fs::write(&script, lua).map_err(|e| e.to_string())?;
            command.arg("-s").arg(&script);
        }
        _ => {
            command
                .arg("-H")
                .arg(format!("Authorization: Bearer {}", world.owner_token));
        }
    }
    command.arg(url);
    let load = load_average();
    let cpu_before = cpu_seconds(pid);
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run wrk (apt-get install wrk): {e}"))?;
    let cpu = cpu_seconds(pid) - cpu_before;
    if !output.status.success() {
        return Err(format!(
            "wrk failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let mut run = parse_wrk(&String::from_utf8_lossy(&output.stdout), load)?;
    if run.requests > 0 {
        run.cpu_us = cpu * 1e6 / run.requests as f64;
    }
    Ok(run)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => xs[n / 2],
        _ => f64::midpoint(xs[n / 2 - 1], xs[n / 2]),
    }
}

// --- main ----------------------------------------------------------------------

fn run(args: &Args) -> Result<(), String> {
    if args.duration == 0 || args.duration > MAX_SECS {
        return Err(format!("--duration must be 1 to {MAX_SECS}"));
    }
    if args.rounds == 0 || args.rounds > MAX_ROUNDS {
        return Err(format!("--rounds must be 1 to {MAX_ROUNDS}"));
    }
    if args.connections == 0 || args.connections > MAX_CONNECTIONS {
        return Err(format!("--connections must be 1 to {MAX_CONNECTIONS}"));
    }
    let routes: Vec<RouteKind> = if args.route.is_empty() {
        RouteKind::ALL.to_vec()
    } else {
        let mut r = args.route.clone();
        r.sort();
        r.dedup();
        r
    };
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => exe.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let dir = std::env::temp_dir().join(format!("http-wrk.{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let result = measure(args, &routes, &exe, &bin_dir, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// One measured target: a server process, the world its requests use, and
/// the bare route of the same framework and build it is compared with.
struct Target {
    label: String,
    server: Server,
    /// Index into the worlds (`None`: a bare route, which answers any
    /// token: it uses the first world's).
    world: Option<usize>,
    /// Index of the bare route of the same framework and build.
    own_bare: usize,
}

/// The targets of one build (this one, or `--before`'s), in round order:
/// bare axum, axum server, bare actix, actix server. Starts the servers,
/// logs their users in and writes the bodies of the bare routes (the axum
/// server's, the first time).
fn start_build(
    suffix: &str,
    exe: &Path,
    bin_dir: &Path,
    dir: &Path,
    rt: &tokio::runtime::Runtime,
    targets: &mut Vec<Target>,
    worlds: &mut Vec<World>,
) -> Result<(), String> {
    let name = |base: &str| format!("{base}{suffix}");
    let axum = referral_server(name("axum"), &bin_dir.join("referral-server"))?;
    let actix = referral_server(name("actix"), &bin_dir.join("referral-server-actix"))?;
    let mut server_worlds = Vec::new();
    for server in [&axum, &actix] {
        let world = rt.block_on(set_up(&format!("http://{}", server.addr)))?;
        worlds.push(world);
        server_worlds.push(worlds.len() - 1);
    }
    if suffix.is_empty() {
        // The bare routes answer the axum server's bytes (the actix
        // server's are as long: the same phones, codes and times differ
        // only in value).
        for route in RouteKind::ALL {
            let ours = &worlds[server_worlds[0]].answers[&route];
            let theirs = &worlds[server_worlds[1]].answers[&route];
            println!(
                "# {}: {} bytes (actix server: {} bytes)",
                route.label(),
                ours.len(),
                theirs.len()
            );
            std::fs::write(dir.join(route.file()), ours).map_err(|e| e.to_string())?;
        }
    }
    let bare = |framework: &'static str| {
        let mut command = Command::new(exe);
        command
            .arg("--serve-bare")
            .arg(framework)
            .arg("--bodies")
            .arg(dir);
        command
    };
    let bare_axum = start(name("bare-axum"), bare("axum"))?;
    let bare_actix = start(name("bare-actix"), bare("actix"))?;
    let first = targets.len();
    for (server, world, own_bare) in [
        (bare_axum, None, first),
        (axum, Some(server_worlds[0]), first),
        (bare_actix, None, first + 2),
        (actix, Some(server_worlds[1]), first + 2),
    ] {
        targets.push(Target {
            label: server.name.clone(),
            server,
            world,
            own_bare,
        });
    }
    if suffix.is_empty() {
        // This build only (an older http-wrk has no such target): the bare
        // routes on referral-server's runtime model, compared with bare axum.
        let server = start(name("bare-axum-cores"), bare("axum-cores"))?;
        targets.push(Target {
            label: server.name.clone(),
            server,
            world: None,
            own_bare: first,
        });
    }
    Ok(())
}

fn measure(
    args: &Args,
    routes: &[RouteKind],
    exe: &Path,
    bin_dir: &Path,
    dir: &Path,
) -> Result<(), String> {
    let started = Instant::now();
    println!(
        "# http-wrk: {} cores, load {} at start; wrk -t1 -c{} -d{}s, {} rounds",
        std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get),
        load_average(),
        args.connections,
        args.duration,
        args.rounds
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut targets = Vec::new();
    let mut worlds = Vec::new();
    start_build("", exe, bin_dir, dir, &rt, &mut targets, &mut worlds)?;
    if let Some(before) = &args.before {
        println!(
            "# `@before`: the build in {} (its servers and its bare routes)",
            before.display()
        );
        start_build(
            "@before",
            &before.join("http-wrk"),
            before,
            dir,
            &rt,
            &mut targets,
            &mut worlds,
        )?;
    }
    // Round order: each framework's targets of both builds side by side
    // (bare axum, bare axum on one runtime per core, axum, bare axum@before,
    // axum@before, bare actix, …). This build's targets are 0-4 (bare axum,
    // axum, bare actix, actix, bare axum per core), the other build's 5-8.
    let order: Vec<usize> = if args.before.is_some() {
        vec![0, 4, 1, 5, 6, 2, 3, 7, 8]
    } else {
        vec![0, 4, 1, 2, 3]
    };
    let axum_server = targets[1].server.addr;
    println!(
        "{:<34} {:>5} {:<17} {:>9} {:>8} {:>8} {:>7} {:>7}  load before",
        "route", "round", "target", "req/s", "p50 ms", "p99 ms", "non-2xx", "CPU µs"
    );
    let mut all: BTreeMap<(RouteKind, usize), Vec<Run>> = BTreeMap::new();
    for &route in routes {
        for round in 1..=args.rounds {
            for &t in &order {
                let target = &targets[t];
                let url = format!("http://{}{}", target.server.addr, route.path());
                let run = wrk(
                    dir,
                    target.server.child.id(),
                    &url,
                    route,
                    &worlds[target.world.unwrap_or(0)],
                    args.connections,
                    args.duration,
                )?;
                let errors = if run.socket_errors.is_empty() {
                    String::new()
                } else {
                    format!("  socket errors: {}", run.socket_errors)
                };
                println!(
                    "{:<34} {round:>5} {:<17} {:>9.0} {:>8.2} {:>8.2} {:>7} {:>7.1}  {}{errors}",
                    route.label(),
                    target.label,
                    run.rate,
                    run.p50_ms,
                    run.p99_ms,
                    run.non_2xx,
                    run.cpu_us,
                    run.load
                );
                all.entry((route, t)).or_default().push(run);
            }
        }
    }
    println!();
    println!(
        "{:<34} {:<17} {:>9} {:>17} {:>10} {:>10} {:>7} {:>9}  per-round ratios to own bare",
        "route", "target", "median", "min-max", "/own bare", "/bare axum", "CPU µs", "CPU ratio"
    );
    for &route in routes {
        let rates = |t: usize| -> Vec<f64> { all[&(route, t)].iter().map(|r| r.rate).collect() };
        let cpu = |t: usize| -> f64 { median(all[&(route, t)].iter().map(|r| r.cpu_us).collect()) };
        let bare_axum_median = median(rates(0));
        for &t in &order {
            let own_bare = targets[t].own_bare;
            let xs = rates(t);
            let own = rates(own_bare);
            let m = median(xs.clone());
            let per_round: Vec<String> = xs
                .iter()
                .zip(&own)
                .map(|(x, b)| format!("{:.2}", x / b))
                .collect();
            let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = xs.iter().copied().fold(0.0, f64::max);
            println!(
                "{:<34} {:<17} {m:>9.0} {:>17} {:>10.2} {:>10.2} {:>7.1} {:>9.2}  {}",
                route.label(),
                targets[t].label,
                format!("{lo:.0}-{hi:.0}"),
                m / median(own),
                m / bare_axum_median,
                cpu(t),
                cpu(own_bare) / cpu(t),
                per_round.join(" ")
            );
        }
    }
    if args.harness {
        let load_bin = bin_dir.join("referral-load");
        println!();
        println!(
            "# the project's own client (referral-load) on the axum server, load {}:",
            load_average()
        );
        let status = Command::new(&load_bin)
            .arg("--target")
            .arg(format!("http://{axum_server}"))
            .arg("--scenario")
            .arg("profile")
            .arg("--clients")
            .arg(args.connections.to_string())
            .arg("--duration")
            .arg(args.duration.to_string())
            .arg("--rounds")
            .arg(args.rounds.to_string())
            .arg("--label")
            .arg("axum")
            .status()
            .map_err(|e| format!("could not run {}: {e}", load_bin.display()))?;
        if !status.success() {
            return Err(format!("referral-load: {status}"));
        }
    }
    println!(
        "# done in {:.0} s, load {} at the end",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    drop(targets);
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(framework) = args.serve_bare {
        let Some(dir) = &args.bodies else {
            eprintln!("http-wrk: --serve-bare needs --bodies");
            return ExitCode::from(2);
        };
        match framework {
            Framework::Axum => serve_bare_axum(dir),
            Framework::AxumCores => serve_bare_axum_cores(dir),
            Framework::Actix => serve_bare_actix(dir),
        }
        return ExitCode::SUCCESS;
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http-wrk: {e}");
            ExitCode::FAILURE
        }
    }
}
