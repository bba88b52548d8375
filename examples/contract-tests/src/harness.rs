//! Spawning a server binary, talking to it over HTTP, and fresh PostgreSQL
//! databases.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use referral_server_common::Settings;
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::Connection as _;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::in_process::{AppFactory, PeerAddr, Transport};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// The JWT secret every spawned server gets (unless a case sets another), so
/// cases can forge tokens and two servers can share a store.
pub const SECRET: &str = "contract-suite-secret-0123456789abcdef";

/// The settings every server of the suite gets unless a case sets them:
/// no simulated SMS delay, the suite's JWT secret, and no per-client send
/// limit (every request of a case comes from one loopback address; the
/// cases of that limit set `REFERRAL_IP_MAX_SENDS_PER_HOUR` themselves).
const DEFAULTS: [(&str, &str); 3] = [
    ("REFERRAL_SMS_DELAY_MS", "0"),
    ("REFERRAL_JWT_SECRET", SECRET),
    ("REFERRAL_IP_MAX_SENDS_PER_HOUR", "0"),
];

/// The socket peer of in-process requests that name none: a loopback
/// client, as a spawned server sees the suite.
const LOOPBACK_PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40_000);

/// How long a server may take to print its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Which store the spawned servers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The in-memory store (no `DATABASE_URL`).
    Memory,
    /// PostgreSQL: each server gets a fresh database on `DATABASE_URL`.
    Postgres,
    /// PostgreSQL through a transaction-mode PgBouncer: each server gets a
    /// fresh database on `DATABASE_URL`, reached through the pooler at
    /// `REFERRAL_TEST_PGBOUNCER_URL` with `REFERRAL_DB_TRANSACTION_POOLER=1`,
    /// and migrated over the direct connection (`REFERRAL_DB_MIGRATION_URL`).
    PgBouncer,
}

/// What a case's servers are: processes of a binary, or apps in this
/// process.
#[derive(Clone)]
pub enum Target {
    /// Spawn this server binary.
    Binary(String),
    /// Build the app in process (see [`crate::in_process`]).
    InProcess(AppFactory),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Binary(bin) => f.debug_tuple("Binary").field(bin).finish(),
            Self::InProcess(_) => f.write_str("InProcess"),
        }
    }
}

impl From<&str> for Target {
    fn from(bin: &str) -> Self {
        Self::Binary(bin.to_owned())
    }
}

impl From<AppFactory> for Target {
    fn from(factory: AppFactory) -> Self {
        Self::InProcess(factory)
    }
}

/// What a case runs against: its servers' [`Target`] and a backend.
#[derive(Debug, Clone)]
pub struct Ctx {
    target: Target,
    backend: Backend,
    admin_url: Option<String>,
    /// The pooler in front of `admin_url`'s server ([`Backend::PgBouncer`]).
    pooler_url: Option<String>,
    /// Databases made for this case, dropped when it passes.
    made: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// Runs one case: builds a runtime, resolves the backend (skipping, or under
/// `CI` failing, when PostgreSQL is asked for without `DATABASE_URL`) and
/// drives the case to its end.
///
/// # Panics
/// When the case fails, or under `CI` without `DATABASE_URL` for PostgreSQL.
pub fn run<F, Fut>(target: impl Into<Target>, backend: Backend, name: &str, case: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let admin_url = match backend {
        Backend::Memory => None,
        Backend::Postgres | Backend::PgBouncer => match test_url("DATABASE_URL", name) {
            Some(url) => Some(url),
            None => return,
        },
    };
    let pooler_url = match backend {
        Backend::PgBouncer => match test_url("REFERRAL_TEST_PGBOUNCER_URL", name) {
            Some(url) => Some(url),
            None => return,
        },
        Backend::Memory | Backend::Postgres => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let ctx = Ctx {
        target: target.into(),
        backend,
        admin_url,
        pooler_url,
        made: std::sync::Arc::default(),
    };
    let cleanup = ctx.clone();
    runtime.block_on(case(ctx));
    // The case passed and its servers are gone: drop its databases (a failed
    // case keeps them for a look).
    let made = std::mem::take(&mut *cleanup.made.lock().unwrap_or_else(|e| e.into_inner()));
    runtime.block_on(async {
        for url in made {
            cleanup.drop_store(&url).await;
        }
    });
}

/// Whether `CI` is set (to anything but empty, `0` or `false`).
/// The URL in the environment variable `var`, which scripts/test.sh sets;
/// `None` (the case is skipped, with a message) without it.
///
/// # Panics
/// Under `CI` without it: the PostgreSQL cases never skip there.
fn test_url(var: &str, case: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                !under_ci(),
                "{var} is not set: the PostgreSQL contract cases cannot run under CI \
                 without it (scripts/test.sh starts a throwaway PostgreSQL and a PgBouncer)"
            );
            eprintln!("skipping {case}: {var} is not set");
            None
        }
    }
}

/// `base` (a PostgreSQL URL) naming the database `name` instead.
fn with_database(base: &str, name: &str) -> String {
    let mut url = url::Url::parse(base).expect("a PostgreSQL URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// The database a PostgreSQL URL names.
fn database_of(url: &str) -> String {
    let url = url::Url::parse(url).expect("a PostgreSQL URL");
    url.path().trim_start_matches('/').to_owned()
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

static NEXT_DB: AtomicU64 = AtomicU64::new(0);

impl Ctx {
    /// The backend in use.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A fresh store location: for PostgreSQL, the URL of a new empty
    /// database (behind PgBouncer, the pooler's URL of it); for memory,
    /// `None` (every server has its own store).
    pub async fn fresh_store(&self) -> Option<String> {
        let admin = self.admin_url.as_deref()?;
        let name = format!(
            "contract_{}_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::SeqCst),
            std::time::SystemTime::UNIX_EPOCH
                .elapsed()
                .map_or(0, |d| d.subsec_nanos())
        );
        let mut conn = sqlx::PgConnection::connect(admin)
            .await
            .expect("connect to DATABASE_URL");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE (the DATABASE_URL user needs CREATEDB)");
        let _ = conn.close().await;
        let url = with_database(admin, &name);
        self.made
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(url.clone());
        // Through a pooler, the servers reach the same database by its name.
        Some(match &self.pooler_url {
            Some(pooler) => with_database(pooler, &name),
            None => url,
        })
    }

    /// Drops a database made by [`Ctx::fresh_store`], closing its connections.
    pub async fn drop_store(&self, store_url: &str) {
        let Some(admin) = self.admin_url.as_deref() else {
            return;
        };
        let name = database_of(store_url);
        let mut conn = sqlx::PgConnection::connect(admin)
            .await
            .expect("connect to DATABASE_URL");
        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .expect("DROP DATABASE");
        let _ = conn.close().await;
    }

    /// A server on its own fresh store, with the suite's defaults
    /// (`REFERRAL_SMS_DELAY_MS=0`, the suite's JWT secret,
    /// `REFERRAL_IP_MAX_SENDS_PER_HOUR=0`) and `env` on top.
    pub async fn server(&self, env: &[(&str, &str)]) -> Server {
        let store = self.fresh_store().await;
        self.server_on(store.as_deref(), env).await
    }

    /// Starts the binary with `env` expecting it to refuse: asserts it exits
    /// without printing a `listening on` line; its exit code.
    ///
    /// # Panics
    /// When the server starts listening, or does not exit within 30 s.
    pub async fn start_fails(&self, env: &[(&str, &str)]) -> Option<i32> {
        self.start_fails_output(env).await.0
    }

    /// Like [`Ctx::start_fails`]; the exit code and what the server wrote
    /// to stderr (its logs, e.g. the reason it refused).
    ///
    /// # Panics
    /// When the server starts listening, or does not exit within 30 s.
    pub async fn start_fails_output(&self, env: &[(&str, &str)]) -> (Option<i32>, String) {
        let mut cmd = Command::new(self.bin());
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("REFERRAL_") || key == "DATABASE_URL" {
                cmd.env_remove(key);
            }
        }
        cmd.env("REFERRAL_LISTEN", "127.0.0.1:0")
            .env("REFERRAL_JWT_SECRET", SECRET)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("the server with {env:?} did not exit"))
            .expect("run the server");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !stdout.contains("listening on"),
            "the server with {env:?} started: {stdout}"
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The binary of a [`Target::Binary`] context.
    ///
    /// # Panics
    /// For an in-process context: the case needs a real process.
    fn bin(&self) -> &str {
        match &self.target {
            Target::Binary(bin) => bin,
            Target::InProcess(_) => panic!("this case needs a server process"),
        }
    }

    /// A server on the given store (`None`: memory), with the suite's
    /// defaults and `env` on top: a process, or an app in this process.
    /// Behind PgBouncer, `store` is the pooler's URL of the database and the
    /// server gets the pooler settings as well.
    pub async fn server_on(&self, store: Option<&str>, env: &[(&str, &str)]) -> Server {
        let direct = match (&self.admin_url, &self.pooler_url, store) {
            (Some(admin), Some(_), Some(store)) => Some(with_database(admin, &database_of(store))),
            _ => None,
        };
        let mut env = env.to_vec();
        if let Some(direct) = &direct {
            env.push(("REFERRAL_DB_TRANSACTION_POOLER", "1"));
            env.push(("REFERRAL_DB_MIGRATION_URL", direct));
        }
        match &self.target {
            Target::Binary(bin) => Server::spawn(bin, store, &env).await,
            Target::InProcess(factory) => Server::in_process(*factory, store, &env).await,
        }
    }

    /// Like [`Ctx::server_on`], but the server's stderr (its logs) is kept in
    /// the returned [`Logs`] instead of being dropped, e.g. to assert that no
    /// secret is ever logged. Set `RUST_LOG` in `env` for the level.
    pub async fn server_with_logs(
        &self,
        store: Option<&str>,
        env: &[(&str, &str)],
    ) -> (Server, Logs) {
        let logs = Logs::default();
        let server = Server::spawn_inner(self.bin(), store, env, Some(logs.clone())).await;
        (server, logs)
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("base", &self.base)
            .field("process", &self.child.as_ref().and_then(Child::id))
            .field("in_process", &self.app.is_some())
            .finish()
    }
}

/// The captured stderr of a server started with [`Ctx::server_with_logs`].
/// Cheap to clone; every clone sees the same bytes.
#[derive(Debug, Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    /// Everything the server wrote to stderr so far, lossily decoded.
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

/// A running server: a process (killed when dropped), or an app in this
/// process (dropped with it).
pub struct Server {
    child: Option<Child>,
    app: Option<Arc<dyn Transport>>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    client: reqwest::Client,
}

impl Server {
    /// Spawns `bin` on 127.0.0.1 port 0 and waits for its `listening on` line.
    ///
    /// # Panics
    /// When the server does not start.
    pub async fn spawn(bin: &str, store: Option<&str>, env: &[(&str, &str)]) -> Self {
        Self::spawn_inner(bin, store, env, None).await
    }

    async fn spawn_inner(
        bin: &str,
        store: Option<&str>,
        env: &[(&str, &str)],
        logs: Option<Logs>,
    ) -> Self {
        let mut cmd = Command::new(bin);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("REFERRAL_") || key == "DATABASE_URL" {
                cmd.env_remove(key);
            }
        }
        cmd.env("REFERRAL_LISTEN", "127.0.0.1:0")
            .envs(DEFAULTS)
            .env(
                "RUST_LOG",
                std::env::var("CONTRACT_SERVER_LOG").unwrap_or_else(|_| "warn".to_owned()),
            );
        if let Some(url) = store {
            cmd.env("DATABASE_URL", url);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if logs.is_some() {
                Stdio::piped()
            } else if std::env::var_os("CONTRACT_SERVER_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        if let (Some(logs), Some(mut stderr)) = (logs, child.stderr.take()) {
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt as _;
                let mut buf = [0u8; 8192];
                while let Ok(n) = stderr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    logs.0
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&buf[..n]);
                }
            });
        }
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(START_TIMEOUT, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{bin} printed no line within {START_TIMEOUT:?}"))
            .expect("read the server's stdout")
            .unwrap_or_else(|| panic!("{bin} exited before listening: {:?}", child.try_wait()));
        let base = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim()
            .to_owned();
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        assert!(!base.ends_with(":0"), "the real port is printed: {base}");
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        Self {
            child: Some(child),
            app: None,
            base,
            client,
        }
    }

    /// The app `factory` builds from the suite's defaults and `env` (as a
    /// process would read them from its environment), on `store`.
    ///
    /// # Panics
    /// When the settings are refused or the store cannot be opened.
    pub async fn in_process(
        factory: AppFactory,
        store: Option<&str>,
        env: &[(&str, &str)],
    ) -> Self {
        let mut pairs = DEFAULTS.to_vec();
        if let Some(url) = store {
            pairs.push(("DATABASE_URL", url));
        }
        pairs.extend(env.iter().copied().filter(|(k, _)| *k != "REFERRAL_LISTEN"));
        let settings = Settings::from_pairs(&pairs)
            .unwrap_or_else(|e| panic!("settings {pairs:?} refused: {e}"));
        let started = referral_server_common::start(&settings)
            .await
            .unwrap_or_else(|e| panic!("the app did not start: {e:?}"));
        Self {
            child: None,
            app: Some(factory(started.api, &settings)),
            base: "http://in-process".to_owned(),
            client: reqwest::Client::new(),
        }
    }

    /// The HTTP client bound to this server.
    #[must_use]
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The process id.
    ///
    /// # Panics
    /// For an app in this process.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .expect("a server process")
            .id()
            .unwrap_or(0)
    }

    /// Sends SIGTERM and waits (at most `within`) for the exit; the exit code.
    ///
    /// # Panics
    /// When the process does not exit in time.
    pub async fn terminate(mut self, within: Duration) -> Option<i32> {
        let pid = self.pid().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid}");
        let child = self.child.as_mut().expect("a server process");
        let exit = tokio::time::timeout(within, child.wait())
            .await
            .unwrap_or_else(|_| panic!("the server did not exit within {within:?} of SIGTERM"))
            .expect("wait for the server");
        exit.code()
    }

    /// A full URL for `path`.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        self.try_send(req).await.expect("the server answers")
    }

    /// Sends a request, returning the client's error instead of panicking
    /// (for answers a server may give while the body is still being sent,
    /// such as 413, after which it may close the connection first).
    ///
    /// # Errors
    /// The client's error when no answer was read.
    pub async fn try_send(&self, req: reqwest::RequestBuilder) -> Result<Resp, reqwest::Error> {
        self.try_send_from(LOOPBACK_PEER.ip(), req).await
    }

    /// Sends a request from `peer`: over a socket bound to `peer` for a
    /// process (so `peer` must be a loopback address, `127.x.y.z`), as the
    /// request's peer address for an app in this process. `req` must come
    /// from [`Server::client_from`]`(peer)`.
    async fn try_send_from(
        &self,
        peer: IpAddr,
        req: reqwest::RequestBuilder,
    ) -> Result<Resp, reqwest::Error> {
        let started = Instant::now();
        let Some(app) = &self.app else {
            let res = req.send().await?;
            return Ok(Resp::read(res, started.elapsed()).await);
        };
        let req = req.build()?;
        let target = req.url()[url::Position::BeforePath..url::Position::AfterQuery].to_owned();
        let body = req
            .body()
            .and_then(reqwest::Body::as_bytes)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let mut request = http::Request::builder()
            .method(req.method().clone())
            .uri(target)
            .extension(PeerAddr(SocketAddr::new(peer, LOOPBACK_PEER.port())));
        for (name, value) in req.headers() {
            request = request.header(name, value);
        }
        if !body.is_empty() || req.method() == http::Method::POST {
            request = request.header(http::header::CONTENT_LENGTH, body.len());
        }
        let response = app.call(request.body(body).expect("a request")).await;
        let (parts, body) = response.into_parts();
        Ok(Resp::from_parts(
            parts.status.as_u16(),
            &parts.headers,
            &body,
            started.elapsed(),
        ))
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.client.get(self.url(path))).await
    }

    /// `GET path` with a bearer token.
    pub async fn get_auth(&self, path: &str, token: &str) -> Resp {
        self.send(self.client.get(self.url(path)).bearer_auth(token))
            .await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(self.client.post(self.url(path)).json(body)).await
    }

    /// `POST path` with a JSON body and a bearer token.
    pub async fn post_auth(&self, path: &str, token: &str, body: &Value) -> Resp {
        self.send(
            self.client
                .post(self.url(path))
                .bearer_auth(token)
                .json(body),
        )
        .await
    }

    /// `POST /api/auth/code`.
    pub async fn request_code(&self, phone: &str) -> Resp {
        self.post("/api/auth/code", &json!({ "phone": phone }))
            .await
    }

    /// An HTTP client whose requests come from `peer` (a loopback address,
    /// `127.x.y.z`, for a server process; any address in process).
    ///
    /// # Panics
    /// When the client cannot be built.
    #[must_use]
    pub fn client_from(&self, peer: IpAddr) -> reqwest::Client {
        if self.app.is_some() {
            return self.client.clone();
        }
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .local_address(peer)
            .build()
            .expect("an HTTP client")
    }

    /// `POST /api/auth/code` from the socket peer `peer` (see
    /// [`Server::client_from`]), with `X-Forwarded-For: forwarded_for` when
    /// given.
    pub async fn request_code_from(
        &self,
        peer: IpAddr,
        forwarded_for: Option<&str>,
        phone: &str,
    ) -> Resp {
        let mut req = self
            .client_from(peer)
            .post(self.url("/api/auth/code"))
            .json(&json!({ "phone": phone }));
        if let Some(value) = forwarded_for {
            req = req.header("x-forwarded-for", value);
        }
        self.try_send_from(peer, req)
            .await
            .expect("the server answers")
    }

    /// `POST /api/auth/verify`.
    pub async fn verify(&self, phone: &str, code: &str) -> Resp {
        self.post("/api/auth/verify", &json!({ "phone": phone, "code": code }))
            .await
    }

    /// The latest code in this server's outbox for `phone`.
    ///
    /// # Panics
    /// When there is none.
    pub async fn outbox_code(&self, phone: &str) -> String {
        let r = self
            .get(&format!("/api/dev/sms?phone={}", enc(phone)))
            .await;
        assert_eq!(r.status, 200, "outbox for {phone}: {r:?}");
        r.body["code"].as_str().expect("code").to_owned()
    }

    /// Sends a code and returns it (from the outbox).
    pub async fn send_code(&self, phone: &str) -> String {
        let r = self.request_code(phone).await;
        assert_eq!(r.status, 202, "request code for {phone}: {r:?}");
        self.outbox_code(phone).await
    }

    /// Asserts `GET /health` answers 200 (`after`: what the server went
    /// through, for the message).
    ///
    /// # Panics
    /// When it does not.
    pub async fn assert_healthy(&self, after: &str) {
        let r = self.get("/health").await;
        assert_eq!(r.status, 200, "/health after {after}: {r:?}");
    }

    /// Asserts nothing was sent to `phone` (the dev outbox has no code for it).
    ///
    /// # Panics
    /// When something was.
    pub async fn assert_nothing_sent(&self, phone: &str) {
        self.get(&format!("/api/dev/sms?phone={}", enc(phone)))
            .await
            .assert_error(404, Some("not_found"));
    }

    /// Logs `phone` in; its token and profile.
    pub async fn login(&self, phone: &str) -> User {
        let code = self.send_code(phone).await;
        let r = self.verify(phone, &code).await;
        assert_eq!(r.status, 200, "verify {phone}: {r:?}");
        User::from_login(&r.body)
    }

    /// Logs in `n` users (phones `phone(first..first+n)`), a few at a time.
    pub async fn login_many(&self, first: u32, n: u32) -> Vec<User> {
        let mut users = Vec::with_capacity(n as usize);
        let phones: Vec<String> = (first..first + n).map(phone).collect();
        for chunk in phones.chunks(16) {
            let logins = chunk.iter().map(|p| self.login(p));
            users.extend(join_all(logins).await);
        }
        users
    }

    /// `POST /api/profile/invite`.
    pub async fn activate(&self, token: &str, code: &str) -> Resp {
        self.post_auth(
            "/api/profile/invite",
            token,
            &json!({ "invite_code": code }),
        )
        .await
    }

    /// `GET /api/profile`, asserting 200.
    pub async fn profile(&self, token: &str) -> Value {
        let r = self.get_auth("/api/profile", token).await;
        assert_eq!(r.status, 200, "profile: {r:?}");
        r.body
    }
}

/// A logged-in user.
#[derive(Debug, Clone)]
pub struct User {
    /// The access token.
    pub token: String,
    /// The id.
    pub id: String,
    /// The phone, E.164.
    pub phone: String,
    /// The user's own invite code.
    pub invite_code: String,
}

impl User {
    fn from_login(body: &Value) -> Self {
        let s = |v: &Value| v.as_str().expect("a string").to_owned();
        Self {
            token: s(&body["access_token"]),
            id: s(&body["profile"]["id"]),
            phone: s(&body["profile"]["phone"]),
            invite_code: s(&body["profile"]["invite_code"]),
        }
    }
}

/// An answer, read whole.
#[derive(Debug, Clone)]
pub struct Resp {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The `Retry-After`, if any.
    pub retry_after: Option<String>,
    /// The `Allow` header, if any.
    pub allow: Option<String>,
    /// Every header.
    pub headers: http::HeaderMap,
    /// The body as JSON (`Null` if it is not JSON).
    pub body: Value,
    /// The body as text.
    pub text: String,
    /// How long the answer took.
    pub elapsed: Duration,
}

impl Resp {
    async fn read(res: reqwest::Response, elapsed: Duration) -> Self {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.unwrap_or_default();
        Self::from_parts(status, &headers, &bytes, elapsed)
    }

    fn from_parts(status: u16, headers: &http::HeaderMap, bytes: &[u8], elapsed: Duration) -> Self {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type");
        let retry_after = header("retry-after");
        let allow = header("allow");
        let text = String::from_utf8_lossy(bytes).into_owned();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            content_type,
            retry_after,
            allow,
            headers: headers.clone(),
            body,
            text,
            elapsed,
        }
    }

    /// Asserts an error answer: this status, the JSON envelope, this code
    /// (`None`: any `snake_case` code), and on 429 a whole-seconds
    /// `Retry-After`. Returns the `Retry-After` seconds, if any.
    ///
    /// # Panics
    /// When the answer is not that error.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: Option<&str>) -> Option<u64> {
        assert_eq!(self.status, status, "{self:?}");
        assert!(
            self.content_type
                .as_deref()
                .is_some_and(|c| c.starts_with("application/json")),
            "error answers are JSON: {self:?}"
        );
        let got = self.body["error"]["code"].as_str().unwrap_or_else(|| {
            panic!("no error.code in {self:?}");
        });
        assert!(
            !got.is_empty()
                && got
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "snake_case code: {got:?}"
        );
        let message = self.body["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "a message: {self:?}");
        if let Some(code) = code {
            assert_eq!(got, code, "{self:?}");
        }
        let retry = self.retry_after.as_deref().map(|v| {
            v.parse::<u64>()
                .unwrap_or_else(|_| panic!("Retry-After in whole seconds: {v:?}"))
        });
        if status == 429 {
            let secs = retry.unwrap_or_else(|| panic!("429 without Retry-After: {self:?}"));
            assert!(secs >= 1, "Retry-After of at least 1 s: {self:?}");
        }
        retry
    }

    /// The error code.
    #[must_use]
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

/// The `i`-th test phone, E.164.
#[must_use]
pub fn phone(i: u32) -> String {
    format!("+7999{i:07}")
}

/// Percent-encodes a query value.
#[must_use]
pub fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Every future, run concurrently on the runtime, in order.
pub async fn join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future,
{
    let futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut pending: Vec<_> = futures.into_iter().enumerate().collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|(i, f)| match f.as_mut().poll(cx) {
            std::task::Poll::Ready(out) => {
                outputs[*i] = Some(out);
                false
            }
            std::task::Poll::Pending => true,
        });
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("ready")).collect()
}

/// A different code of the same length.
#[must_use]
pub fn wrong_code(code: &str) -> String {
    code.chars()
        .map(|c| match c {
            '9' => '0',
            c => char::from(u8::try_from(u32::from(c) + 1).unwrap_or(b'0')),
        })
        .collect()
}

/// An HS256 JWT signed with `secret`, with this header algorithm and claims
/// (for forged, expired and foreign tokens).
#[must_use]
pub fn jwt(secret: &[u8], alg: &str, claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({ "alg": alg, "typ": "JWT" }).to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    if alg == "none" {
        return format!("{signing_input}.");
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    mac.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

/// Seconds since the Unix epoch.
#[must_use]
pub fn unix_now() -> u64 {
    std::time::SystemTime::UNIX_EPOCH
        .elapsed()
        .map_or(0, |d| d.as_secs())
}

/// A TCP proxy in front of PostgreSQL, to take the store away from a running
/// server: [`PgProxy::cut`] drops every connection and refuses new ones.
#[derive(Debug)]
pub struct PgProxy {
    /// The database URL through the proxy.
    pub url: String,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl PgProxy {
    /// A proxy to the server of `store_url`, or `None` when that URL does not
    /// name a TCP host.
    pub async fn start(store_url: &str) -> Option<Self> {
        let mut url = url::Url::parse(store_url).ok()?;
        let host = url.host_str().filter(|h| !h.is_empty())?.to_owned();
        if url.query_pairs().any(|(k, _)| k == "host") {
            return None;
        }
        let upstream = format!("{host}:{}", url.port().unwrap_or(5432));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok()?;
        let port = listener.local_addr().ok()?.port();
        url.set_host(Some("127.0.0.1")).ok()?;
        url.set_port(Some(port)).ok()?;
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (cut, watch) = tokio::sync::watch::channel(false);
        let flag = std::sync::Arc::clone(&down);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if flag.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let upstream = upstream.clone();
                let mut watch = watch.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Some(Self {
            url: url.to_string(),
            down,
            cut,
            task,
        })
    }

    /// Drops every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        let _ = self.cut.send(true);
    }

    /// Ends a [`PgProxy::cut`]: new connections go through again (the ones
    /// dropped stay dropped), as when a network comes back.
    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
        let _ = self.cut.send(false);
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}
