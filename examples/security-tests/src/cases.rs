//! The cases that need a server process, one `async fn` each: each spawns
//! the server binary through the contract harness's [`Ctx`] and attacks it
//! over real sockets (raw TCP where an HTTP client would refuse to send what
//! an attacker can), or reads its logs. The other abuse and bad-input cases
//! run in process with the contract suite
//! (`referral_contract_tests::cases::security`).
//!
//! Each case asserts the exact outcome its defence promises, so it fails when
//! that defence is removed: e.g. without the axum server's `ConnectInfo` the
//! per-client limit cannot tell addresses apart, and without the body limit
//! a chunked body past 16 KiB is read whole.

use std::net::IpAddr;
use std::time::Duration;

use referral_contract_tests::harness::{SECRET, jwt, phone, unix_now};
use referral_contract_tests::{Ctx, Server};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

// ---------------------------------------------------------------- helpers

/// Writes `request` to the server over raw TCP and reads the answer (at most
/// 10 s, until the server closes or the head and a body arrive). The status,
/// or `None` when the server closed without answering; and the text.
async fn raw(s: &Server, request: &[u8]) -> (Option<u16>, String) {
    let addr = s.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the server");
    // The server may answer and close before it has read everything.
    let _ = stream.write_all(request).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = stream.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    (status, text)
}

// ---------------------------------------------------------------- the socket's peer

/// The per-client send limit of a server process, over real sockets
/// (`REFERRAL_IP_MAX_SENDS_PER_HOUR=2`): one address gets codes for 2 phones,
/// then 429 `too_many_requests` with `Retry-After`, however it forges
/// `X-Forwarded-For` (no proxy is trusted), and nothing is sent; another
/// address is served. Shows that the server gives the routes each
/// connection's peer.
pub async fn client_send_limit_per_address(ctx: Ctx) {
    let s = ctx.server(&[("REFERRAL_IP_MAX_SENDS_PER_HOUR", "2")]).await;
    let (attacker, other) = (IpAddr::from([127, 0, 0, 2]), IpAddr::from([127, 0, 0, 3]));
    for (i, forged) in [(1, "198.51.100.1"), (2, "198.51.100.2")] {
        let r = s.request_code_from(attacker, Some(forged), &phone(i)).await;
        assert_eq!(r.status, 202, "{r:?}");
    }
    for (i, forged) in [(3, Some("198.51.100.3")), (4, None)] {
        let secs = s
            .request_code_from(attacker, forged, &phone(i))
            .await
            .assert_error(429, Some("too_many_requests"))
            .expect("Retry-After");
        assert!((1..=3600).contains(&secs), "{secs}");
        s.assert_nothing_sent(&phone(i)).await;
    }
    let r = s.request_code_from(other, None, &phone(3)).await;
    assert_eq!(r.status, 202, "another address: {r:?}");
}

// ---------------------------------------------------------------- logs

/// With `RUST_LOG=debug`, a full flow (codes sent, a wrong guess, logins, an
/// activation, every profile route, the outbox, forged tokens) leaves no
/// login code, no JWT secret and no access token in the server's logs.
pub async fn secrets_never_logged(ctx: Ctx) {
    let store = ctx.fresh_store().await;
    // Eight-digit codes, so a code cannot turn up by chance in a timestamp.
    let (s, logs) = ctx
        .server_with_logs(
            store.as_deref(),
            &[
                ("RUST_LOG", "debug"),
                ("REFERRAL_OTP_LENGTH", "8"),
                ("REFERRAL_OTP_RESEND_COOLDOWN_SECS", "0"),
            ],
        )
        .await;
    let mut codes = Vec::new();
    let mut tokens = Vec::new();
    for i in 1..=2 {
        let p = phone(i);
        let first = s.send_code(&p).await;
        // Each digit moved by one: never the code, and not a run of zeros
        // that the logged migration SQL may hold.
        let wrong: String = first
            .bytes()
            .map(|b| char::from(b'0' + (b - b'0' + 1) % 10))
            .collect();
        s.verify(&p, &wrong)
            .await
            .assert_error(401, Some("otp_invalid"));
        let code = s.send_code(&p).await;
        let r = s.verify(&p, &code).await;
        assert_eq!(r.status, 200, "{r:?}");
        tokens.push(r.body["access_token"].as_str().expect("token").to_owned());
        codes.extend([first, wrong, code]);
    }
    let owner_code = s.profile(&tokens[0]).await["invite_code"]
        .as_str()
        .expect("code")
        .to_owned();
    assert_eq!(s.activate(&tokens[1], &owner_code).await.status, 200);
    for t in &tokens {
        assert_eq!(s.get_auth("/api/profile/referrals", t).await.status, 200);
    }
    let now = unix_now();
    let forged = jwt(
        SECRET.as_bytes(),
        "HS512",
        &json!({ "sub": "x", "iat": now, "exp": now + 60 }),
    );
    s.get_auth("/api/profile", &forged)
        .await
        .assert_error(401, Some("unauthorized"));
    // Let the last lines reach the pipe.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = logs.text();
    assert!(
        text.contains("DEBUG") || text.contains("debug"),
        "debug logs were captured: {text}"
    );
    for code in &codes {
        if let Some(at) = text.find(code.as_str()) {
            let line = text[..at].rsplit('\n').next().unwrap_or_default().len();
            let start = at - line;
            let end = text[at..].find('\n').map_or(text.len(), |e| at + e);
            panic!("a login code in the logs: {}", &text[start..end]);
        }
    }
    assert!(!text.contains(SECRET), "the JWT secret in the logs");
    for t in tokens.iter().chain([&forged]) {
        let signature = t.rsplit('.').next().unwrap_or_default();
        assert!(
            !text.contains(t.as_str()) && !text.contains(signature),
            "an access token in the logs"
        );
    }
}

// ---------------------------------------------------------------- the HTTP parser

/// A body streamed in 1 KiB chunks (`Transfer-Encoding: chunked`, no
/// `Content-Length`) that grows past 16 KiB: 413 with the envelope over the
/// socket, the server alive, nothing sent and the phone not charged.
pub async fn chunked_body_over_limit_refused(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    let target = phone(1);
    // A chunked body that grows past 16 KiB, with no Content-Length.
    let mut request = b"POST /api/auth/code HTTP/1.1\r\nHost: 127.0.0.1\r\n\
        Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .to_vec();
    let mut body = format!("{{\"phone\": \"{target}\", \"pad\": \"").into_bytes();
    body.extend(std::iter::repeat_n(b'x', 20 * 1024));
    body.extend_from_slice(b"\"}");
    for chunk in body.chunks(1024) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let (status, text) = raw(&s, &request).await;
    assert_eq!(status, Some(413), "a chunked 20 KiB body: {text}");
    assert!(text.contains("\"error\""), "the envelope: {text}");
    s.assert_healthy("a chunked body").await;
    s.assert_nothing_sent(&target).await;
    // And the phone was not charged: its first code goes out now.
    assert_eq!(s.request_code(&target).await.status, 202);
}

/// Headers of absurd length or number: a 4xx (or a closed connection), never
/// a crash; the server answers `/health` afterwards.
pub async fn absurd_headers_refused(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    let token = s.login(&phone(1)).await.token;
    let big = |name: &str, len: usize| {
        format!(
            "GET /api/profile HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
             {name}: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(len)
        )
        .into_bytes()
    };
    let many = {
        let mut r = format!(
            "GET /api/profile HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        );
        for i in 0..5000 {
            r.push_str(&format!("X-H{i}: {i}\r\n"));
        }
        r.push_str("Connection: close\r\n\r\n");
        r.into_bytes()
    };
    let long_auth = format!(
        "GET /api/profile HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Connection: close\r\n\r\n",
        "A".repeat(64 * 1024)
    )
    .into_bytes();
    let long_path = format!(
        "GET /api/profile/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        "a".repeat(64 * 1024)
    )
    .into_bytes();
    for (what, request) in [
        ("a 64 KiB header", big("X-Big", 64 * 1024)),
        ("a 1 MiB header", big("X-Big", 1024 * 1024)),
        ("a 64 KiB cookie", big("Cookie", 64 * 1024)),
        ("5000 headers", many),
        ("a 64 KiB Authorization", long_auth),
        ("a 64 KiB path", long_path),
    ] {
        let (status, text) = raw(&s, &request).await;
        if let Some(status) = status {
            assert!(
                (400..500).contains(&status),
                "{what}: a 4xx, not {status}: {}",
                &text[..text.len().min(300)]
            );
        }
        s.assert_healthy(what).await;
    }
}
