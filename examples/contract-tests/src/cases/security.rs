//! The abuse and bad-input cases of `SECURITY.md` that need no real
//! process: brute force, the lockout attacker, SMS pumping, enumeration,
//! tokens, hostile JSON, look-alikes and random bodies. They run in process
//! on both servers' apps and both stores like every contract case; two
//! servers on one database are two apps on one PostgreSQL database. What
//! only a server process can show (the socket's peer, the HTTP parser's
//! limits, a body streamed in chunks, the process's logs) stays in
//! `examples/security-tests`.
//!
//! Each case asserts the exact outcome its defence promises, so it fails when
//! that defence is removed: e.g. without the per-phone daily budget the
//! brute-force cases count more than 10 accepted guesses at 4-digit codes,
//! and without the burn at the step-up the right short code still logs in.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::Connection as _;

use crate::harness::{Backend, Ctx, Resp, SECRET, Server, join_all, jwt, phone, unix_now};

/// Wrong guesses for one phone in any rolling 24 h with the default policy
/// (`REFERRAL_OTP_MAX_FAILURES_PER_DAY`).
pub const DAILY_GUESSES: u32 = 10;

/// Wrong guesses that burn one code with the default policy
/// (`REFERRAL_OTP_MAX_ATTEMPTS`).
pub const GUESSES_PER_CODE: u32 = 5;

// ---------------------------------------------------------------- helpers

/// Distinct codes of `code`'s length, never `code` itself: the guesses of an
/// attacker who never hits by luck, so that every guess is a wrong one.
fn wrong_guesses(code: &str) -> impl Iterator<Item = String> + use<> {
    let len = code.len();
    let code = code.to_owned();
    (0u64..)
        .map(move |i| format!("{i:0len$}"))
        .filter(move |g| *g != code)
}

/// Asserts an answer is below 500 and, when an error, has the JSON envelope.
#[track_caller]
fn assert_not_5xx_with_envelope(r: &Resp, what: &str) {
    assert!(r.status < 500, "{what}: a server error: {r:?}");
    if r.status >= 400 {
        let code = r.body["error"]["code"].as_str();
        let message = r.body["error"]["message"].as_str();
        assert!(
            r.content_type
                .as_deref()
                .is_some_and(|c| c.starts_with("application/json"))
                && code.is_some_and(|c| {
                    !c.is_empty()
                        && c.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                })
                && message.is_some_and(|m| !m.is_empty()),
            "{what}: an error without the JSON envelope: {r:?}"
        );
    }
}

/// Wrong guesses a server accepted (401 `otp_invalid`), by the length of
/// the code they were at.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Taken {
    /// At 4-digit codes.
    short: u32,
    /// At stepped-up (8-digit) codes.
    long: u32,
    /// How many 8-digit codes were sent.
    long_codes: u32,
}

impl Taken {
    /// Counts `accepted` guesses at `code`; no short code may follow a long
    /// one (a stepped-up phone stays stepped up for the day).
    #[track_caller]
    fn add(&mut self, code: &str, accepted: u32) {
        match code.len() {
            4 => {
                assert_eq!(self.long_codes, 0, "a 4-digit code after the step-up");
                self.short += accepted;
            }
            8 => {
                assert_eq!(
                    self.short, DAILY_GUESSES,
                    "stepped up before the budget was spent"
                );
                self.long += accepted;
                self.long_codes += 1;
            }
            n => panic!("a code of {n} digits"),
        }
    }

    /// The promise: exactly the daily budget at short codes, and each
    /// stepped-up code takes its 5 attempts, no more.
    #[track_caller]
    fn assert_exact(&self) {
        assert_eq!(
            self.short, DAILY_GUESSES,
            "guesses at 4-digit codes: {self:?}"
        );
        assert!(
            self.long_codes >= 1,
            "the phone was never stepped up: {self:?}"
        );
        assert_eq!(self.long, GUESSES_PER_CODE * self.long_codes, "{self:?}");
    }
}

/// Sends `victim` a code from `sender` (in round `round` of an attack): the
/// code, or `None` once the code route refuses with 429
/// `too_many_requests` (the phone's hourly cap).
async fn next_code(sender: &Server, victim: &str, round: usize) -> Option<String> {
    let r = sender.request_code(victim).await;
    if r.status == 429 {
        r.assert_error(429, Some("too_many_requests"));
        return None;
    }
    assert_eq!(r.status, 202, "round {round}: {r:?}");
    Some(sender.outbox_code(victim).await)
}

/// The brute-force attacker's best plan against one phone: send a code,
/// guess it `plan[round]` times (6 once the plan runs out), send a new one,
/// and so on, round-robin over `servers`, until the code route refuses (the
/// phone's hourly cap). Returns the accepted guesses (401 `otp_invalid`).
async fn guess_serially(servers: &[&Server], victim: &str, plan: &[u32]) -> Taken {
    let mut taken = Taken::default();
    for round in 0..20 {
        let sender = servers[round % servers.len()];
        let Some(code) = next_code(sender, victim, round).await else {
            return taken;
        };
        let per_code = plan.get(round).copied().unwrap_or(6);
        let mut accepted = 0;
        for (i, guess) in wrong_guesses(&code).take(per_code as usize).enumerate() {
            let r = servers[(round + i) % servers.len()]
                .verify(victim, &guess)
                .await;
            match r.status {
                401 => {
                    r.assert_error(401, Some("otp_invalid"));
                    accepted += 1;
                }
                429 => {
                    r.assert_error(429, Some("too_many_requests"));
                    break;
                }
                _ => panic!("round {round}, guess {i}: {r:?}"),
            }
        }
        taken.add(&code, accepted);
        // The code that took the last guess is burned, the right code too.
        if accepted == GUESSES_PER_CODE || (taken.short == DAILY_GUESSES && code.len() == 4) {
            sender
                .verify(victim, &code)
                .await
                .assert_error(429, Some("too_many_requests"));
        }
    }
    panic!("the code route never refused {victim}: {taken:?}");
}

/// Bursts of 20 concurrent wrong guesses at each code (round-robin over
/// `servers`), a new code after each burst, until the code route refuses.
/// Returns the accepted guesses per burst and in all.
async fn guess_in_bursts(servers: &[&Server], victim: &str) -> (Vec<u32>, Taken) {
    let mut bursts = Vec::new();
    let mut taken = Taken::default();
    for round in 0..8 {
        let sender = servers[round % servers.len()];
        let Some(code) = next_code(sender, victim, round).await else {
            return (bursts, taken);
        };
        let answers = join_all(wrong_guesses(&code).take(20).enumerate().map(|(i, guess)| {
            let server = servers[i % servers.len()];
            async move { server.verify(victim, &guess).await }
        }))
        .await;
        let mut accepted = 0;
        for r in answers {
            if r.status == 401 {
                r.assert_error(401, Some("otp_invalid"));
                accepted += 1;
            } else {
                r.assert_error(429, Some("too_many_requests"));
            }
        }
        taken.add(&code, accepted);
        bursts.push(accepted);
    }
    panic!("the code route never refused {victim}: bursts {bursts:?}");
}

/// An answer with every header but `Date`, for byte-for-byte comparisons.
/// An answer with every header but `Date`, for byte-for-byte comparisons.
#[derive(Debug, PartialEq, Eq)]
struct Exact {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

async fn exact(s: &Server, req: reqwest::RequestBuilder, phone: &str) -> Exact {
    let r = s.send(req).await;
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(name, _)| name.as_str() != "date")
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    headers.sort();
    Exact {
        status: r.status,
        headers,
        body: r.text.replace(phone, "PHONE"),
    }
}

async fn exact_code(s: &Server, phone: &str) -> Exact {
    exact(
        s,
        s.client()
            .post(s.url("/api/auth/code"))
            .json(&json!({ "phone": phone })),
        phone,
    )
    .await
}

async fn exact_verify(s: &Server, phone: &str, code: &str) -> Exact {
    exact(
        s,
        s.client()
            .post(s.url("/api/auth/verify"))
            .json(&json!({ "phone": phone, "code": code })),
        phone,
    )
    .await
}

// ---------------------------------------------------------------- brute force

/// The default policy (only the resend cooldown off, so no waiting): however
/// the guesses are spread over resent codes, a phone takes exactly 10 wrong
/// guesses at 4-digit codes (each a 401 `otp_invalid`); the guess that
/// spends them burns the live code, and every later code has 8 digits and
/// takes its 5 attempts, until the phone's hourly cap stops the sending.
/// Other phones are free.
pub async fn brute_force_budget_across_resends(ctx: Ctx) {
    let s = ctx
        .server(&[("REFERRAL_OTP_RESEND_COOLDOWN_SECS", "0")])
        .await;
    let taken = guess_serially(&[&s], &phone(1), &[1, 2, 3]).await;
    taken.assert_exact();
    assert_eq!(
        taken.long_codes, 1,
        "five sends an hour: four short, one long"
    );
    // A code burns after 5: resending at the 5th guess does not help either.
    let taken = guess_serially(&[&s], &phone(2), &[5, 5, 5]).await;
    taken.assert_exact();
    assert_eq!(taken.long_codes, 3);
    // Other phones are untouched.
    let user = s.login(&phone(3)).await;
    assert_eq!(user.phone, phone(3));
}

/// 20 concurrent wrong guesses at one code: exactly 5 are taken (the code's
/// attempts), the rest 429; a resent code takes 5 more and steps the phone
/// up; later codes have 8 digits and take 5 each: 10 at short codes in all,
/// however the requests race.
pub async fn brute_force_concurrent_guesses(ctx: Ctx) {
    let s = ctx
        .server(&[("REFERRAL_OTP_RESEND_COOLDOWN_SECS", "0")])
        .await;
    let (bursts, taken) = guess_in_bursts(&[&s], &phone(1)).await;
    assert_eq!(bursts, [GUESSES_PER_CODE; 5], "per burst");
    taken.assert_exact();
}

/// Two servers on one database (same `REFERRAL_JWT_SECRET`): the
/// guesses, serial or concurrent, spread over both still stop at 10 per
/// phone at short codes, and both step the phone up.
pub async fn brute_force_two_servers(ctx: Ctx) {
    assert_eq!(ctx.backend(), Backend::Postgres);
    let db = ctx.fresh_store().await.expect("a database");
    let env = [("REFERRAL_OTP_RESEND_COOLDOWN_SECS", "0")];
    let a = ctx.server_on(Some(&db), &env).await;
    let b = ctx.server_on(Some(&db), &env).await;
    let taken = guess_serially(&[&a, &b], &phone(1), &[1, 2, 3]).await;
    taken.assert_exact();
    let (bursts, taken) = guess_in_bursts(&[&a, &b], &phone(2)).await;
    assert_eq!(bursts, [GUESSES_PER_CODE; 5], "per burst");
    taken.assert_exact();
}

/// An attacker who knows the owner's phone spends its whole daily failure
/// budget and keeps guessing; the owner, who reads the SMS, logs in every
/// time, on one server or two, and the attacker's guesses keep counting.
/// The per-client limit is on (its default, 30 an hour): the attacker asks
/// from one address (with a forged `X-Forwarded-For`, which changes
/// nothing), the owner from another; the code route announces 4 digits to
/// the attacker and 8 to the owner once the phone is stepped up.
pub async fn attacker_who_knows_the_phone(ctx: Ctx) {
    let db = match ctx.backend() {
        Backend::Postgres => Some(ctx.fresh_store().await.expect("a database")),
        _ => None,
    };
    let env = [
        ("REFERRAL_OTP_RESEND_COOLDOWN_SECS", "0"),
        ("REFERRAL_IP_MAX_SENDS_PER_HOUR", "30"),
    ];
    let a = ctx.server_on(db.as_deref(), &env).await;
    let b = match &db {
        Some(db) => Some(ctx.server_on(Some(db.as_str()), &env).await),
        None => None,
    };
    let servers: Vec<&Server> = [Some(&a), b.as_ref()].into_iter().flatten().collect();
    let (attacker, owner_address) = (IpAddr::from([127, 0, 0, 2]), IpAddr::from([127, 0, 0, 3]));
    let owner = phone(7);
    let mut user = None;
    let mut sends = 0;
    for round in 0..2 {
        // The attacker: a code (the owner's phone buzzes), wrong guesses
        // until it burns; twice in the first round (the budget is spent).
        for _ in 0..(2 - round) {
            let s = servers[sends % servers.len()];
            let r = s
                .request_code_from(attacker, Some("203.0.113.7"), &owner)
                .await;
            assert_eq!(r.status, 202, "round {round}: {r:?}");
            assert_eq!(r.body["code_length"], if round == 0 { 4 } else { 8 });
            sends += 1;
            let code = s.outbox_code(&owner).await;
            for guess in wrong_guesses(&code).take(GUESSES_PER_CODE as usize) {
                s.verify(&owner, &guess)
                    .await
                    .assert_error(401, Some("otp_invalid"));
            }
            s.verify(&owner, &code)
                .await
                .assert_error(429, Some("too_many_requests"));
        }
        // The owner asks for a code and types the SMS: 8 digits, and in.
        let s = servers[sends % servers.len()];
        let r = s.request_code_from(owner_address, None, &owner).await;
        assert_eq!(
            r.status, 202,
            "round {round}: the owner is not locked out: {r:?}"
        );
        assert_eq!(r.body["code_length"], 8, "round {round}: stepped up");
        sends += 1;
        let code = s.outbox_code(&owner).await;
        assert_eq!(code.len(), 8, "round {round}: stepped up");
        let r = servers[(sends + 1) % servers.len()]
            .verify(&owner, &code)
            .await;
        assert_eq!(r.status, 200, "round {round}: the owner logs in: {r:?}");
        let id = r.body["profile"]["id"].clone();
        if let Some(first) = &user {
            assert_eq!(&id, first, "round {round}: the same account");
        }
        user = Some(id);
    }
}

// ---------------------------------------------------------------- SMS pumping

/// `REFERRAL_SMS_MAX_SENDS_PER_HOUR=3`: three distinct phones get a code, the
/// fourth 503 `sms_unavailable` with `Retry-After`, and nothing is sent to it;
/// codes already sent still log in. Concurrent requests cannot overspend it.
pub async fn sms_global_budget(ctx: Ctx) {
    let s = ctx
        .server(&[("REFERRAL_SMS_MAX_SENDS_PER_HOUR", "3")])
        .await;
    for i in 1..=3 {
        let r = s.request_code(&phone(i)).await;
        assert_eq!(r.status, 202, "{r:?}");
    }
    for i in 4..=5 {
        let secs = s
            .request_code(&phone(i))
            .await
            .assert_error(503, Some("sms_unavailable"))
            .expect("Retry-After on the spent budget");
        assert!((1..=3600).contains(&secs), "{secs}");
        s.assert_nothing_sent(&phone(i)).await;
    }
    let code = s.outbox_code(&phone(1)).await;
    assert_eq!(s.verify(&phone(1), &code).await.status, 200);

    let s = ctx
        .server(&[("REFERRAL_SMS_MAX_SENDS_PER_HOUR", "5")])
        .await;
    let phones: Vec<String> = (100..112).map(phone).collect();
    let answers = join_all(phones.iter().map(|p| s.request_code(p))).await;
    let sent = answers.iter().filter(|r| r.status == 202).count();
    assert_eq!(sent, 5, "{answers:?}");
    for r in answers.iter().filter(|r| r.status != 202) {
        r.assert_error(503, Some("sms_unavailable"))
            .expect("Retry-After");
    }
}

/// The global budget is one budget for every server sharing the database.
pub async fn sms_global_budget_two_servers(ctx: Ctx) {
    assert_eq!(ctx.backend(), Backend::Postgres);
    let db = ctx.fresh_store().await.expect("a database");
    let env = [("REFERRAL_SMS_MAX_SENDS_PER_HOUR", "4")];
    let a = ctx.server_on(Some(&db), &env).await;
    let b = ctx.server_on(Some(&db), &env).await;
    for (i, s) in [(1, &a), (2, &a), (3, &b), (4, &b)] {
        let r = s.request_code(&phone(i)).await;
        assert_eq!(r.status, 202, "{r:?}");
    }
    for (i, s) in [(5, &a), (6, &b)] {
        s.request_code(&phone(i))
            .await
            .assert_error(503, Some("sms_unavailable"))
            .expect("Retry-After");
        s.assert_nothing_sent(&phone(i)).await;
    }
    // Concurrently, on a fresh database: still 4 in all.
    let db = ctx.fresh_store().await.expect("a database");
    let a = ctx.server_on(Some(&db), &env).await;
    let b = ctx.server_on(Some(&db), &env).await;
    let phones: Vec<String> = (100..112).map(phone).collect();
    let answers = join_all(phones.iter().enumerate().map(|(i, p)| {
        let s = if i % 2 == 0 { &a } else { &b };
        s.request_code(p)
    }))
    .await;
    assert_eq!(
        answers.iter().filter(|r| r.status == 202).count(),
        4,
        "{answers:?}"
    );
}

/// `REFERRAL_ALLOWED_COUNTRY_CODES=7`: a UK (+44) or US (+1) phone answers
/// 400 `invalid_phone` and nothing is sent; with `7,44` the same UK phone
/// gets its code (so the refusal came from the allow-list).
pub async fn sms_country_allow_list(ctx: Ctx) {
    let uk = "+447911123456";
    let s = ctx.server(&[("REFERRAL_ALLOWED_COUNTRY_CODES", "7")]).await;
    for p in [uk, "+44 7911 123456", "+1 202 555 0143"] {
        s.request_code(p)
            .await
            .assert_error(400, Some("invalid_phone"));
    }
    s.assert_nothing_sent(uk).await;
    let r = s.verify(uk, "1234").await;
    assert!(matches!(r.status, 400 | 401), "{r:?}");
    assert_eq!(s.request_code(&phone(1)).await.status, 202);

    let s = ctx
        .server(&[("REFERRAL_ALLOWED_COUNTRY_CODES", "7,44")])
        .await;
    let r = s.request_code(uk).await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(s.outbox_code(uk).await.len(), 4);
}

// ---------------------------------------------------------------- enumeration

/// The code route (and a wrong guess on the verify route) answers a user's
/// phone exactly as it answers a stranger's: same status, same headers (all
/// but `Date`), same body byte for byte but for the phone itself.
pub async fn enumeration_code_route_alike(ctx: Ctx) {
    let s = ctx
        .server(&[("REFERRAL_OTP_RESEND_COOLDOWN_SECS", "0")])
        .await;
    let (known, stranger, fresh) = (phone(1), phone(2), phone(3));
    s.login(&known).await;
    // The stranger with the same history: one code sent, never used.
    assert_eq!(s.request_code(&stranger).await.status, 202);
    let a = exact_code(&s, &known).await;
    assert_eq!(a.status, 202, "{a:?}");
    assert_eq!(a, exact_code(&s, &stranger).await, "known vs stranger");
    assert_eq!(a, exact_code(&s, &fresh).await, "known vs never seen");
    // A wrong guess at a live code.
    let a = exact_verify(&s, &known, "0000").await;
    let b = exact_verify(&s, &stranger, "0000").await;
    if a.status == 401 && b.status == 401 {
        assert_eq!(a, b, "wrong guess: known vs stranger");
    }
    // A guess where no code is live: a user whose code was used, and a phone
    // never seen.
    s.login(&phone(4)).await;
    let a = exact_verify(&s, &phone(4), "0000").await;
    assert_eq!(a.status, 401, "{a:?}");
    assert_eq!(a, exact_verify(&s, &phone(5), "0000").await, "no live code");

    // With the default cooldown, the 429 of a user and of a stranger.
    let s = ctx.server(&[]).await;
    s.login(&known).await;
    assert_eq!(s.request_code(&stranger).await.status, 202);
    let mut a = exact_code(&s, &known).await;
    let mut b = exact_code(&s, &stranger).await;
    assert_eq!(a.status, 429, "{a:?}");
    // Retry-After may differ by the second that passed between the sends.
    for x in [&mut a, &mut b] {
        for (name, value) in &mut x.headers {
            if name == "retry-after" {
                let secs: u64 = value.parse().expect("whole seconds");
                assert!((55..=60).contains(&secs), "{secs}");
                "5x".clone_into(value);
            }
        }
    }
    assert_eq!(a, b, "cooldown: known vs stranger");
}

/// Unknown invite codes are limited per user (10 an hour by default): the
/// 11th activation answers 429 with `Retry-After` even for a real code, and
/// changes nothing; another user is not limited.
pub async fn enumeration_invite_codes_limited(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    let users = s.login_many(1, 3).await;
    let (owner, attacker, other) = (&users[0], &users[1], &users[2]);
    // '0' and '1' are not in the invite alphabet: these codes never exist.
    for i in 0..10 {
        s.activate(&attacker.token, &format!("0000{i:02}"))
            .await
            .assert_error(404, Some("invite_code_not_found"));
    }
    for code in [owner.invite_code.as_str(), "000099"] {
        let secs = s
            .activate(&attacker.token, code)
            .await
            .assert_error(429, Some("too_many_requests"))
            .expect("Retry-After");
        assert!((3000..=3600).contains(&secs), "{secs}");
    }
    let p = s.profile(&attacker.token).await;
    assert_eq!(p["activated_invite_code"], Value::Null, "{p}");
    assert_eq!(s.profile(&owner.token).await["referral_count"], 0);
    let r = s.activate(&other.token, &owner.invite_code).await;
    assert_eq!(r.status, 200, "{r:?}");
}

// ---------------------------------------------------------------- tokens

/// Every way of holding a token the server did not issue, or no longer
/// honours, answers 401 `unauthorized` on every authenticated route; the
/// real token still works.
pub async fn tokens_refused(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    let user = s.login(&phone(1)).await;
    let now = unix_now();
    let good = json!({ "sub": user.id, "iat": now, "exp": now + 3600 });
    let secret = SECRET.as_bytes();
    // The login-code key the server derives from the same secret.
    let otp_key = {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
        mac.update(b"otp");
        mac.finalize().into_bytes().to_vec()
    };
    let mut off_by_one = secret.to_vec();
    off_by_one[0] ^= 1;
    let longer = [secret, b"x"].concat();
    let (head, rest) = user.token.split_once('.').expect("a JWT");
    let (payload, signature) = rest.split_once('.').expect("a JWT");
    let mut tokens: Vec<(&str, String)> = vec![
        (
            "forged (another secret)",
            jwt(b"another-secret-another-secret-0123", "HS256", &good),
        ),
        (
            "wrong key (secret, one bit off)",
            jwt(&off_by_one, "HS256", &good),
        ),
        ("wrong key (secret + 1 byte)", jwt(&longer, "HS256", &good)),
        (
            "wrong key (the derived login-code key)",
            jwt(&otp_key, "HS256", &good),
        ),
        (
            "expired",
            jwt(
                secret,
                "HS256",
                &json!({ "sub": user.id, "iat": now - 600, "exp": now - 2 }),
            ),
        ),
        ("alg none", jwt(b"", "none", &good)),
        ("alg None", jwt(b"", "None", &good)),
        ("alg NONE", jwt(b"", "NONE", &good)),
        (
            "alg none with a valid signature",
            format!("{}{signature}", jwt(b"", "none", &good)),
        ),
        ("alg HS512 header", jwt(secret, "HS512", &good)),
        ("alg HS384 header", jwt(secret, "HS384", &good)),
        ("alg RS256 header", jwt(secret, "RS256", &good)),
        ("alg ES256 header", jwt(secret, "ES256", &good)),
        (
            "truncated by one",
            user.token[..user.token.len() - 1].to_owned(),
        ),
        ("no signature", format!("{head}.{payload}.")),
        ("two parts", format!("{head}.{payload}")),
        ("header only", head.to_owned()),
        ("half", user.token[..user.token.len() / 2].to_owned()),
        ("signature moved", format!("{signature}.{payload}.{head}")),
        ("garbage", "not-a-token".to_owned()),
        ("garbage dots", "...".to_owned()),
        (
            "garbage base64",
            "eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl".to_owned(),
        ),
        ("very long", "A".repeat(8 * 1024)),
        (
            "no sub",
            jwt(secret, "HS256", &json!({ "iat": now, "exp": now + 600 })),
        ),
        (
            "no exp",
            jwt(secret, "HS256", &json!({ "sub": user.id, "iat": now })),
        ),
        (
            "exp as a string",
            jwt(
                secret,
                "HS256",
                &json!({ "sub": user.id, "iat": now, "exp": "9999999999" }),
            ),
        ),
    ];
    let with_sub = |sub: Value| {
        jwt(
            secret,
            "HS256",
            &json!({ "sub": sub, "iat": now, "exp": now + 600 }),
        )
    };
    tokens.extend([
        (
            "sub: another uuid",
            with_sub(json!("9b2f63a8-4d0b-4c4e-8f5e-2f0c3f3d6a11")),
        ),
        (
            "sub: nil uuid",
            with_sub(json!("00000000-0000-0000-0000-000000000000")),
        ),
        ("sub: admin", with_sub(json!("admin"))),
        ("sub: empty", with_sub(json!(""))),
        ("sub: a number", with_sub(json!(1))),
        ("sub: the phone", with_sub(json!(user.phone))),
    ]);
    let mut headers: Vec<(String, Option<String>)> = tokens
        .into_iter()
        .map(|(what, t)| (what.to_owned(), Some(format!("Bearer {t}"))))
        .collect();
    for (what, value) in [
        ("no header", None),
        ("empty", Some(String::new())),
        ("no Bearer", Some(user.token.clone())),
        ("Basic", Some(format!("Basic {}", user.token))),
        ("Token", Some(format!("Token {}", user.token))),
        ("Bearer alone", Some("Bearer".to_owned())),
        ("Bearer and a space", Some("Bearer ".to_owned())),
        (
            "Bearer twice",
            Some(format!("Bearer Bearer {}", user.token)),
        ),
    ] {
        headers.push((what.to_owned(), value));
    }
    assert_unauthorized_everywhere(&s, &headers).await;
    // The real token works (so the refusals above are the token's doing).
    let r = s.get_auth("/api/profile", &user.token).await;
    assert_eq!(r.status, 200, "{r:?}");
}

/// Sends each `Authorization` value (`None`: no header; `what` names it in
/// a failure) to every authenticated route of the profile, and asserts 401
/// `unauthorized` with the envelope.
pub(crate) async fn assert_unauthorized_everywhere(s: &Server, auths: &[(String, Option<String>)]) {
    for (path, post) in [
        ("/api/profile", false),
        ("/api/profile/referrals", false),
        ("/api/profile/invite", true),
    ] {
        for (what, auth) in auths {
            let mut req = if post {
                s.client()
                    .post(s.url(path))
                    .json(&json!({ "invite_code": "AAAAAA" }))
            } else {
                s.client().get(s.url(path))
            };
            if let Some(auth) = auth {
                req = req.header("authorization", auth);
            }
            let r = s.send(req).await;
            assert!(
                r.status == 401 && r.code() == "unauthorized",
                "{path} with {what}: {r:?}"
            );
            r.assert_error(401, Some("unauthorized"));
        }
    }
}

/// A well-signed, unexpired token of a user deleted from the database (the
/// row removed with SQL) answers 401 on every authenticated route; a new
/// login of that phone is a new user, and the old token stays refused.
pub async fn token_of_deleted_user(ctx: Ctx) {
    assert_eq!(ctx.backend(), Backend::Postgres);
    let db = ctx.fresh_store().await.expect("a database");
    let s = ctx
        .server_on(Some(&db), &[("REFERRAL_OTP_RESEND_COOLDOWN_SECS", "0")])
        .await;
    let user = s.login(&phone(1)).await;
    let bystander = s.login(&phone(2)).await;
    assert_eq!(s.get_auth("/api/profile", &user.token).await.status, 200);
    let mut conn = sqlx::PgConnection::connect(&db)
        .await
        .expect("connect to the case's database");
    let deleted = sqlx::query("DELETE FROM referral_users WHERE id = $1::uuid")
        .bind(&user.id)
        .execute(&mut conn)
        .await
        .expect("DELETE the user")
        .rows_affected();
    assert_eq!(deleted, 1);
    let _ = conn.close().await;
    let assert_refused = |r: Resp, what: &str| {
        assert!(
            r.status == 401 && r.code() == "unauthorized",
            "{what}: {r:?}"
        );
        r.assert_error(401, Some("unauthorized"));
    };
    assert_refused(s.get_auth("/api/profile", &user.token).await, "profile");
    assert_refused(
        s.get_auth("/api/profile/referrals", &user.token).await,
        "referrals",
    );
    assert_refused(
        s.activate(&user.token, &bystander.invite_code).await,
        "invite",
    );
    assert_eq!(
        s.profile(&bystander.token).await["referral_count"],
        0,
        "the refused activation changed nothing"
    );
    let again = s.login(&phone(1)).await;
    assert_ne!(again.id, user.id, "a new user");
    assert_refused(
        s.get_auth("/api/profile", &user.token).await,
        "profile, old token",
    );
}

// ---------------------------------------------------------------- bad input

/// Oversized, truncated, invalid-UTF-8, wrong-type and deeply nested JSON
/// on every JSON route: a clear 4xx with the envelope, the server alive, and
/// nothing sent. (A body streamed past the limit in chunks, without a
/// `Content-Length`, is `chunked_body_over_limit_refused` of the security
/// suite: it needs a socket.)
pub async fn malformed_json_refused(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    let token = s.login(&phone(9)).await.token;
    let target = phone(1);
    let post = |path: &str, body: Vec<u8>| {
        let mut req = s
            .client()
            .post(s.url(path))
            .header("content-type", "application/json")
            .body(body);
        if path == "/api/profile/invite" {
            req = req.bearer_auth(&token);
        }
        req
    };
    let routes = ["/api/auth/code", "/api/auth/verify", "/api/profile/invite"];
    // Over 16 KiB: 413.
    let pad = "x".repeat(17 * 1024);
    let big = json!({ "phone": target, "code": "1234", "invite_code": "AAAAAA", "pad": pad });
    let nested_100k = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for path in routes {
        for body in [big.to_string(), nested_100k.clone()] {
            s.send(post(path, body.into_bytes()))
                .await
                .assert_error(413, None);
        }
    }
    // Deeply nested, within the size limit: 400, no stack overflow.
    let arrays = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let objects = |n: usize| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
    let deep = [
        arrays(8000),
        format!("{{\"phone\": {}}}", arrays(8000)),
        objects(2500),
        format!("{{\"invite_code\": {}}}", objects(2500)),
    ];
    // A deeply nested unknown field is skipped (unknown fields are ignored)
    // without recursing: the request is fine.
    let r = s
        .send(post(
            "/api/auth/code",
            format!("{{\"phone\": \"{}\", \"x\": {}}}", phone(2), arrays(8000)).into_bytes(),
        ))
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    // Truncated, not UTF-8, wrong types.
    let mut bad: Vec<Vec<u8>> = deep.iter().map(|b| b.clone().into_bytes()).collect();
    for body in [
        format!("{{\"phone\": \"{target}"),
        format!("{{\"phone\": \"{target}\""),
        format!("{{\"phone\": \"{target}\","),
        "{\"phone\"".to_owned(),
        "{".to_owned(),
        "[".to_owned(),
        "\"".to_owned(),
        String::new(),
        "null".to_owned(),
        "123".to_owned(),
        format!("[\"{target}\"]"),
        "{\"phone\": 79990000001, \"code\": 1234, \"invite_code\": 123456}".to_owned(),
        "{\"phone\": [\"+79990000001\"], \"code\": [\"1234\"], \"invite_code\": [\"AAAAAA\"]}"
            .to_owned(),
        "{\"phone\": {\"e164\": \"+79990000001\"}, \"code\": {}, \"invite_code\": {}}".to_owned(),
        "{\"phone\": true, \"code\": false, \"invite_code\": true}".to_owned(),
        "{\"phone\": null, \"code\": null, \"invite_code\": null}".to_owned(),
        "{\"phone\": 1e999, \"code\": 1e999, \"invite_code\": -0}".to_owned(),
    ] {
        bad.push(body.into_bytes());
    }
    bad.push(b"{\"phone\": \"+7999\xd0\"}".to_vec());
    bad.push(
        b"{\"phone\": \"\xff\xfe\", \"code\": \"\xff\", \"invite_code\": \"\xc0\x80\"}".to_vec(),
    );
    bad.push(b"\xef\xbb\xbf{\"phone\": \"+79990000001\"".to_vec());
    for path in routes {
        for body in &bad {
            let r = s.send(post(path, body.clone())).await;
            assert!(
                r.status == 400,
                "{path} with {:?}: {r:?}",
                String::from_utf8_lossy(&body[..body.len().min(80)])
            );
            r.assert_error(400, None);
        }
    }
    s.assert_healthy("hostile JSON").await;
    s.assert_nothing_sent(&target).await;
    // And the phone was not charged: its first code goes out now.
    assert_eq!(s.request_code(&target).await.status, 202);
}

/// Unicode look-alikes of digits and letters in phones, login codes and
/// invite codes: 400 with the envelope, and nothing changed: no code sent or
/// charged, no guess counted, no unknown-invite failure counted, no
/// activation.
pub async fn unicode_lookalikes_refused(ctx: Ctx) {
    let s = ctx.server(&[]).await;
    let fullwidth = |s: &str| -> String {
        s.chars()
            .map(|c| match c {
                '0'..='9' | 'A'..='Z' | 'a'..='z' | '+' => {
                    char::from_u32(u32::from(c) - 0x21 + 0xFF01).unwrap_or(c)
                }
                c => c,
            })
            .collect()
    };
    let digits_from = |s: &str, zero: u32| -> String {
        s.chars()
            .map(|c| match c.to_digit(10) {
                Some(d) => char::from_u32(zero + d).unwrap_or(c),
                None => c,
            })
            .collect()
    };
    let with_zwsp = |s: &str| -> String {
        let mut chars: Vec<char> = s.chars().collect();
        chars.insert(chars.len() / 2, '\u{200B}');
        chars.into_iter().collect()
    };
    // Phones.
    let target = phone(1);
    let phones = [
        fullwidth(&target),
        format!("+{}", fullwidth(&target[1..])),
        digits_from(&target, 0x0660), // Arabic-Indic
        digits_from(&target, 0x06F0), // Persian
        digits_from(&target, 0x0966), // Devanagari
        with_zwsp(&target),
        format!("{target}\u{200B}"),
        format!("\u{FEFF}{target}"),
        format!("{target}\u{0301}"),
        target.replace('0', "O"),
        target.replace('0', "\u{041E}"), // Cyrillic O
        target.replace('+', "\u{2795}"),
    ];
    for p in &phones {
        let r = s.request_code(p).await;
        assert_eq!(r.status, 400, "{p:?}: {r:?}");
        r.assert_error(400, Some("invalid_phone"));
        let r = s.verify(p, "1234").await;
        assert_eq!(r.status, 400, "verify {p:?}: {r:?}");
        r.assert_error(400, Some("invalid_phone"));
    }
    s.assert_nothing_sent(&target).await;
    assert_eq!(s.request_code(&target).await.status, 202, "not charged");
    // Login codes: more look-alikes than the code's 5 attempts.
    let code = s.outbox_code(&target).await;
    let codes = [
        fullwidth(&code),
        digits_from(&code, 0x0660),
        digits_from(&code, 0x06F0),
        digits_from(&code, 0x0966),
        digits_from(&code, 0x1D7CE), // mathematical bold digits
        with_zwsp(&code),
        format!("{code}\u{200B}"),
        format!("\u{200B}{code}"),
        code.chars().map(|c| format!("{c}\u{0332}")).collect(),
    ];
    for c in &codes {
        let r = s.verify(&target, c).await;
        assert_eq!(r.status, 400, "{c:?}: {r:?}");
        r.assert_error(400, Some("invalid_code"));
    }
    let r = s.verify(&target, &code).await;
    assert_eq!(r.status, 200, "no look-alike counted as a guess: {r:?}");
    let owner = s.login(&phone(2)).await;
    let me_token = r.body["access_token"].as_str().expect("token").to_owned();
    // Invite codes: more look-alikes than the 10 unknown codes allowed.
    let invite = owner.invite_code.clone();
    let cyrillic: String = invite
        .chars()
        .map(|c| match c {
            'A' => 'А',
            'B' => 'В',
            'C' => 'С',
            'E' => 'Е',
            'H' => 'Н',
            'K' => 'К',
            'M' => 'М',
            'P' => 'Р',
            'T' => 'Т',
            'X' => 'Х',
            'Y' => 'У',
            '3' => 'З',
            c => c,
        })
        .collect();
    let mut invites = vec![
        fullwidth(&invite),
        fullwidth(&invite.to_lowercase()),
        with_zwsp(&invite),
        format!("{invite}\u{200B}"),
        format!("\u{2060}{invite}"),
        digits_from(&invite, 0x0660),
        invite.chars().map(|c| format!("{c}\u{0301}")).collect(),
        format!("{}\u{0130}", &invite[..5]), // Turkish dotted I
        format!("{}\u{212A}", &invite[..5]), // Kelvin sign K
        format!("{}\u{FB01}", &invite[..4]), // the ligature "fi"
        format!("{}ß", &invite[..5]),
        "ÄÖÜÉÈÇ".to_owned(),
    ];
    if cyrillic != invite {
        invites.push(cyrillic);
    }
    for c in &invites {
        if *c == invite {
            continue;
        }
        let r = s.activate(&me_token, c).await;
        assert_eq!(r.status, 400, "{c:?}: {r:?}");
        r.assert_error(400, Some("invalid_invite_code"));
    }
    let p = s.profile(&me_token).await;
    assert_eq!(p["activated_invite_code"], Value::Null, "{p}");
    assert_eq!(s.profile(&owner.token).await["referral_count"], 0);
    let r = s.activate(&me_token, &invite).await;
    assert_eq!(r.status, 200, "no look-alike counted as unknown: {r:?}");
}

/// Strings worth trying as any field.
const INTERESTING: &[&str] = &[
    "+79990000001",
    "+7 (999) 000-00-01",
    "79990000001",
    "+",
    "",
    " ",
    "1234",
    "0000",
    "12345678",
    "AAAAAA",
    "a7kq2m",
    "+٧٩٩٩٠٠٠٠٠٠١",
    "+７９９９０００００００１",
    "\u{200B}",
    "\u{0}",
    "%00",
    "../../etc/passwd",
    "' OR 1=1 --",
    "<script>",
    "🙂",
    "null",
];

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(&["phone", "code", "invite_code"][..]).prop_map(str::to_owned),
        1 => "\\PC{0,8}",
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::String),
        prop::sample::select(INTERESTING).prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(arb_key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // An object with the routes' fields set to anything.
        4 => prop::collection::btree_map(arb_key(), arb_json(), 0..4).prop_map(|m| {
            serde_json::to_vec(&Value::Object(m.into_iter().collect())).unwrap_or_default()
        }),
        2 => arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        1 => prop::collection::vec(any::<u8>(), 0..256),
    ]
}

/// How many random requests [`random_bodies_never_fail_the_server`] sends.
pub const RANDOM_REQUESTS: u32 = 300;

/// A proptest-driven stand-in for fuzzing the HTTP layer on stable: random
/// JSON values (the routes' field names with values of every type, nested),
/// random bytes and random query strings to every route. Never a 5xx, always
/// the envelope on an error, and the server stays up. Bounded to
/// [`RANDOM_REQUESTS`]; `SECURITY_FUZZ_SEED` replays a run.
pub async fn random_bodies_never_fail_the_server(ctx: Ctx) {
    let s = ctx
        .server(&[("REFERRAL_OTP_RESEND_COOLDOWN_SECS", "0")])
        .await;
    let token = s.login(&phone(1)).await.token;
    let seed = std::env::var("SECURITY_FUZZ_SEED")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::UNIX_EPOCH
                .elapsed()
                .map_or(0, |d| d.as_nanos() as u64)
        });
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let strategy = (0usize..5, arb_body(), "\\PC{0,40}");
    for i in 0..RANDOM_REQUESTS {
        let (route, body, query) = strategy
            .new_tree(&mut runner)
            .expect("a random request")
            .current();
        let c = s.client();
        let json_post = |path: &str| {
            c.post(s.url(path))
                .header("content-type", "application/json")
                .body(body.clone())
        };
        let (what, req) = match route {
            0 => ("POST /api/auth/code", json_post("/api/auth/code")),
            1 => ("POST /api/auth/verify", json_post("/api/auth/verify")),
            2 => (
                "POST /api/profile/invite",
                json_post("/api/profile/invite").bearer_auth(&token),
            ),
            3 => (
                "GET /api/profile/referrals",
                c.get(format!("{}?{query}", s.url("/api/profile/referrals")))
                    .bearer_auth(&token),
            ),
            _ => (
                "GET /api/dev/sms",
                c.get(format!("{}?{query}", s.url("/api/dev/sms"))),
            ),
        };
        let r = s.send(req).await;
        assert_not_5xx_with_envelope(
            &r,
            &format!(
                "SECURITY_FUZZ_SEED={seed}, request {i}: {what} body {:?} query {query:?}",
                String::from_utf8_lossy(&body)
            ),
        );
    }
    s.assert_healthy("random requests").await;
}
