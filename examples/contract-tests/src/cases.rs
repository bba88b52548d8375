//! The cases, one `async fn` each, written from API.md. Each spawns the
//! server(s) it needs through [`Ctx`].

mod operators;
pub use operators::{
    admin_block_and_unblock, admin_csv_exports, admin_leaderboard_and_stats,
    admin_routes_refuse_non_operators, admin_search_and_detail, admin_user_rewards,
    admin_void_reward,
};
mod rewards;
pub use rewards::{
    rewards_errors, rewards_two_servers_one_conversion, rewards_without_keys,
    rewards_worked_example,
};
pub mod security;
pub use security::{
    attacker_who_knows_the_phone, brute_force_budget_across_resends,
    brute_force_concurrent_guesses, brute_force_two_servers, enumeration_code_route_alike,
    enumeration_invite_codes_limited, malformed_json_refused, random_bodies_never_fail_the_server,
    sms_country_allow_list, sms_global_budget, sms_global_budget_two_servers,
    token_of_deleted_user, tokens_refused, unicode_lookalikes_refused,
};

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{
    Backend, Ctx, PgProxy, Resp, SECRET, Server, User, enc, join_all, jwt, phone, unix_now,
    wrong_code,
};

fn assert_profile_shape(p: &Value) {
    for key in [
        "id",
        "phone",
        "invite_code",
        "activated_invite_code",
        "referral_count",
        "referrals",
        "created_at",
    ] {
        assert!(p.get(key).is_some(), "profile lacks {key}: {p}");
    }
    let code = p["invite_code"].as_str().expect("invite_code");
    assert_eq!(code.len(), 6, "{code}");
    assert!(
        code.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
        "{code}"
    );
    assert!(p["created_at"].as_str().is_some_and(|s| s.contains('T')));
    assert!(p["referrals"].is_array());
    assert!(p["referral_count"].is_u64());
}

// ---------------------------------------------------------------- start-up

/// The server starts on port 0, prints its real address, and `/health` is ok.
pub async fn health_ok(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    let r = s.get("/health").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, json!({ "status": "ok" }));
}

/// Settings the contract forbids stop the server at start, non-zero, before
/// it listens.
pub async fn bad_settings_refused(ctx: Ctx) {
    for (key, value) in [
        ("REFERRAL_JWT_SECRET", "only-31-bytes-long-secret-12345"),
        ("REFERRAL_OTP_LENGTH", "3"),
        ("REFERRAL_OTP_LENGTH", "9"),
        ("REFERRAL_SMS_DELAY_MS", "2000-1000"),
        ("REFERRAL_SMS_DELAY_MS", "soon"),
        ("REFERRAL_DEV_OUTBOX", "maybe"),
        ("REFERRAL_DEFAULT_REGION", "XX"),
        ("REFERRAL_LISTEN", "not-an-address"),
        ("REFERRAL_OTP_MAX_ATTEMPTS", "0"),
        ("REFERRAL_OTP_STEP_UP_LENGTH", "9"),
        ("REFERRAL_OTP_STEP_UP_LENGTH", "3"),
        ("REFERRAL_IP_MAX_SENDS_PER_HOUR", "many"),
        ("REFERRAL_TRUSTED_PROXIES", "10.0.0.0/33"),
        ("REFERRAL_TRUSTED_PROXIES", "10.0.0.1, proxy.internal"),
    ] {
        let code = ctx.start_fails(&[(key, value)]).await;
        assert_ne!(code, Some(0), "{key}={value} was accepted");
    }
    // The refusal names the setting.
    for (env, names) in [
        (
            &[("REFERRAL_TRUSTED_PROXIES", "10.0.0.1,proxy.internal")][..],
            &["trusted-proxies", "proxy.internal"][..],
        ),
        (
            &[
                ("REFERRAL_OTP_LENGTH", "6"),
                ("REFERRAL_OTP_STEP_UP_LENGTH", "5"),
            ],
            &["REFERRAL_OTP_STEP_UP_LENGTH", "REFERRAL_OTP_LENGTH"],
        ),
    ] {
        let (code, stderr) = ctx.start_fails_output(env).await;
        assert_ne!(code, Some(0), "{env:?} was accepted");
        for name in names {
            assert!(stderr.contains(name), "{env:?}: {name} not in {stderr}");
        }
    }
}

/// SIGTERM lets a request in flight finish, then the process exits 0.
pub async fn graceful_shutdown(ctx: Ctx) {
    let s = ctx.server(&[("REFERRAL_SMS_DELAY_MS", "2500")]).await;
    let client = s.client().clone();
    let url = s.url("/api/auth/code");
    let in_flight = tokio::spawn(async move {
        client
            .post(url)
            .json(&json!({ "phone": phone(1) }))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    let code = s.terminate(Duration::from_secs(10)).await;
    let status = in_flight
        .await
        .expect("task")
        .expect("the in-flight request is answered");
    assert_eq!(status, 202);
    assert_eq!(code, Some(0), "exit code after SIGTERM");
}

// ---------------------------------------------------------------- POST /api/auth/code

/// 202 with the E.164 phone, `expires_in`, `retry_after` and `code_length`.
pub async fn request_code_accepted(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    let r = s.request_code("+7 (999) 123-45-67").await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(
        r.body,
        json!({ "phone": "+79991234567", "expires_in": 300, "retry_after": 60, "code_length": 4 })
    );
    // The outbox knows the code under the normalised phone, `+` as written.
    let sms = s.get("/api/dev/sms?phone=+79991234567").await;
    assert_eq!(sms.status, 200, "{sms:?}");
    assert_eq!(sms.body["phone"], "+79991234567");
    let code = sms.body["code"].as_str().expect("code");
    assert_eq!(code.len(), 4);
    assert!(code.bytes().all(|b| b.is_ascii_digit()));
    assert!(sms.body["sent_at"].as_str().is_some());
    // The same with %2B, and with other settings.
    assert_eq!(s.get("/api/dev/sms?phone=%2B79991234567").await.status, 200);
    let s = ctx
        .server(&[
            ("REFERRAL_OTP_TTL_SECS", "120"),
            ("REFERRAL_OTP_RESEND_COOLDOWN_SECS", "30"),
            ("REFERRAL_OTP_LENGTH", "6"),
        ])
        .await;
    let r = s.request_code(&phone(1)).await;
    assert_eq!(
        r.body,
        json!({ "phone": phone(1), "expires_in": 120, "retry_after": 30, "code_length": 6 })
    );
    assert_eq!(s.outbox_code(&phone(1)).await.len(), 6);
}

/// 400 `invalid_phone` for what is not a phone.
pub async fn request_code_invalid_phone(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    for bad in [
        "",
        "   ",
        "abc",
        "+7999abc4567",
        "+123",
        "+1234567890123456",
        "89991234567",
        "+٧٩٩٩١٢٣٤٥٦٧",
        &"1".repeat(200),
    ] {
        s.request_code(bad)
            .await
            .assert_error(400, Some("invalid_phone"));
    }
}

/// `REFERRAL_DEFAULT_REGION` lets national numbers in.
pub async fn default_region(ctx: Ctx) {
    let s = ctx.server(&[("REFERRAL_DEFAULT_REGION", "RU")]).await;
    let r = s.request_code("8 (999) 123-45-67").await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.body["phone"], "+79991234567");
    let code = s.outbox_code("+79991234567").await;
    let r = s.verify("8 999 123 45 67", &code).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["profile"]["phone"], "+79991234567");
}

/// A second code within the cooldown: 429 with `Retry-After`.
pub async fn request_code_cooldown(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    assert_eq!(s.request_code(&phone(1)).await.status, 202);
    let secs = s
        .request_code(&phone(1))
        .await
        .assert_error(429, Some("too_many_requests"))
        .expect("Retry-After");
    assert!((55..=60).contains(&secs), "{secs}");
    // Another phone is not affected; the same phone spelled differently is.
    assert_eq!(s.request_code(&phone(2)).await.status, 202);
    s.request_code("+7 999 000-00-01")
        .await
        .assert_error(429, Some("too_many_requests"));
}

/// The hourly cap: 429 with `Retry-After` up to an hour.
pub async fn request_code_hourly_cap(ctx: Ctx) {
    let s = ctx
        .server(&[
            ("REFERRAL_OTP_RESEND_COOLDOWN_SECS", "0"),
            ("REFERRAL_OTP_MAX_SENDS_PER_HOUR", "3"),
        ])
        .await;
    for _ in 0..2 {
        let r = s.request_code(&phone(1)).await;
        assert_eq!(r.status, 202, "{r:?}");
        assert_eq!(r.body["retry_after"], 0);
    }
    // The third is sent, and says the next may wait up to an hour.
    let r = s.request_code(&phone(1)).await;
    assert_eq!(r.status, 202, "{r:?}");
    let wait = r.body["retry_after"].as_u64().expect("retry_after");
    assert!((3500..=3600).contains(&wait), "{wait}");
    let secs = s
        .request_code(&phone(1))
        .await
        .assert_error(429, Some("too_many_requests"))
        .expect("Retry-After");
    assert!((3500..=3600).contains(&secs), "{secs}");
}

/// A new code replaces the previous one.
pub async fn new_code_replaces_previous(ctx: Ctx) {
    let s = ctx
        .server(&[
            ("REFERRAL_OTP_RESEND_COOLDOWN_SECS", "0"),
            ("REFERRAL_OTP_LENGTH", "8"),
        ])
        .await;
    let first = s.send_code(&phone(1)).await;
    let second = s.send_code(&phone(1)).await;
    assert_ne!(first, second);
    s.verify(&phone(1), &first)
        .await
        .assert_error(401, Some("otp_invalid"));
    assert_eq!(s.verify(&phone(1), &second).await.status, 200);
}

/// A sender slower than its timeout: 503 `sms_unavailable`, and no code is
/// left behind.
pub async fn sms_unavailable(ctx: Ctx) {
    let s = ctx
        .server(&[
            ("REFERRAL_SMS_DELAY_MS", "2000"),
            ("REFERRAL_SMS_TIMEOUT_MS", "200"),
        ])
        .await;
    let r = s.request_code(&phone(1)).await;
    r.assert_error(503, Some("sms_unavailable"));
    assert!(r.elapsed < Duration::from_millis(1500), "{:?}", r.elapsed);
    s.assert_nothing_sent(&phone(1)).await;
    // Nothing was charged: the phone may ask again at once (and fails the same way).
    s.request_code(&phone(1))
        .await
        .assert_error(503, Some("sms_unavailable"));
}

/// A request slower than the request timeout answers 503, never hangs.
pub async fn request_timeout(ctx: Ctx) {
    let s = ctx
        .server(&[
            ("REFERRAL_SMS_DELAY_MS", "4000"),
            ("REFERRAL_REQUEST_TIMEOUT_SECS", "1"),
        ])
        .await;
    let r = s.request_code(&phone(1)).await;
    r.assert_error(503, None);
    assert!(r.elapsed < Duration::from_millis(3000), "{:?}", r.elapsed);
    assert_eq!(s.get("/health").await.status, 200);
}

// ---------------------------------------------------------------- POST /api/auth/verify

/// The first verify creates the user; later ones log the same user in.
pub async fn verify_creates_then_logs_in(ctx: Ctx) {
    let s = ctx
        .server(&[("REFERRAL_OTP_RESEND_COOLDOWN_SECS", "0")])
        .await;
    let code = s.send_code(&phone(1)).await;
    let r = s.verify("+7 (999) 000-00-01", &code).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 86_400);
    assert_eq!(r.body["new_user"], true);
    assert!(
        r.body["access_token"]
            .as_str()
            .is_some_and(|t| t.len() > 20)
    );
    let p = &r.body["profile"];
    assert_profile_shape(p);
    assert_eq!(p["phone"], phone(1));
    assert_eq!(p["activated_invite_code"], Value::Null);
    assert_eq!(p["referral_count"], 0);
    assert_eq!(p["referrals"], json!([]));
    let first = r.body.clone();

    // The same answer whether or not the phone belongs to a user.
    let known = s.request_code(&phone(1)).await;
    let unknown = s.request_code(&phone(2)).await;
    assert_eq!(known.status, 202);
    assert_eq!(unknown.status, 202);
    assert_eq!(known.body["expires_in"], unknown.body["expires_in"]);
    assert_eq!(known.body["retry_after"], unknown.body["retry_after"]);
    let code = s.outbox_code(&phone(1)).await;
    let r = s.verify(&phone(1), &code).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["new_user"], false);
    assert_eq!(r.body["profile"]["id"], first["profile"]["id"]);
    assert_eq!(
        r.body["profile"]["invite_code"],
        first["profile"]["invite_code"]
    );
    assert_eq!(
        r.body["profile"]["created_at"],
        first["profile"]["created_at"]
    );
    // Both tokens work.
    for token in [&first["access_token"], &r.body["access_token"]] {
        let p = s.profile(token.as_str().expect("token")).await;
        assert_eq!(p["id"], first["profile"]["id"]);
    }
}

/// A code works once.
pub async fn code_works_once(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    let code = s.send_code(&phone(1)).await;
    assert_eq!(s.verify(&phone(1), &code).await.status, 200);
    s.verify(&phone(1), &code)
        .await
        .assert_error(401, Some("otp_invalid"));
}

/// 400 for a bad phone or a code that is not 4 to 8 digits; 401 for a wrong
/// code (of any allowed length) or none sent.
pub async fn verify_errors(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    s.verify("nope", "1234")
        .await
        .assert_error(400, Some("invalid_phone"));
    for bad in ["", "123", "123456789", "12a4", "١٢٣٤", "abcd"] {
        s.verify(&phone(1), bad)
            .await
            .assert_error(400, Some("invalid_code"));
    }
    // No code was sent.
    for guess in ["1234", "12345", "12345678"] {
        s.verify(&phone(1), guess)
            .await
            .assert_error(401, Some("otp_invalid"));
    }
    let code = s.send_code(&phone(1)).await;
    s.verify(&phone(1), &wrong_code(&code))
        .await
        .assert_error(401, Some("otp_invalid"));
    // A wrong guess does not burn the code before the limit.
    assert_eq!(s.verify(&phone(1), &code).await.status, 200);

    let s6 = ctx.server(&[("REFERRAL_OTP_LENGTH", "6")]).await;
    s6.verify(&phone(1), "123")
        .await
        .assert_error(400, Some("invalid_code"));
    s6.verify(&phone(1), "1234")
        .await
        .assert_error(401, Some("otp_invalid"));
    s6.verify(&phone(1), "123456")
        .await
        .assert_error(401, Some("otp_invalid"));
}

/// An expired code: 401 `otp_expired`.
pub async fn verify_expired(ctx: Ctx) {
    let s = ctx.server(&[("REFERRAL_OTP_TTL_SECS", "1")]).await;
    let code = s.send_code(&phone(1)).await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    s.verify(&phone(1), &code)
        .await
        .assert_error(401, Some("otp_expired"));
}

/// After `REFERRAL_OTP_MAX_ATTEMPTS` wrong guesses the code is burned: even
/// the right one answers 429.
pub async fn code_burns_after_max_attempts(ctx: Ctx) {
    let s = ctx.server(&[("REFERRAL_OTP_MAX_ATTEMPTS", "3")]).await;
    let code = s.send_code(&phone(1)).await;
    let wrong = wrong_code(&code);
    for _ in 0..3 {
        s.verify(&phone(1), &wrong)
            .await
            .assert_error(401, Some("otp_invalid"));
    }
    s.verify(&phone(1), &code)
        .await
        .assert_error(429, Some("too_many_requests"));
    s.verify(&phone(1), &wrong)
        .await
        .assert_error(429, Some("too_many_requests"));
    // Another phone is untouched.
    let other = s.send_code(&phone(2)).await;
    assert_eq!(s.verify(&phone(2), &other).await.status, 200);
}

/// Past `REFERRAL_OTP_MAX_FAILURES_PER_DAY` wrong guesses the phone is
/// stepped up, not locked: the live code is burned (even with attempts
/// left), and the next code has `REFERRAL_OTP_STEP_UP_LENGTH` digits and logs
/// in. Other phones keep short codes.
pub async fn phone_steps_up_after_daily_failures(ctx: Ctx) {
    let s = ctx
        .server(&[
            ("REFERRAL_OTP_MAX_ATTEMPTS", "2"),
            ("REFERRAL_OTP_MAX_FAILURES_PER_DAY", "3"),
            ("REFERRAL_OTP_RESEND_COOLDOWN_SECS", "0"),
        ])
        .await;
    let code = s.send_code(&phone(1)).await;
    for _ in 0..2 {
        s.verify(&phone(1), &wrong_code(&code))
            .await
            .assert_error(401, Some("otp_invalid"));
    }
    let r = s.request_code(&phone(1)).await;
    assert_eq!(
        (r.status, &r.body["code_length"]),
        (202, &json!(4)),
        "{r:?}"
    );
    let code = s.outbox_code(&phone(1)).await;
    assert_eq!(code.len(), 4);
    // The third wrong guess answers 401 and counts; it steps the phone up and
    // burns this code, which had an attempt left.
    s.verify(&phone(1), &wrong_code(&code))
        .await
        .assert_error(401, Some("otp_invalid"));
    let secs = s
        .verify(&phone(1), &code)
        .await
        .assert_error(429, Some("too_many_requests"))
        .expect("Retry-After");
    assert!(secs <= 60, "{secs}");
    let r = s.request_code(&phone(1)).await;
    assert_eq!(
        (r.status, &r.body["code_length"]),
        (202, &json!(8)),
        "{r:?}"
    );
    let long = s.outbox_code(&phone(1)).await;
    assert_eq!(long.len(), 8, "stepped up");
    let r = s.verify(&phone(1), &long).await;
    assert_eq!(r.status, 200, "{r:?}");
    // Other phones are free, with short codes.
    let r = s.request_code(&phone(2)).await;
    assert_eq!(
        (r.status, &r.body["code_length"]),
        (202, &json!(4)),
        "{r:?}"
    );
    assert_eq!(s.outbox_code(&phone(2)).await.len(), 4);
    // REFERRAL_OTP_STEP_UP_LENGTH sets the stepped-up length.
    let s = ctx
        .server(&[
            ("REFERRAL_OTP_MAX_FAILURES_PER_DAY", "1"),
            ("REFERRAL_OTP_RESEND_COOLDOWN_SECS", "0"),
            ("REFERRAL_OTP_STEP_UP_LENGTH", "6"),
        ])
        .await;
    let code = s.send_code(&phone(1)).await;
    s.verify(&phone(1), &wrong_code(&code))
        .await
        .assert_error(401, Some("otp_invalid"));
    let r = s.request_code(&phone(1)).await;
    assert_eq!(
        (r.status, &r.body["code_length"]),
        (202, &json!(6)),
        "{r:?}"
    );
    let code = s.outbox_code(&phone(1)).await;
    assert_eq!(code.len(), 6);
    assert_eq!(s.verify(&phone(1), &code).await.status, 200);
}

// ---------------------------------------------------------------- client addresses

/// A loopback address `127.0.0.n` (a process's socket can be bound to any).
fn peer(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// Asserts the 429 of the per-client limit: `too_many_requests`, a
/// `Retry-After` within the hour, and nothing sent to `phone`.
async fn assert_client_limited(s: &Server, r: &Resp, phone: &str) {
    let secs = r
        .assert_error(429, Some("too_many_requests"))
        .expect("Retry-After");
    assert!((1..=3600).contains(&secs), "{secs}");
    s.assert_nothing_sent(phone).await;
}

/// `REFERRAL_IP_MAX_SENDS_PER_HOUR=3`: one client address gets codes for 3
/// phones in the hour; the 4th phone answers 429 `too_many_requests` with
/// `Retry-After` and is sent nothing; another address is not limited.
pub async fn client_send_limit(ctx: Ctx) {
    let s = ctx.server(&[("REFERRAL_IP_MAX_SENDS_PER_HOUR", "3")]).await;
    for i in 1..=3 {
        let r = s.request_code_from(peer(2), None, &phone(i)).await;
        assert_eq!(r.status, 202, "{r:?}");
    }
    let r = s.request_code_from(peer(2), None, &phone(4)).await;
    assert_client_limited(&s, &r, &phone(4)).await;
    let r = s.request_code_from(peer(3), None, &phone(4)).await;
    assert_eq!(r.status, 202, "another address: {r:?}");
    // The codes sent still log in.
    let code = s.outbox_code(&phone(1)).await;
    assert_eq!(s.verify(&phone(1), &code).await.status, 200);
}

/// A client that is not a trusted proxy cannot dodge its limit with
/// `X-Forwarded-For`: without trusted proxies, and with proxies trusted
/// that are not it, every header names the same client, its socket's peer.
pub async fn forwarded_for_from_untrusted_peer_ignored(ctx: Ctx) {
    for proxies in [None, Some("10.0.0.0/8, 127.0.0.9")] {
        let mut env = vec![("REFERRAL_IP_MAX_SENDS_PER_HOUR", "2")];
        env.extend(proxies.map(|p| ("REFERRAL_TRUSTED_PROXIES", p)));
        let s = ctx.server(&env).await;
        let spoofed = ["198.51.100.1", "198.51.100.2, 10.0.0.1", "127.0.0.9"];
        for (i, header) in spoofed.iter().take(2).enumerate() {
            let r = s
                .request_code_from(peer(2), Some(header), &phone(i as u32))
                .await;
            assert_eq!(r.status, 202, "{proxies:?}: {r:?}");
        }
        let r = s
            .request_code_from(peer(2), Some(spoofed[2]), &phone(9))
            .await;
        assert_client_limited(&s, &r, &phone(9)).await;
    }
}

/// `REFERRAL_TRUSTED_PROXIES`: from a trusted peer, `X-Forwarded-For` read
/// right to left, trusted hops skipped, names the client, each limited on
/// its own; an entry the client wrote itself (left) changes nothing; IPv6
/// clients are limited per /64; an unreadable header falls back to the
/// nearest trusted hop, the proxy itself.
pub async fn forwarded_for_from_trusted_proxy(ctx: Ctx) {
    let s = ctx
        .server(&[
            ("REFERRAL_IP_MAX_SENDS_PER_HOUR", "2"),
            ("REFERRAL_TRUSTED_PROXIES", "127.0.0.2, 10.0.0.0/8"),
        ])
        .await;
    let proxy = peer(2);
    let mut n = 0;
    let mut send = async |header: &str| {
        n += 1;
        let p = phone(n);
        (s.request_code_from(proxy, Some(header), &p).await, p)
    };
    // 203.0.113.7 twice (once behind a second trusted hop), then limited,
    // whatever it writes on the left.
    for header in ["203.0.113.7", "6.6.6.6, 203.0.113.7, 10.1.2.3"] {
        let (r, _) = send(header).await;
        assert_eq!(r.status, 202, "{header}: {r:?}");
    }
    let (r, p) = send("1.2.3.4, 203.0.113.7").await;
    assert_client_limited(&s, &r, &p).await;
    // Another client behind the same proxy has its own limit.
    let (r, _) = send("203.0.113.8").await;
    assert_eq!(r.status, 202, "{r:?}");
    // IPv6: one /64 is one client.
    for header in ["2001:db8:1:2::1", "2001:db8:1:2:ffff::2"] {
        let (r, _) = send(header).await;
        assert_eq!(r.status, 202, "{header}: {r:?}");
    }
    let (r, p) = send("2001:db8:1:2::3").await;
    assert_client_limited(&s, &r, &p).await;
    let (r, _) = send("2001:db8:1:3::1").await;
    assert_eq!(r.status, 202, "another /64: {r:?}");
    // Garbage from the proxy: the proxy is the client (two, then limited),
    // shared with its requests that carry no header.
    for header in ["unknown", "203.0.113.9, not-an-address"] {
        let (r, _) = send(header).await;
        assert_eq!(r.status, 202, "{header}: {r:?}");
    }
    n += 1;
    let r = s.request_code_from(proxy, None, &phone(n)).await;
    assert_client_limited(&s, &r, &phone(n)).await;
    // A request from the client itself, not through the proxy: its peer.
    let r = s.request_code_from(peer(3), None, &phone(99)).await;
    assert_eq!(r.status, 202, "{r:?}");
}

// ---------------------------------------------------------------- tokens

/// Missing, malformed, forged, foreign-algorithm and expired tokens: 401.
pub async fn unauthorized_tokens(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    let user = s.login(&phone(1)).await;
    let now = unix_now();
    let claims = json!({ "sub": user.id, "iat": now, "exp": now + 3600 });
    let forged = jwt(b"some-other-secret-some-other-secret", "HS256", &claims);
    let hs512 = jwt(SECRET.as_bytes(), "HS512", &claims);
    let none = jwt(b"", "none", &claims);
    let past = jwt(
        SECRET.as_bytes(),
        "HS256",
        &json!({ "sub": user.id, "iat": now - 7200, "exp": now - 3600 }),
    );
    let no_exp = jwt(
        SECRET.as_bytes(),
        "HS256",
        &json!({ "sub": user.id, "iat": now }),
    );
    let mut tampered = user.token.clone();
    tampered.pop();
    tampered.push(if user.token.ends_with('A') { 'B' } else { 'A' });
    let mut cases: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some("Bearer not.a.jwt".into()),
        Some(format!("Basic {}", user.token)),
        Some(user.token.clone()),
        Some(format!("Bearer {forged}")),
        Some(format!("Bearer {hs512}")),
        Some(format!("Bearer {none}")),
        Some(format!("Bearer {past}")),
        Some(format!("Bearer {no_exp}")),
    ];
    if !user.token.ends_with('=') {
        cases.push(Some(format!("Bearer {tampered}")));
    }
    let cases: Vec<(String, Option<String>)> =
        cases.into_iter().map(|a| (format!("{a:?}"), a)).collect();
    security::assert_unauthorized_everywhere(&s, &cases).await;
    // The real token works, then expires.
    let r = s.get_auth("/api/profile", &user.token).await;
    assert_eq!(r.status, 200, "{r:?}");
    let s = ctx.server(&[("REFERRAL_TOKEN_TTL_SECS", "2")]).await;
    let r = s.verify(&phone(1), &s.send_code(&phone(1)).await).await;
    assert_eq!(r.body["expires_in"], 2, "{r:?}");
    let token = r.body["access_token"].as_str().expect("token").to_owned();
    let r = s.get_auth("/api/profile", &token).await;
    assert_eq!(r.status, 200, "{r:?}");
    tokio::time::sleep(Duration::from_millis(3200)).await;
    s.get_auth("/api/profile", &token)
        .await
        .assert_error(401, Some("unauthorized"));
}

/// A valid token whose user does not exist: 401.
pub async fn token_of_unknown_user(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    let now = unix_now();
    let token = jwt(
        SECRET.as_bytes(),
        "HS256",
        &json!({ "sub": "9b2f63a8-4d0b-4c4e-8f5e-2f0c3f3d6a11", "iat": now, "exp": now + 600 }),
    );
    s.get_auth("/api/profile", &token)
        .await
        .assert_error(401, Some("unauthorized"));
    s.get_auth("/api/profile/referrals", &token)
        .await
        .assert_error(401, Some("unauthorized"));
    s.post_auth(
        "/api/profile/invite",
        &token,
        &json!({ "invite_code": "AAAAAA" }),
    )
    .await
    .assert_error(401, Some("unauthorized"));
    // A token of this server's format signed with this secret, for a user id
    // that is not a UUID.
    let token = jwt(
        SECRET.as_bytes(),
        "HS256",
        &json!({ "sub": "alice", "iat": now, "exp": now + 600 }),
    );
    s.get_auth("/api/profile", &token)
        .await
        .assert_error(401, Some("unauthorized"));
}

// ---------------------------------------------------------------- profile and invites

/// The profile, and every answer of `POST /api/profile/invite`.
pub async fn activate_invite(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    let users = s.login_many(1, 3).await;
    let (a, b, c) = (&users[0], &users[1], &users[2]);
    let p = s.profile(&a.token).await;
    assert_profile_shape(&p);
    assert_eq!(p["phone"], a.phone);
    assert_eq!(p["id"], a.id);

    // Bad shapes: 400.
    for bad in ["", "ABC", "ABCDEFG", "AB CD1", "AB-C12", "ÄBCDEF"] {
        s.activate(&b.token, bad)
            .await
            .assert_error(400, Some("invalid_invite_code"));
    }
    // Nobody's code: 404.
    s.activate(&b.token, "000000")
        .await
        .assert_error(404, Some("invite_code_not_found"));
    // Own code: 422.
    s.activate(&b.token, &b.invite_code)
        .await
        .assert_error(422, Some("self_referral"));
    // B activates A's code, in lower case with spaces: 200.
    let spelled = format!("  {}  ", a.invite_code.to_lowercase());
    let r = s.activate(&b.token, &spelled).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_profile_shape(&r.body);
    assert_eq!(r.body["id"], b.id);
    assert_eq!(r.body["activated_invite_code"], a.invite_code);
    // The same code again: 200 (a safe retry).
    let r = s.activate(&b.token, &a.invite_code).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["activated_invite_code"], a.invite_code);
    // A different code: 409.
    s.activate(&b.token, &c.invite_code)
        .await
        .assert_error(409, Some("invite_already_activated"));
    // A's profile lists B.
    let p = s.profile(&a.token).await;
    assert_eq!(p["referral_count"], 1);
    assert_eq!(p["referrals"], json!([b.phone]));
    assert_eq!(p["activated_invite_code"], Value::Null);
    // B's profile shows the code.
    let p = s.profile(&b.token).await;
    assert_eq!(p["activated_invite_code"], a.invite_code);
    assert_eq!(p["referral_count"], 0);
}

/// A code whose owner the caller referred, directly or through a chain: 422.
pub async fn referral_cycle(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    let users = s.login_many(1, 4).await;
    let (a, b, c, d) = (&users[0], &users[1], &users[2], &users[3]);
    // A <- B <- C (B activated A's code, C activated B's).
    assert_eq!(s.activate(&b.token, &a.invite_code).await.status, 200);
    assert_eq!(s.activate(&c.token, &b.invite_code).await.status, 200);
    s.activate(&a.token, &b.invite_code)
        .await
        .assert_error(422, Some("referral_cycle"));
    s.activate(&a.token, &c.invite_code)
        .await
        .assert_error(422, Some("referral_cycle"));
    // Outside the chain is fine.
    assert_eq!(s.activate(&a.token, &d.invite_code).await.status, 200);
}

/// Too many unknown codes: 429 with `Retry-After`.
pub async fn invite_unknown_codes_limited(ctx: Ctx) {
    let s = ctx
        .server(&[("REFERRAL_INVITE_MAX_FAILURES_PER_HOUR", "2")])
        .await;
    let users = s.login_many(1, 2).await;
    for code in ["000000", "000001"] {
        s.activate(&users[0].token, code)
            .await
            .assert_error(404, Some("invite_code_not_found"));
    }
    let secs = s
        .activate(&users[0].token, "000002")
        .await
        .assert_error(429, Some("too_many_requests"))
        .expect("Retry-After");
    assert!((1..=3600).contains(&secs), "{secs}");
    // Another user is not limited.
    s.activate(&users[1].token, "000003")
        .await
        .assert_error(404, Some("invite_code_not_found"));
}

// ---------------------------------------------------------------- referrals

async fn referred(s: &Server, owner: &User, users: &[User]) {
    for u in users {
        let r = s.activate(&u.token, &owner.invite_code).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
}

/// Pages in order, `limit` bounds, a bad cursor.
pub async fn referrals_pagination(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    let users = s.login_many(1, 8).await;
    let (owner, rest) = users.split_first().expect("users");
    referred(&s, owner, rest).await;
    let want: Vec<&str> = rest.iter().map(|u| u.phone.as_str()).collect();

    let mut got = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/profile/referrals?limit=3&cursor={}", enc(c)),
            None => "/api/profile/referrals?limit=3".to_owned(),
        };
        let r = s.get_auth(&path, &owner.token).await;
        assert_eq!(r.status, 200, "{r:?}");
        let items = r.body["items"].as_array().expect("items");
        assert!(items.len() <= 3);
        for item in items {
            assert!(item["activated_at"].as_str().is_some());
            got.push(item["phone"].as_str().expect("phone").to_owned());
        }
        pages += 1;
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => {
                assert_eq!(r.body["next_cursor"], Value::Null);
                break;
            }
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(got, want, "oldest first, each once");
    assert_eq!(pages, 3);

    // Default and bounds.
    let r = s.get_auth("/api/profile/referrals", &owner.token).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(7));
    assert_eq!(r.body["next_cursor"], Value::Null);
    for ok in ["1", "500"] {
        let r = s
            .get_auth(&format!("/api/profile/referrals?limit={ok}"), &owner.token)
            .await;
        assert_eq!(r.status, 200, "limit={ok}: {r:?}");
    }
    for bad in ["0", "501", "-1", "abc", "", "1.5", "99999999999999999999"] {
        s.get_auth(&format!("/api/profile/referrals?limit={bad}"), &owner.token)
            .await
            .assert_error(400, Some("invalid_limit"));
    }
    for bad in ["abc", "!!!", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ""] {
        s.get_auth(
            &format!("/api/profile/referrals?cursor={}", enc(bad)),
            &owner.token,
        )
        .await
        .assert_error(400, Some("invalid_cursor"));
    }
    // A user with no referrals.
    let r = s.get_auth("/api/profile/referrals", &rest[0].token).await;
    assert_eq!(r.body, json!({ "items": [], "next_cursor": null }));
}

/// The profile lists the first 100 referrals and counts them all; a default
/// page holds 50.
pub async fn profile_lists_first_100(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    let owner = s.login(&phone(0)).await;
    let users = s.login_many(1, 101).await;
    referred(&s, &owner, &users).await;
    let p = s.profile(&owner.token).await;
    assert_eq!(p["referral_count"], 101);
    let listed: Vec<&str> = p["referrals"]
        .as_array()
        .expect("referrals")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let want: Vec<&str> = users.iter().take(100).map(|u| u.phone.as_str()).collect();
    assert_eq!(listed, want);
    let r = s.get_auth("/api/profile/referrals", &owner.token).await;
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(50));
    assert!(r.body["next_cursor"].is_string());
    let r = s
        .get_auth("/api/profile/referrals?limit=500", &owner.token)
        .await;
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(101));
    assert_eq!(r.body["next_cursor"], Value::Null);
}

// ---------------------------------------------------------------- dev outbox, health, docs

/// The outbox answers the latest code, 404 when none; off: 404.
pub async fn dev_outbox(ctx: Ctx) {
    let s = ctx
        .server(&[("REFERRAL_OTP_RESEND_COOLDOWN_SECS", "0")])
        .await;
    s.get(&format!("/api/dev/sms?phone={}", enc(&phone(1))))
        .await
        .assert_error(404, Some("not_found"));
    s.send_code(&phone(1)).await;
    let latest = s.send_code(&phone(1)).await;
    let r = s
        .get(&format!("/api/dev/sms?phone={}", enc("+7 999 000 00 01")))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["code"], latest);
    assert_eq!(r.body["phone"], phone(1));

    let off = ctx.server(&[("REFERRAL_DEV_OUTBOX", "0")]).await;
    assert_eq!(off.request_code(&phone(1)).await.status, 202);
    off.get(&format!("/api/dev/sms?phone={}", enc(&phone(1))))
        .await
        .assert_error(404, Some("not_found"));
}

/// `/api/openapi.json` is OpenAPI 3.1 with every route and its errors.
pub async fn openapi_document(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    let r = s.get("/api/openapi.json").await;
    assert_eq!(r.status, 200);
    assert!(
        r.content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/json"))
    );
    let doc = &r.body;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{doc}"
    );
    let routes: [(&str, &str, &[&str]); 7] = [
        ("/api/auth/code", "post", &["202", "400", "429", "503"]),
        ("/api/auth/verify", "post", &["200", "400", "401", "429"]),
        ("/api/profile", "get", &["200", "401"]),
        (
            "/api/profile/invite",
            "post",
            &["200", "400", "401", "404", "409", "422", "429"],
        ),
        ("/api/profile/referrals", "get", &["200", "400", "401"]),
        ("/api/dev/sms", "get", &["200", "404"]),
        ("/health", "get", &["200", "503"]),
    ];
    for (path, method, statuses) in routes {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing");
        for status in statuses {
            assert!(
                op["responses"][status].is_object(),
                "{method} {path} lacks {status}"
            );
        }
    }
}

/// `/`, `/admin` and `/docs` are served with everything they load (scripts under
/// `/assets/` and `/docs/`), nothing from outside.
pub async fn web_pages(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    for path in ["/", "/admin", "/docs"] {
        let r = s.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.content_type
                .as_deref()
                .is_some_and(|c| c.starts_with("text/html")),
            "{path}: {r:?}"
        );
        for outside in [
            "src=\"http",
            "href=\"http",
            "src=\"//",
            "src='http",
            "//cdn",
        ] {
            assert!(!r.text.contains(outside), "{path} loads {outside}");
        }
        // Every script it loads is served by the server.
        for part in r.text.split("<script").skip(1) {
            let tag = part.split('>').next().unwrap_or_default();
            if let Some(src) = tag.split("src=\"").nth(1).and_then(|x| x.split('"').next()) {
                let script = s.get(src).await;
                assert_eq!(script.status, 200, "{path} loads {src}");
                assert!(!script.text.is_empty());
            }
        }
    }
    let page = s.get("/").await.text;
    for hook in [
        "name=\"phone\"",
        "name=\"code\"",
        "name=\"invite_code\"",
        "id=\"invite-code\"",
        "id=\"activated-invite-code\"",
        "id=\"referrals\"",
        "role=\"alert\"",
        "id=\"dev-code\"",
    ] {
        assert!(page.contains(hook), "/ lacks {hook}");
    }
}

// ---------------------------------------------------------------- conventions

/// Content types, malformed JSON, missing and mistyped fields, body size,
/// unknown routes and wrong methods: all with the JSON envelope.
pub async fn json_conventions(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    let post = |path: &str, content_type: Option<&str>, body: String| {
        let mut b = s.client().post(s.url(path)).body(body);
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        b
    };
    let json_ct = Some("application/json");
    // Wrong or missing content type: 415.
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        s.send(post(
            "/api/auth/code",
            ct,
            json!({ "phone": phone(1) }).to_string(),
        ))
        .await
        .assert_error(415, None);
    }
    // Malformed JSON, missing and mistyped fields, not an object: 400.
    for body in [
        "{",
        "",
        "not json",
        "{}",
        r#"{"phone": 79990000001}"#,
        r#"{"phone": null}"#,
        "[]",
        r#""+79990000001""#,
    ] {
        s.send(post("/api/auth/code", json_ct, body.to_owned()))
            .await
            .assert_error(400, None);
    }
    s.send(post(
        "/api/auth/verify",
        json_ct,
        json!({ "phone": phone(1) }).to_string(),
    ))
    .await
    .assert_error(400, None);
    s.send(post(
        "/api/auth/verify",
        json_ct,
        json!({ "phone": phone(1), "code": 1234 }).to_string(),
    ))
    .await
    .assert_error(400, None);
    // Unknown fields are ignored; a charset parameter is fine.
    let r = s
        .send(post(
            "/api/auth/code",
            Some("application/json; charset=utf-8"),
            json!({ "phone": phone(1), "extra": [1, 2, 3] }).to_string(),
        ))
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    // Just under 16 KiB is fine; over it is 413.
    let pad = "x".repeat(15 * 1024);
    let r = s
        .send(post(
            "/api/auth/code",
            json_ct,
            json!({ "phone": phone(2), "pad": pad }).to_string(),
        ))
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let pad = "x".repeat(17 * 1024);
    s.send(post(
        "/api/auth/code",
        json_ct,
        json!({ "phone": phone(3), "pad": pad }).to_string(),
    ))
    .await
    .assert_error(413, None);
    // The authenticated route too.
    let user = s.login(&phone(4)).await;
    s.send(
        s.client()
            .post(s.url("/api/profile/invite"))
            .bearer_auth(&user.token)
            .header("content-type", "text/plain")
            .body("{\"invite_code\":\"AAAAAA\"}"),
    )
    .await
    .assert_error(415, None);
    s.send(
        s.client()
            .post(s.url("/api/profile/invite"))
            .bearer_auth(&user.token)
            .header("content-type", "application/json")
            .body("{\"code\":\"AAAAAA\"}"),
    )
    .await
    .assert_error(400, None);
    // Unknown routes: 404 not_found.
    for path in [
        "/nope",
        "/api",
        "/api/nope",
        "/api/auth/code/extra",
        "/docs/nope.js",
        "/assets/nope.js",
        "/assets/index.html",
    ] {
        s.get(path).await.assert_error(404, Some("not_found"));
    }
    s.send(post("/api/nope", json_ct, "{}".to_owned()))
        .await
        .assert_error(404, Some("not_found"));
    // Wrong methods: 405.
    let c = s.client();
    for req in [
        c.get(s.url("/api/auth/code")),
        c.get(s.url("/api/auth/verify")),
        c.delete(s.url("/api/profile")),
        c.put(s.url("/api/profile/invite")),
        c.post(s.url("/api/profile/referrals")),
        c.post(s.url("/health")),
        c.post(s.url("/api/openapi.json")),
        c.delete(s.url("/api/dev/sms")),
    ] {
        s.send(req).await.assert_error(405, None);
    }
}

// ---------------------------------------------------------------- races

/// One phone, many concurrent code requests: exactly one is sent.
pub async fn race_one_phone_many_codes(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    let p1 = phone(1);
    let answers = join_all((0..20).map(|_| s.request_code(&p1))).await;
    let sent = answers.iter().filter(|r| r.status == 202).count();
    assert_eq!(sent, 1, "{answers:?}");
    for r in answers.iter().filter(|r| r.status != 202) {
        r.assert_error(429, Some("too_many_requests"));
    }
}

/// One code, many concurrent verifies: exactly one logs in.
pub async fn race_one_code_many_verifies(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    let code = s.send_code(&phone(1)).await;
    let p1 = phone(1);
    let answers = join_all((0..20).map(|_| s.verify(&p1, &code))).await;
    let ok: Vec<_> = answers.iter().filter(|r| r.status == 200).collect();
    assert_eq!(ok.len(), 1, "{answers:?}");
    assert_eq!(ok[0].body["new_user"], true);
    for r in answers.iter().filter(|r| r.status != 200) {
        r.assert_error(401, Some("otp_invalid"));
    }
}

/// One user racing to activate many codes: exactly one wins.
pub async fn race_one_user_many_codes(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    let users = s.login_many(1, 11).await;
    let (me, owners) = users.split_first().expect("users");
    let answers = join_all(owners.iter().map(|o| s.activate(&me.token, &o.invite_code))).await;
    let won: Vec<_> = answers.iter().filter(|r| r.status == 200).collect();
    assert_eq!(won.len(), 1, "{answers:?}");
    for r in answers.iter().filter(|r| r.status != 200) {
        r.assert_error(409, Some("invite_already_activated"));
    }
    let p = s.profile(&me.token).await;
    assert_eq!(
        p["activated_invite_code"],
        won[0].body["activated_invite_code"]
    );
    let mut total = 0;
    for o in owners {
        total += s.profile(&o.token).await["referral_count"]
            .as_u64()
            .expect("count");
    }
    assert_eq!(total, 1);
}

/// Many users activating one code at once: all succeed, all counted.
pub async fn race_many_users_one_code(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    let owner = s.login(&phone(0)).await;
    let users = s.login_many(1, 30).await;
    let answers = join_all(
        users
            .iter()
            .map(|u| s.activate(&u.token, &owner.invite_code)),
    )
    .await;
    for r in &answers {
        assert_eq!(r.status, 200, "{r:?}");
    }
    let p = s.profile(&owner.token).await;
    assert_eq!(p["referral_count"], 30);
    let listed: HashSet<&str> = p["referrals"]
        .as_array()
        .expect("referrals")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(listed.len(), 30);
}

/// Mutual activations at once: one wins, the other is a cycle; a triangle
/// never closes.
pub async fn race_mutual_activations(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    let users = s.login_many(1, 16).await;
    for pair in users[..10].chunks(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let answers = join_all([
            s.activate(&a.token, &b.invite_code),
            s.activate(&b.token, &a.invite_code),
        ])
        .await;
        let ok = answers.iter().filter(|r| r.status == 200).count();
        assert_eq!(ok, 1, "{answers:?}");
        for r in answers.iter().filter(|r| r.status != 200) {
            r.assert_error(422, Some("referral_cycle"));
        }
    }
    for t in users[10..].chunks(3) {
        let answers = join_all([
            s.activate(&t[0].token, &t[1].invite_code),
            s.activate(&t[1].token, &t[2].invite_code),
            s.activate(&t[2].token, &t[0].invite_code),
        ])
        .await;
        let ok = answers.iter().filter(|r| r.status == 200).count();
        assert!((1..=2).contains(&ok), "{answers:?}");
        for r in answers.iter().filter(|r| r.status != 200) {
            r.assert_error(422, Some("referral_cycle"));
        }
    }
}

/// 300 code requests at once with the default 1–2 s delay finish in about
/// one delay, while `/health` stays fast.
pub async fn concurrent_codes_do_not_block(ctx: Ctx) {
    let s = ctx.server(&[("REFERRAL_SMS_DELAY_MS", "1000-2000")]).await;
    // Warm up the connection pool path once.
    assert_eq!(s.get("/health").await.status, 200);
    let started = Instant::now();
    let done = std::sync::atomic::AtomicBool::new(false);
    let probe = async {
        let mut times = Vec::new();
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let t = Instant::now();
            let r = s.get("/health").await;
            assert_eq!(r.status, 200, "{r:?}");
            times.push(t.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        times.sort();
        times
    };
    let phones: Vec<String> = (0..300).map(phone).collect();
    let requests = async {
        let answers = join_all(phones.iter().map(|p| s.request_code(p))).await;
        let total = started.elapsed();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (answers, total)
    };
    let (times, (answers, total)) = tokio::join!(probe, requests);
    let probes = times.len();
    let worst_health = times.last().copied().unwrap_or_default();
    let median_health = times.get(probes / 2).copied().unwrap_or_default();
    for r in &answers {
        assert_eq!(r.status, 202, "{r:?}");
    }
    let slowest = answers.iter().map(|r| r.elapsed).max().unwrap_or_default();
    eprintln!(
        "300 concurrent code requests ({:?}): all in {total:?}, slowest {slowest:?}; \
         /health median {median_health:?}, worst {worst_health:?} over {probes} probes",
        ctx.backend()
    );
    assert!(
        total >= Duration::from_millis(1000),
        "the delay applies: {total:?}"
    );
    assert!(total < Duration::from_secs(5), "about one delay: {total:?}");
    // The delay is a timer, not a blocked thread: /health answers in
    // milliseconds while 300 requests wait. On PostgreSQL a probe may queue
    // for a pooled connection during the burst of inserts (behind PgBouncer,
    // on a loaded machine, one took 1.16 s), so the worst probe is only held
    // under the longest delay; blocked threads would also break `total`.
    assert!(
        median_health < Duration::from_millis(100),
        "/health stays fast: median {median_health:?}"
    );
    assert!(
        worst_health < Duration::from_millis(2000),
        "/health never waits for a delay: worst {worst_health:?}"
    );
    assert!(probes >= 5, "/health was probed throughout: {probes}");
}

// ---------------------------------------------------------------- PostgreSQL only

/// Two processes on one database: a code sent by one verifies on the other;
/// limits and the one-invite rule hold across both.
pub async fn two_servers_share_one_store(ctx: Ctx) {
    assert_eq!(ctx.backend(), Backend::Postgres);
    let db = ctx.fresh_store().await.expect("a database");
    let env = [("REFERRAL_OTP_MAX_ATTEMPTS", "3")];
    let a = ctx.server_on(Some(&db), &env).await;
    let b = ctx.server_on(Some(&db), &env).await;
    // Sent by A, verified on B.
    let code = a.send_code(&phone(1)).await;
    let r = b.verify(&phone(1), &code).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["new_user"], true);
    let u1 = r.body["access_token"].as_str().expect("token").to_owned();
    // A's token works on B and the other way round.
    let p = a.profile(&u1).await;
    assert_eq!(p["phone"], phone(1));
    // The cooldown holds across both.
    assert_eq!(a.request_code(&phone(2)).await.status, 202);
    b.request_code(&phone(2))
        .await
        .assert_error(429, Some("too_many_requests"));
    // Wrong guesses count across both: the code burns after 3 in all.
    let code = a.outbox_code(&phone(2)).await;
    let wrong = wrong_code(&code);
    a.verify(&phone(2), &wrong)
        .await
        .assert_error(401, Some("otp_invalid"));
    b.verify(&phone(2), &wrong)
        .await
        .assert_error(401, Some("otp_invalid"));
    a.verify(&phone(2), &wrong)
        .await
        .assert_error(401, Some("otp_invalid"));
    b.verify(&phone(2), &code)
        .await
        .assert_error(429, Some("too_many_requests"));
    // One invite per user, whichever server each request hits.
    let owners_a = a.login_many(10, 4).await;
    let owners_b = b.login_many(20, 4).await;
    let me = a.login(&phone(30)).await;
    let mut requests = Vec::new();
    for (oa, ob) in owners_a.iter().zip(&owners_b) {
        requests.push(a.activate(&me.token, &ob.invite_code));
        requests.push(b.activate(&me.token, &oa.invite_code));
    }
    let answers = join_all(requests).await;
    assert_eq!(
        answers.iter().filter(|r| r.status == 200).count(),
        1,
        "{answers:?}"
    );
    // Mutual activations split across the servers: one wins.
    let (x, y) = (&owners_a[0], &owners_b[0]);
    let answers = join_all([
        a.activate(&x.token, &y.invite_code),
        b.activate(&y.token, &x.invite_code),
    ])
    .await;
    let ok = answers.iter().filter(|r| r.status == 200).count();
    assert!(ok <= 1, "{answers:?}");
    for r in answers.iter().filter(|r| r.status != 200) {
        assert!(
            matches!(r.code(), "referral_cycle" | "invite_already_activated"),
            "{r:?}"
        );
    }
}

/// A restart on the same database keeps users, codes, activations, limits
/// and tokens (same `REFERRAL_JWT_SECRET`).
pub async fn restart_keeps_state(ctx: Ctx) {
    assert_eq!(ctx.backend(), Backend::Postgres);
    let db = ctx.fresh_store().await.expect("a database");
    let first = ctx.server_on(Some(&db), &[]).await;
    let a = first.login(&phone(1)).await;
    let b = first.login(&phone(2)).await;
    assert_eq!(first.activate(&b.token, &a.invite_code).await.status, 200);
    let pending = first.send_code(&phone(3)).await;
    assert_eq!(first.terminate(Duration::from_secs(10)).await, Some(0));

    let second = ctx.server_on(Some(&db), &[]).await;
    // Tokens still work; the activation is there.
    let p = second.profile(&a.token).await;
    assert_eq!(p["referrals"], json!([b.phone]));
    assert_eq!(p["invite_code"], a.invite_code);
    let p = second.profile(&b.token).await;
    assert_eq!(p["activated_invite_code"], a.invite_code);
    // The code sent before the restart verifies after it.
    let r = second.verify(&phone(3), &pending).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["new_user"], true);
    // The cooldown of phone 1 survived too.
    second
        .request_code(&phone(1))
        .await
        .assert_error(429, Some("too_many_requests"));
    // The users are the same users.
    let p = second.profile(&b.token).await;
    assert_eq!(p["id"], b.id);
}

/// With the database out of reach, routes answer 503 `unavailable` quickly
/// and `/health` answers 503 `{"status": "unavailable"}`.
pub async fn store_outage(ctx: Ctx) {
    assert_eq!(ctx.backend(), Backend::Postgres);
    let db = ctx.fresh_store().await.expect("a database");
    let Some(proxy) = PgProxy::start(&db).await else {
        eprintln!("skipping store_outage: DATABASE_URL does not name a TCP host");
        return;
    };
    let s = ctx.server_on(Some(&proxy.url), &[]).await;
    let user = s.login(&phone(1)).await;
    assert_eq!(s.get("/health").await.status, 200);
    proxy.cut();
    let r = s.get("/health").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.body, json!({ "status": "unavailable" }));
    assert!(r.elapsed < Duration::from_secs(5), "{:?}", r.elapsed);
    let p2 = phone(2);
    let (a, b, c, d, e) = tokio::join!(
        s.request_code(&p2),
        s.verify(&p2, "1234"),
        s.get_auth("/api/profile", &user.token),
        s.activate(&user.token, "AAAAAA"),
        s.get_auth("/api/profile/referrals", &user.token),
    );
    for r in [a, b, c, d, e] {
        r.assert_error(503, Some("unavailable"));
        assert!(r.elapsed < Duration::from_secs(10), "{:?}", r.elapsed);
    }
}

// ---------------------------------------------------------------- SMS providers and test phones

/// `REFERRAL_TEST_PHONES`: a listed phone gets its fixed code and no SMS,
/// and that code still obeys request-first, single use, attempts and
/// expiry; other phones are unaffected. (That every use is logged at WARN,
/// never the code, is [`test_phones_logged`]: it reads a process's stderr.)
pub async fn test_phones(ctx: Ctx) {
    const FIXED: &str = "80917263";
    let test = phone(900);
    let list = format!("{test}:{FIXED}");
    let s = ctx
        .server(&[
            ("REFERRAL_TEST_PHONES", list.as_str()),
            ("REFERRAL_OTP_LENGTH", "8"),
            ("REFERRAL_OTP_RESEND_COOLDOWN_SECS", "0"),
            ("REFERRAL_OTP_MAX_ATTEMPTS", "3"),
            ("REFERRAL_OTP_TTL_SECS", "2"),
        ])
        .await;
    let outbox = |p: &str| format!("/api/dev/sms?phone={}", enc(p));
    // Not usable before it is requested.
    s.verify(&test, FIXED)
        .await
        .assert_error(401, Some("otp_invalid"));
    assert_eq!(s.request_code(&test).await.status, 202);
    // No SMS: nothing in the dev outbox.
    s.get(&outbox(&test))
        .await
        .assert_error(404, Some("not_found"));
    let r = s.verify(&test, FIXED).await;
    assert_eq!(r.status, 200, "{r:?}");
    // Single use.
    s.verify(&test, FIXED)
        .await
        .assert_error(401, Some("otp_invalid"));
    // Attempts.
    assert_eq!(s.request_code(&test).await.status, 202);
    for _ in 0..3 {
        s.verify(&test, "13572468")
            .await
            .assert_error(401, Some("otp_invalid"));
    }
    s.verify(&test, FIXED)
        .await
        .assert_error(429, Some("too_many_requests"));
    // Expiry.
    assert_eq!(s.request_code(&test).await.status, 202);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    s.verify(&test, FIXED)
        .await
        .assert_error(401, Some("otp_expired"));
    // Other phones: a (simulated) SMS with a random code; the fixed code
    // does not log them in.
    let other = phone(901);
    let code = s.send_code(&other).await;
    if code != FIXED {
        s.verify(&other, FIXED)
            .await
            .assert_error(401, Some("otp_invalid"));
    }
    assert_eq!(s.verify(&other, &code).await.status, 200);
}

/// A server process with `REFERRAL_TEST_PHONES`: every use of a test phone
/// (a code issued, a login) is logged at WARN, and the fixed code never is;
/// a list the service refuses (a code of the wrong length) stops the start.
pub async fn test_phones_logged(ctx: Ctx) {
    const FIXED: &str = "80917263";
    let test = phone(900);
    let list = format!("{test}:{FIXED}");
    let store = ctx.fresh_store().await;
    let (s, logs) = ctx
        .server_with_logs(
            store.as_deref(),
            &[
                ("REFERRAL_TEST_PHONES", list.as_str()),
                ("REFERRAL_OTP_LENGTH", "8"),
                ("REFERRAL_OTP_RESEND_COOLDOWN_SECS", "0"),
                ("RUST_LOG", "warn"),
            ],
        )
        .await;
    // Two codes issued, one login.
    assert_eq!(s.request_code(&test).await.status, 202);
    assert_eq!(s.request_code(&test).await.status, 202);
    let r = s.verify(&test, FIXED).await;
    assert_eq!(r.status, 200, "{r:?}");
    // Other phones are not logged as test phones.
    let other = phone(901);
    let code = s.send_code(&other).await;
    assert_eq!(s.verify(&other, &code).await.status, 200);
    // The log lines are written as the requests are answered; give the
    // stderr reader a moment.
    let mut text = logs.text();
    for _ in 0..50 {
        if text.matches("test phone: ").count() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = logs.text();
    }
    let uses: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("test phone: "))
        .collect();
    assert_eq!(uses.len(), 3, "{text}");
    assert!(uses.iter().all(|l| l.contains("WARN")), "{text}");
    assert!(!text.contains(FIXED), "the fixed code was logged: {text}");
    let code = ctx
        .start_fails(&[
            ("REFERRAL_TEST_PHONES", "+79990000900:1234"),
            ("REFERRAL_OTP_LENGTH", "6"),
        ])
        .await;
    assert_ne!(code, Some(0));
}

/// A gateway for the webhook provider: answers `status` to every `POST`.
async fn gateway(status: u16) -> wiremock::MockServer {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(status))
        .mount(&server)
        .await;
    server
}

/// The webhook secret the suites give their servers.
pub const WEBHOOK_SECRET: &str = "a webhook secret of the contract suite";

/// The settings of a server sending through the webhook at `url`.
#[must_use]
pub fn webhook_env(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("REFERRAL_SMS_PROVIDER", "webhook".to_owned()),
        ("REFERRAL_SMS_WEBHOOK_URL", url.to_owned()),
        ("REFERRAL_SMS_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
    ]
}

/// `sha256=<hex HMAC-SHA256 of body under WEBHOOK_SECRET>` (API.md).
fn sign(body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).expect("any key");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// The code in the last message `gateway` received for `phone`, after
/// checking the request is the signed JSON API.md specifies.
///
/// # Panics
/// When there is none, or it is malformed or badly signed.
pub async fn gateway_code(gateway: &wiremock::MockServer, phone: &str) -> String {
    let requests = gateway.received_requests().await.unwrap_or_default();
    let r = requests
        .iter()
        .rev()
        .find(|r| serde_json::from_slice::<Value>(&r.body).is_ok_and(|b| b["phone"] == phone))
        .unwrap_or_else(|| panic!("no message for {phone} at the gateway"));
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let signature = r.headers.get("x-signature").and_then(|v| v.to_str().ok());
    assert_eq!(signature, Some(sign(&r.body).as_str()), "X-Signature");
    let body: Value = serde_json::from_slice(&r.body).expect("JSON");
    assert_eq!(
        body.as_object().map(serde_json::Map::len),
        Some(2),
        "{body}"
    );
    let text = body["text"].as_str().expect("text");
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| (4..=8).contains(&w.len()))
        .unwrap_or_else(|| panic!("no code in {text:?}"))
        .to_owned()
}

/// With a real provider (the webhook, at a local gateway) the code goes to
/// the provider, signed, and the dev outbox is off even with
/// `REFERRAL_DEV_OUTBOX=1`; a gateway answering 400 is 503
/// `sms_unavailable` and leaves no usable code.
pub async fn real_provider(ctx: Ctx) {
    let ok = gateway(200).await;
    let mut env = webhook_env(&format!("{}/sms", ok.uri()));
    env.push(("REFERRAL_DEV_OUTBOX", "1".to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = ctx.server(&env).await;
    assert_eq!(s.request_code(&phone(1)).await.status, 202);
    s.get(&format!("/api/dev/sms?phone={}", enc(&phone(1))))
        .await
        .assert_error(404, Some("not_found"));
    let code = gateway_code(&ok, &phone(1)).await;
    assert_eq!(s.verify(&phone(1), &code).await.status, 200);

    let refusing = gateway(400).await;
    let env = webhook_env(&refusing.uri());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = ctx.server(&env).await;
    s.request_code(&phone(2))
        .await
        .assert_error(503, Some("sms_unavailable"));
    assert_eq!(
        refusing.received_requests().await.unwrap_or_default().len(),
        1,
        "a 400 is not retried"
    );
    let code = gateway_code(&refusing, &phone(2)).await;
    s.verify(&phone(2), &code)
        .await
        .assert_error(401, Some("otp_invalid"));
}

/// A real provider with a setting missing refuses to start, naming the
/// setting.
pub async fn real_provider_setting_missing(ctx: Ctx) {
    for (env, missing) in [
        (
            &[
                ("REFERRAL_SMS_PROVIDER", "twilio"),
                (
                    "REFERRAL_TWILIO_ACCOUNT_SID",
                    "AC0123456789abcdef0123456789abcdef",
                ),
                ("REFERRAL_TWILIO_FROM", "+15005550006"),
            ][..],
            "REFERRAL_TWILIO_AUTH_TOKEN",
        ),
        (
            &[
                ("REFERRAL_SMS_PROVIDER", "twilio"),
                (
                    "REFERRAL_TWILIO_ACCOUNT_SID",
                    "AC0123456789abcdef0123456789abcdef",
                ),
                ("REFERRAL_TWILIO_AUTH_TOKEN", "token"),
            ][..],
            "REFERRAL_TWILIO_FROM",
        ),
        (
            &[("REFERRAL_SMS_PROVIDER", "smsru")][..],
            "REFERRAL_SMSRU_API_ID",
        ),
        (
            &[
                ("REFERRAL_SMS_PROVIDER", "webhook"),
                ("REFERRAL_SMS_WEBHOOK_URL", "http://127.0.0.1:9/sms"),
            ][..],
            "REFERRAL_SMS_WEBHOOK_SECRET",
        ),
    ] {
        let (code, stderr) = ctx.start_fails_output(env).await;
        assert_ne!(code, Some(0), "{env:?}");
        assert!(stderr.contains(missing), "{env:?}: {stderr}");
    }
}
