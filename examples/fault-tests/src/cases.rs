//! The fault cases. Each takes an [`Fx`] and panics on failure; the
//! [`fault_tests!`](crate::fault_tests) macro runs each as its own test.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use referral_contract_tests::harness::{PgProxy, Resp, join_all, phone};
use referral_contract_tests::{Backend, Server};
use referral_sqlx::PgStoreOptions;
use serde_json::{Value, json};
use sqlx::Connection as _;
use tokio::io::AsyncWriteExt as _;

use crate::Fx;
use crate::cluster::PgCluster;
use crate::net::{self, Ending};

/// The request timeout the outage cases give their servers.
const REQUEST_TIMEOUT_SECS: u64 = 5;

/// The longest any answer may take in an outage: the request timeout and
/// a margin for a loaded machine.
const ANSWER_WITHIN: Duration = Duration::from_secs(REQUEST_TIMEOUT_SECS + 3);

/// Settings for the outage cases: a short request timeout, no cooldown (the
/// stream logs many phones in), the contract suite's other defaults.
const OUTAGE_ENV: &[(&str, &str)] = &[
    ("REFERRAL_REQUEST_TIMEOUT_SECS", "5"),
    ("REFERRAL_OTP_RESEND_COOLDOWN_SECS", "0"),
];

// ---------------------------------------------------------------- the SMS sender

/// An SMS sender slower than `REFERRAL_SMS_TIMEOUT_MS`: 503
/// `sms_unavailable` in time, nothing charged (immediate retries are not
/// 429, past the hourly cap too), no code left that verifies (all 10 000
/// four-digit codes are tried), no user created.
pub async fn sms_sender_hangs(fx: Fx) {
    let store = fx.ctx.fresh_store().await;
    let s = fx
        .ctx
        .server_on(
            store.as_deref(),
            &[
                ("REFERRAL_SMS_DELAY_MS", "3000"),
                ("REFERRAL_SMS_TIMEOUT_MS", "300"),
                // Guessing every code must not burn it or lock the phone.
                ("REFERRAL_OTP_MAX_ATTEMPTS", "1000000"),
                ("REFERRAL_OTP_MAX_FAILURES_PER_DAY", "1000000"),
            ],
        )
        .await;
    let p = phone(1);
    // The default cap is 5 sends per hour and a 60 s cooldown: a 6th charged
    // send, or any second one, would be 429.
    for _ in 0..6 {
        let r = s.request_code(&p).await;
        r.assert_error(503, Some("sms_unavailable"));
        assert!(r.elapsed < Duration::from_millis(2000), "{:?}", r.elapsed);
    }
    let hits = codes_that_verify(&s, &p).await;
    assert!(
        hits.is_empty(),
        "a code whose SMS failed still logs in: {hits:?}"
    );
    if let Some(store) = store {
        // A server with a working sender on the same store: the phone may
        // ask at once, and its first login creates the user.
        let ok = fx.ctx.server_on(Some(&store), &[]).await;
        let code = ok.send_code(&p).await;
        let r = ok.verify(&p, &code).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.body["new_user"], true,
            "no user was created before: {r:?}"
        );
    }
}

/// The webhook provider pointed at a gateway that hangs, then fails, then
/// recovers: while it hangs or fails, the code route answers 503
/// `sms_unavailable` within the SMS timeout and the code the gateway saw
/// does not log in (nothing is charged either: the same phones may ask
/// again at once); once it recovers, codes are sent and log in.
pub async fn sms_webhook_hangs_fails_recovers(fx: Fx) {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let gateway = MockServer::start().await;
    let store = fx.ctx.fresh_store().await;
    let mut env = referral_contract_tests::cases::webhook_env(&gateway.uri());
    env.push(("REFERRAL_SMS_TIMEOUT_MS", "1000".to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = fx.ctx.server_on(store.as_deref(), &env).await;

    // It hangs: every request times out.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&gateway)
        .await;
    let hung = phone(1);
    let r = s.request_code(&hung).await;
    r.assert_error(503, Some("sms_unavailable"));
    assert!(r.elapsed < Duration::from_millis(2500), "{:?}", r.elapsed);
    let hung_code = referral_contract_tests::cases::gateway_code(&gateway, &hung).await;
    s.verify(&hung, &hung_code)
        .await
        .assert_error(401, Some("otp_invalid"));

    // It fails: 500s, retried with one Idempotency-Key, then given up.
    gateway.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&gateway)
        .await;
    let failed = phone(2);
    let r = s.request_code(&failed).await;
    r.assert_error(503, Some("sms_unavailable"));
    assert!(r.elapsed < Duration::from_millis(2500), "{:?}", r.elapsed);
    let requests = gateway.received_requests().await.unwrap_or_default();
    assert!(requests.len() >= 2, "a 500 is retried: {}", requests.len());
    let keys: HashSet<_> = requests
        .iter()
        .map(|r| r.headers.get("idempotency-key").cloned())
        .collect();
    assert_eq!(keys.len(), 1, "one send, one idempotency key: {keys:?}");
    let failed_code = referral_contract_tests::cases::gateway_code(&gateway, &failed).await;
    s.verify(&failed, &failed_code)
        .await
        .assert_error(401, Some("otp_invalid"));

    // It recovers: the same phones may ask at once (nothing was charged).
    gateway.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&gateway)
        .await;
    for p in [&hung, &failed, &phone(3)] {
        let r = s.request_code(p).await;
        assert_eq!(r.status, 202, "{r:?}");
        let code = referral_contract_tests::cases::gateway_code(&gateway, p).await;
        let r = s.verify(p, &code).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
}

/// Every four-digit code that logs `phone` in (each tried once, 50 at a
/// time); every other guess must be 401.
async fn codes_that_verify(s: &Server, phone: &str) -> Vec<String> {
    let all: Vec<String> = (0..10_000).map(|n| format!("{n:04}")).collect();
    let mut hits = Vec::new();
    for chunk in all.chunks(50) {
        let answers = join_all(chunk.iter().map(|code| s.verify(phone, code))).await;
        for (code, r) in chunk.iter().zip(answers) {
            match r.status {
                200 => hits.push(code.clone()),
                401 => {}
                _ => panic!("verify {code}: {r:?}"),
            }
        }
    }
    hits
}

// ---------------------------------------------------------------- slow clients

/// A client that sends half a request's headers and stalls is disconnected
/// (or answered 408) within `REFERRAL_HEADER_TIMEOUT_SECS`; so is one that
/// connects and sends nothing. The server keeps serving.
pub async fn stalled_headers_disconnected(fx: Fx) {
    let s = fx
        .ctx
        .server(&[("REFERRAL_HEADER_TIMEOUT_SECS", "1")])
        .await;
    let half = b"POST /api/auth/code HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl";
    let mut stalled = net::start_request(&s.base, half).await;
    let mut silent = net::start_request(&s.base, b"").await;
    let ((a, a_took), (b, b_took)) = tokio::join!(
        net::read_to_end(&mut stalled, Duration::from_secs(6)),
        net::read_to_end(&mut silent, Duration::from_secs(6)),
    );
    for (ending, took) in [(a, a_took), (b, b_took)] {
        assert!(
            matches!(ending, Ending::Closed | Ending::Answered(408, _)),
            "a stalled client is disconnected: {ending:?} after {took:?}"
        );
        assert!(took < Duration::from_secs(4), "{took:?}");
    }
    assert_eq!(s.get("/health").await.status, 200);
}

/// A client that sends the headers and half the body, then stalls, is
/// answered 503 (or 408, or disconnected) within the request timeout,
/// never 500 and never left hanging.
pub async fn stalled_body_times_out(fx: Fx) {
    let s = fx
        .ctx
        .server(&[("REFERRAL_REQUEST_TIMEOUT_SECS", "1")])
        .await;
    let body = json!({ "phone": phone(1) }).to_string();
    let head = net::post_head("/api/auth/code", body.len());
    let half = format!("{head}{}", &body[..body.len() / 2]);
    let mut tcp = net::start_request(&s.base, half.as_bytes()).await;
    let (ending, took) = net::read_to_end(&mut tcp, Duration::from_secs(8)).await;
    assert!(
        matches!(ending, Ending::Closed | Ending::Answered(503 | 408, _)),
        "{ending:?} after {took:?}"
    );
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(s.get("/health").await.status, 200);
}

/// Up to 2000 idle connections (at most half this test process's descriptor
/// limit) against a server with a smaller one (`ulimit -n 256`,
/// `REFERRAL_MAX_CONNECTIONS=100`, `REFERRAL_HEADER_TIMEOUT_SECS=1`): the
/// server stays up and a fresh client gets `/health` answered within a few
/// seconds, flood or not.
pub async fn idle_connection_flood(fx: Fx) {
    let dir = std::env::temp_dir().join(format!(
        "referral-faults-flood-{}-{}",
        std::process::id(),
        std::time::SystemTime::UNIX_EPOCH
            .elapsed()
            .map_or(0, |d| d.subsec_nanos())
    ));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let wrapper = dir.join("limited-server");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nulimit -n 256 || exit 1\nexec '{}' \"$@\"\n",
            fx.bin
        ),
    )
    .expect("write the wrapper");
    std::process::Command::new("chmod")
        .arg("755")
        .arg(&wrapper)
        .status()
        .expect("chmod");
    let store = fx.ctx.fresh_store().await;
    let s = Server::spawn(
        wrapper.to_str().expect("a UTF-8 path"),
        store.as_deref(),
        &[
            ("REFERRAL_MAX_CONNECTIONS", "100"),
            ("REFERRAL_HEADER_TIMEOUT_SECS", "1"),
        ],
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(s.get("/health").await.status, 200);

    let addr = net::addr(&s.base);
    // Other tests run in this process too: leave them descriptors.
    let want = (own_fd_limit() / 2).min(2000);
    let mut flood = Vec::new();
    for _ in 0..want.div_ceil(50) {
        let batch = join_all((0..50).map(|_| {
            let addr = addr.clone();
            async move {
                tokio::time::timeout(
                    Duration::from_millis(500),
                    tokio::net::TcpStream::connect(addr),
                )
                .await
                .ok()
                .and_then(Result::ok)
            }
        }))
        .await;
        flood.extend(batch.into_iter().flatten());
    }
    assert!(
        flood.len() > 256,
        "the flood opened {} connections",
        flood.len()
    );
    // A fresh client, a fresh connection per try.
    let started = Instant::now();
    let mut last;
    let answered = loop {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .expect("a client");
        match client.get(s.url("/health")).send().await {
            Ok(r) if r.status() == 200 => break started.elapsed(),
            Ok(r) => last = format!("{}", r.status()),
            Err(e) => last = e.to_string(),
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "/health unanswered under a flood of {} idle connections: {last}",
            flood.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "{} idle connections: /health answered after {answered:?}",
        flood.len()
    );
    drop(flood);
    assert_eq!(s.get("/health").await.status, 200);
    assert_eq!(
        s.request_code(&phone(1)).await.status,
        202,
        "the server still works"
    );
}

/// `REFERRAL_MAX_CONNECTIONS` is a bound on the connections served at once:
/// that many keep-alive connections are each served a request; one more,
/// while they stay open, gets no answer (it waits in the kernel's backlog);
/// once one held connection closes it is answered, and the held ones are
/// still served. The limit is 4 rounded up to a multiple of this machine's
/// cores: both servers run one worker per core and `referral-server-actix`
/// gives each worker an equal share (`max_connections` is per worker in
/// actix-web), so with a multiple the bound is exact for both.
pub async fn connection_limit_holds(fx: Fx) {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let limit = 4_usize.div_ceil(cores) * cores;
    let s = fx
        .ctx
        .server(&[
            ("REFERRAL_MAX_CONNECTIONS", &limit.to_string()),
            // Idle held connections must outlive the case.
            ("REFERRAL_HEADER_TIMEOUT_SECS", "120"),
        ])
        .await;
    let mut held = Vec::new();
    for n in 1..=limit {
        let mut tcp = net::start_request(&s.base, net::get_keep_alive("/health").as_bytes()).await;
        let ending = net::read_answer(&mut tcp, Duration::from_secs(10)).await;
        assert!(
            matches!(ending, Ending::Answered(200, _)),
            "connection {n} of the limit of {limit} is served: {ending:?}"
        );
        held.push(tcp);
    }
    let mut waiting = net::start_request(&s.base, net::get_close("/health").as_bytes()).await;
    // No timing: a slow answer cannot fail this, a hung one is the point.
    let (ending, _) = net::read_to_end(&mut waiting, Duration::from_millis(400)).await;
    assert_eq!(
        ending,
        Ending::Hung,
        "connection {} gets no answer while {limit} are open (REFERRAL_MAX_CONNECTIONS={limit})",
        limit + 1
    );
    drop(held.pop());
    let (ending, took) = net::read_to_end(&mut waiting, Duration::from_secs(10)).await;
    assert!(
        matches!(ending, Ending::Answered(200, _)),
        "once a held connection closes, the waiting one is served: {ending:?} after {took:?}"
    );
    for (n, tcp) in held.iter_mut().enumerate() {
        tcp.write_all(net::get_keep_alive("/health").as_bytes())
            .await
            .expect("write a second request");
        let ending = net::read_answer(tcp, Duration::from_secs(10)).await;
        assert!(
            matches!(ending, Ending::Answered(200, _)),
            "held connection {} is still served: {ending:?}",
            n + 1
        );
    }
}

/// This process's soft limit of open files (`/proc/self/limits`; 1024 when
/// unknown).
fn own_fd_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))?
                .split_whitespace()
                .nth(3)?
                .parse()
                .ok()
        })
        .unwrap_or(1024)
}

// ---------------------------------------------------------------- shutdown

/// SIGTERM with code requests (1 s SMS delay) and logins (bodies still
/// arriving) in flight: every one gets its normal answer, the process exits
/// 0. On PostgreSQL a restarted server knows all of it: the users log in
/// with their tokens, the code phones are in their cooldown, and a code
/// sent during the shutdown verifies.
pub async fn shutdown_under_load(fx: Fx) {
    let store = fx.ctx.fresh_store().await;
    let env = [("REFERRAL_SMS_DELAY_MS", "1000")];
    let s = fx.ctx.server_on(store.as_deref(), &env).await;
    let login_phones: Vec<String> = (100..105).map(phone).collect();
    let codes = join_all(login_phones.iter().map(|p| s.send_code(p))).await;

    // Code requests, each waiting 1 s for its SMS.
    let code_phones: Vec<String> = (1..=10).map(phone).collect();
    let code_requests: Vec<_> = code_phones
        .iter()
        .map(|p| {
            let client = s.client().clone();
            let url = s.url("/api/auth/code");
            let body = json!({ "phone": p });
            tokio::spawn(async move {
                client
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    // Logins whose bodies are half sent.
    let mut logins = Vec::new();
    for (p, code) in login_phones.iter().zip(&codes) {
        let body = json!({ "phone": p, "code": code }).to_string();
        let head = net::post_head("/api/auth/verify", body.len());
        let (first, rest) = body.split_at(body.len() / 2);
        let tcp = net::start_request(&s.base, format!("{head}{first}").as_bytes()).await;
        logins.push((tcp, rest.to_owned()));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = s.base.clone();
    let exit = tokio::spawn(s.terminate(Duration::from_secs(20)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut tokens = Vec::new();
    for (mut tcp, rest) in logins {
        tcp.write_all(rest.as_bytes())
            .await
            .expect("finish the body");
        let (ending, took) = net::read_to_end(&mut tcp, Duration::from_secs(10)).await;
        let Ending::Answered(200, body) = ending else {
            panic!("a login in flight at SIGTERM: {ending:?} after {took:?}");
        };
        let json = body
            .find('{')
            .and_then(|start| body.rfind('}').map(|end| &body[start..=end]))
            .and_then(|j| serde_json::from_str::<Value>(j).ok())
            .unwrap_or_else(|| panic!("a JSON login answer: {body:?}"));
        tokens.push(json["access_token"].as_str().expect("a token").to_owned());
    }
    for (p, task) in code_phones.iter().zip(code_requests) {
        let status = task
            .await
            .expect("the task")
            .unwrap_or_else(|e| panic!("the code request for {p} in flight at SIGTERM: {e}"));
        assert_eq!(status, 202, "the code request for {p} in flight at SIGTERM");
    }
    let code = exit.await.expect("the terminate task");
    assert_eq!(code, Some(0), "exit code after SIGTERM");
    assert!(
        reqwest::get(format!("{base}/health")).await.is_err(),
        "the server is gone"
    );

    let Some(store) = store else { return };
    let again = fx
        .ctx
        .server_on(
            Some(&store),
            &[
                ("REFERRAL_OTP_MAX_ATTEMPTS", "1000000"),
                ("REFERRAL_OTP_MAX_FAILURES_PER_DAY", "1000000"),
            ],
        )
        .await;
    for (p, token) in login_phones.iter().zip(&tokens) {
        let profile = again.profile(token).await;
        assert_eq!(profile["phone"], p.as_str(), "{profile}");
    }
    for p in &code_phones {
        let r = again.request_code(p).await;
        r.assert_error(429, Some("too_many_requests"));
    }
    let hits = codes_that_verify(&again, &code_phones[0]).await;
    assert_eq!(
        hits.len(),
        1,
        "the code sent during the shutdown verifies after the restart"
    );
}

// ---------------------------------------------------------------- PostgreSQL outages

/// What a stream of logins and activations saw.
#[derive(Default)]
struct Tally {
    /// Phones and tokens of the logins answered 200.
    users: Vec<(String, String)>,
    /// Phones whose activation was answered 200.
    activated: Vec<String>,
    /// Tokens of the users whose activation was answered 503.
    pending: Vec<String>,
    /// Answers 503 `unavailable`.
    unavailable: u32,
    /// All answers.
    answers: u32,
}

impl std::fmt::Debug for Tally {
    /// Counts only (no tokens in test output).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} answers, {} of them 503 unavailable; {} logins and {} activations \
             acknowledged, {} activations answered 503",
            self.answers,
            self.unavailable,
            self.users.len(),
            self.activated.len(),
            self.pending.len()
        )
    }
}

/// Whether `r` is the expected success (`true`) or 503 `unavailable`
/// (`false`); anything else, or an answer slower than the request timeout,
/// fails the case.
#[track_caller]
fn ok_or_unavailable(r: &Resp, ok: u16, what: &str) -> bool {
    assert!(
        r.elapsed < ANSWER_WITHIN,
        "{what} took {:?}: {r:?}",
        r.elapsed
    );
    if r.status == ok {
        return true;
    }
    assert!(
        r.status == 503 && r.code() == "unavailable",
        "{what} during an outage answered neither {ok} nor 503 unavailable: {r:?}"
    );
    false
}

/// Runs `workers` loops, each logging in fresh phones (code, outbox,
/// verify) and activating `invite_code` with them, until `stop` is set.
async fn stream(s: &Server, invite_code: &str, workers: u32, stop: &AtomicBool) -> Tally {
    let next = AtomicU32::new(1000);
    let tally = Mutex::new(Tally::default());
    let note = |f: &dyn Fn(&mut Tally)| f(&mut tally.lock().unwrap_or_else(|e| e.into_inner()));
    join_all((0..workers).map(|_| async {
        while !stop.load(Ordering::SeqCst) {
            let p = phone(next.fetch_add(1, Ordering::SeqCst));
            let r = s.request_code(&p).await;
            let sent = ok_or_unavailable(&r, 202, "POST /api/auth/code");
            note(&|t| {
                t.answers += 1;
                t.unavailable += u32::from(!sent);
            });
            if !sent {
                continue;
            }
            let code = s.outbox_code(&p).await;
            let r = s.verify(&p, &code).await;
            let logged_in = ok_or_unavailable(&r, 200, "POST /api/auth/verify");
            note(&|t| {
                t.answers += 1;
                t.unavailable += u32::from(!logged_in);
            });
            if !logged_in {
                continue;
            }
            let token = r.body["access_token"].as_str().expect("a token").to_owned();
            let r = s.activate(&token, invite_code).await;
            let activated = ok_or_unavailable(&r, 200, "POST /api/profile/invite");
            note(&|t| {
                t.answers += 1;
                t.unavailable += u32::from(!activated);
                t.users.push((p.clone(), token.clone()));
                if activated {
                    t.activated.push(p.clone());
                } else {
                    t.pending.push(token.clone());
                }
            });
        }
    }))
    .await;
    tally.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// Polls `/health` (each answer within [`ANSWER_WITHIN`]) until it answers
/// `status`; how long that took.
///
/// # Panics
/// When it does not within `within`.
async fn health_becomes(s: &Server, status: u16, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let r = s.get("/health").await;
        assert!(r.elapsed < ANSWER_WITHIN, "/health took {:?}", r.elapsed);
        assert!(
            matches!(r.status, 200 | 503),
            "/health answers 200 or 503: {r:?}"
        );
        if r.status == status {
            let expected = if status == 200 { "ok" } else { "unavailable" };
            assert_eq!(r.body, json!({ "status": expected }));
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "/health did not answer {status} within {within:?}: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// After an outage: the server recovered (no restart), every login and
/// activation answered 200 is there, and the activations answered 503 go
/// through on a retry.
async fn check_nothing_lost(s: &Server, owner_token: &str, tally: &Tally) {
    health_becomes(s, 200, Duration::from_secs(5)).await;
    assert!(
        !tally.activated.is_empty(),
        "the stream got activations through: {tally:?}"
    );
    for (p, token) in &tally.users {
        let profile = s.profile(token).await;
        assert_eq!(profile["phone"], p.as_str(), "{profile}");
    }
    for token in &tally.pending {
        let r = s.activate(token, &owner_invite(s, owner_token).await).await;
        assert_eq!(r.status, 200, "a retry after the outage: {r:?}");
    }
    let referred = all_referrals(s, owner_token).await;
    for p in &tally.activated {
        assert!(
            referred.contains(p),
            "an activation answered 200 is lost: {p}"
        );
    }
    let profile = s.profile(owner_token).await;
    assert_eq!(
        profile["referral_count"],
        tally.activated.len() + tally.pending.len(),
        "{tally:?}"
    );
}

async fn owner_invite(s: &Server, token: &str) -> String {
    s.profile(token).await["invite_code"]
        .as_str()
        .expect("an invite code")
        .to_owned()
}

/// Every referral's phone, page by page.
async fn all_referrals(s: &Server, token: &str) -> HashSet<String> {
    let mut phones = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/profile/referrals?limit=500&cursor={c}"),
            None => "/api/profile/referrals?limit=500".to_owned(),
        };
        let r = s.get_auth(&path, token).await;
        assert_eq!(r.status, 200, "{r:?}");
        for item in r.body["items"].as_array().expect("items") {
            phones.insert(item["phone"].as_str().expect("a phone").to_owned());
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(referral_contract_tests::harness::enc(c)),
            None => return phones,
        }
    }
}

/// `pg_terminate_backend` on every connection of the server's database,
/// every 100 ms for 2 s, while logins and activations stream in: only 200 or
/// 503 `unavailable`, recovery without a restart, nothing acknowledged lost.
pub async fn backends_terminated_mid_stream(fx: Fx) {
    assert_eq!(fx.ctx.backend(), Backend::Postgres);
    let db = fx.ctx.fresh_store().await.expect("a database");
    let s = fx.ctx.server_on(Some(&db), OUTAGE_ENV).await;
    let owner = s.login(&phone(1)).await;
    let admin = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let name = url::Url::parse(&db)
        .expect("a URL")
        .path()
        .trim_start_matches('/')
        .to_owned();
    let stop = AtomicBool::new(false);
    let disrupt = async {
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("connect to DATABASE_URL");
        let mut terminated = 0_i64;
        tokio::time::sleep(Duration::from_millis(300)).await;
        for _ in 0..20 {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&name)
            .fetch_one(&mut conn)
            .await
            .expect("terminate the backends");
            terminated += n;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::SeqCst);
        let _ = conn.close().await;
        terminated
    };
    let (tally, terminated) = tokio::join!(stream(&s, &owner.invite_code, 6, &stop), disrupt);
    eprintln!("{terminated} backends terminated; the stream saw {tally:?}");
    assert!(terminated > 0, "no backend was terminated");
    check_nothing_lost(&s, &owner.token, &tally).await;
}

/// The network to PostgreSQL cut (every connection dropped, new ones
/// refused, through the harness's [`PgProxy`]) for 1.5 s while logins and
/// activations stream in: 503 `unavailable` (never 500, never a hang),
/// `/health` 503 then 200 within 5 s of the repair, nothing acknowledged
/// lost.
pub async fn proxy_cut_mid_stream(fx: Fx) {
    assert_eq!(fx.ctx.backend(), Backend::Postgres);
    let db = fx.ctx.fresh_store().await.expect("a database");
    let Some(proxy) = PgProxy::start(&db).await else {
        eprintln!("skipping proxy_cut_mid_stream: DATABASE_URL does not name a TCP host");
        return;
    };
    let s = fx.ctx.server_on(Some(&proxy.url), OUTAGE_ENV).await;
    let owner = s.login(&phone(1)).await;
    let stop = AtomicBool::new(false);
    let disrupt = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        proxy.cut();
        health_becomes(&s, 503, Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        proxy.restore();
        let took = health_becomes(&s, 200, Duration::from_secs(5)).await;
        eprintln!("/health answered 200 {took:?} after the repair");
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::SeqCst);
    };
    let (tally, ()) = tokio::join!(stream(&s, &owner.invite_code, 6, &stop), disrupt);
    eprintln!("the stream saw {tally:?}");
    assert!(tally.unavailable > 0, "the cut was seen: {tally:?}");
    check_nothing_lost(&s, &owner.token, &tally).await;
}

/// PostgreSQL (a cluster of the case's own, `fsync` on) killed with SIGKILL
/// under a stream of logins and activations, down for longer than the pool's
/// acquire timeout, restarted on the same port: the server stays up, answers
/// only 200 or 503 `unavailable` in time, `/health` says 503 then 200 within
/// 5 s of the restart, and every login and activation answered 200 is there
/// afterwards (through the API and in the tables).
///
/// The pool retries a refused connection until its acquire timeout, so a
/// restart quicker than that is waited out without a 503 (an operation on a
/// connection that was killed still fails at once, but the stream need not
/// have had one); the outage here outlasts that timeout, so every worker
/// asking for a connection early in it answers 503.
pub async fn postgres_killed_and_restarted(fx: Fx) {
    let Some(cluster) =
        tokio::task::spawn_blocking(|| PgCluster::start("postgres_killed_and_restarted"))
            .await
            .expect("start the cluster")
    else {
        return;
    };
    let cluster = Arc::new(cluster);
    let url = cluster.url();
    let s = Server::spawn(fx.bin, Some(&url), OUTAGE_ENV).await;
    let owner = s.login(&phone(1)).await;
    let stop = AtomicBool::new(false);
    let disrupt = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        cluster.kill9();
        health_becomes(&s, 503, Duration::from_secs(5)).await;
        tokio::time::sleep(PgStoreOptions::DEFAULT_ACQUIRE_TIMEOUT + Duration::from_secs(1)).await;
        let c = Arc::clone(&cluster);
        tokio::time::timeout(
            Duration::from_secs(70),
            tokio::task::spawn_blocking(move || c.restart()),
        )
        .await
        .expect("restart within 70 s")
        .expect("restart");
        let took = health_becomes(&s, 200, Duration::from_secs(5)).await;
        eprintln!("/health answered 200 {took:?} after the restart");
        tokio::time::sleep(Duration::from_millis(700)).await;
        stop.store(true, Ordering::SeqCst);
    };
    let (tally, ()) = tokio::join!(stream(&s, &owner.invite_code, 6, &stop), disrupt);
    eprintln!("the stream saw {tally:?}");
    assert!(tally.unavailable > 0, "the outage was seen: {tally:?}");
    check_nothing_lost(&s, &owner.token, &tally).await;
    // And in the tables, straight from PostgreSQL.
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .expect("connect to the cluster");
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT u.phone FROM referral_activations a \
         JOIN referral_users u ON u.id = a.invitee_id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("read the activations");
    let stored: HashSet<String> = stored.into_iter().collect();
    for p in &tally.activated {
        assert!(stored.contains(p), "activation of {p} lost in the tables");
    }
    let _ = conn.close().await;
    drop(s);
}

/// The server's database dropped under it (`DROP DATABASE … WITH (FORCE)`:
/// its connections are terminated, new ones fail with SQLSTATE 3D000): every
/// route answers 503 `unavailable` in time, never 500, and `/health` 503.
pub async fn database_dropped(fx: Fx) {
    assert_eq!(fx.ctx.backend(), Backend::Postgres);
    let db = fx.ctx.fresh_store().await.expect("a database");
    let s = fx.ctx.server_on(Some(&db), OUTAGE_ENV).await;
    let user = s.login(&phone(1)).await;
    fx.ctx.drop_store(&db).await;
    health_becomes(&s, 503, Duration::from_secs(5)).await;
    let p2 = phone(2);
    let (a, b, c, d, e) = tokio::join!(
        s.request_code(&p2),
        s.verify(&p2, "1234"),
        s.get_auth("/api/profile", &user.token),
        s.activate(&user.token, "AAAAAA"),
        s.get_auth("/api/profile/referrals", &user.token),
    );
    for r in [a, b, c, d, e] {
        assert!(r.elapsed < ANSWER_WITHIN, "{:?}", r.elapsed);
        r.assert_error(503, Some("unavailable"));
    }
}
