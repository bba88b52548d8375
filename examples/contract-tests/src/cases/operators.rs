//! The cases of API.md's "Operators" section: who reaches `/api/admin/*`,
//! search, user detail, block and unblock, voiding, the leaderboard, the
//! statistics and the CSV exports.

use serde_json::{Value, json};

use crate::Ctx;
use crate::harness::{Resp, Server, User, enc, phone};

/// The API key of the cases that record conversions.
const KEY: &str = "contract-suite-operator-key-0123456789abcdef";

/// The operator of every case is `phone(1)`, listed in another spelling
/// than E.164 (API.md: any accepted spelling); `phone(2)` is a second
/// operator.
fn admin_env() -> Vec<(&'static str, String)> {
    vec![
        (
            "REFERRAL_ADMIN_PHONES",
            format!(" +7 (999) 000-00-01 ,{}", phone(2)),
        ),
        ("REFERRAL_API_KEYS", KEY.to_owned()),
        ("REFERRAL_REWARD_REFERRER_FIXED", "1000".to_owned()),
        ("REFERRAL_REWARD_REFERRER_BP", "500".to_owned()),
        ("REFERRAL_REWARD_WELCOME_FIXED", "300".to_owned()),
        ("REFERRAL_REWARD_CURRENCY", "RUB".to_owned()),
        // The block case logs one phone in three times.
        ("REFERRAL_OTP_RESEND_COOLDOWN_SECS", "0".to_owned()),
    ]
}

async fn admin_server(ctx: &Ctx) -> Server {
    let env = admin_env();
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ctx.server(&pairs).await
}

/// Every admin route with a harmless request: `(method, path, body)`.
fn routes(user_id: &str) -> Vec<(&'static str, String, Option<Value>)> {
    vec![
        ("GET", "/api/admin/users".to_owned(), None),
        ("GET", format!("/api/admin/users/{user_id}"), None),
        ("GET", format!("/api/admin/users/{user_id}/rewards"), None),
        (
            "POST",
            format!("/api/admin/users/{user_id}/block"),
            Some(json!({"reason": "x"})),
        ),
        (
            "POST",
            format!("/api/admin/users/{user_id}/unblock"),
            Some(json!({})),
        ),
        (
            "POST",
            "/api/admin/rewards/00000000-0000-4000-8000-000000000000/void".to_owned(),
            Some(json!({"reason": "x"})),
        ),
        ("GET", "/api/admin/stats".to_owned(), None),
        ("GET", "/api/admin/leaderboard".to_owned(), None),
        ("GET", "/api/admin/export/referrals.csv".to_owned(), None),
        ("GET", "/api/admin/export/rewards.csv".to_owned(), None),
    ]
}

/// `method path` with `body`, and `Authorization: Bearer token` when given.
async fn call(
    s: &Server,
    method: &str,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> Resp {
    let url = s.url(path);
    let mut req = match method {
        "GET" => s.client().get(url),
        _ => s.client().post(url),
    };
    if let Some(body) = body {
        req = req.json(body);
    }
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    s.send(req).await
}

/// What Python's `csv` module reads from `text`: the rows.
fn python_csv(text: &str) -> Vec<Vec<String>> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import csv, io, json, sys\n\
             text = sys.stdin.buffer.read().decode('utf-8')\n\
             print(json.dumps(list(csv.reader(io.StringIO(text, newline='')))))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to python3");
    let out = child.wait_with_output().expect("python3 ends");
    assert!(
        out.status.success(),
        "python3's csv module refused the body"
    );
    serde_json::from_slice(&out.stdout).expect("rows as JSON")
}

/// A CSV export: 200, `text/csv`, read by Python's `csv` module.
async fn export(s: &Server, admin: &User, name: &str) -> Vec<Vec<String>> {
    let r = s
        .get_auth(&format!("/api/admin/export/{name}"), &admin.token)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("text/csv")),
        "{r:?}"
    );
    assert!(r.text.contains("\r\n"), "RFC 4180 line ends");
    python_csv(&r.text)
}

/// 401 without valid credentials (none, forged, an API key), 403
/// `forbidden` for a user who is not an operator, on every admin route;
/// an operator (listed in another spelling) passes.
pub async fn admin_routes_refuse_non_operators(ctx: Ctx) {
    let srv = admin_server(&ctx).await;
    let admin = srv.login(&phone(1)).await;
    let user = srv.login(&phone(3)).await;
    for (method, path, body) in routes(&user.id) {
        let body = body.as_ref();
        call(&srv, method, &path, body, None)
            .await
            .assert_error(401, Some("unauthorized"));
        call(&srv, method, &path, body, Some("not-a-token"))
            .await
            .assert_error(401, Some("unauthorized"));
        call(&srv, method, &path, body, Some(KEY))
            .await
            .assert_error(401, Some("unauthorized"));
        call(&srv, method, &path, body, Some(&user.token))
            .await
            .assert_error(403, Some("forbidden"));
    }
    // Nothing the refused calls asked for happened.
    assert_eq!(srv.get_auth("/api/profile", &user.token).await.status, 200);
    // The operator reaches the read routes.
    for path in [
        "/api/admin/users",
        "/api/admin/stats",
        "/api/admin/leaderboard",
        "/api/admin/export/referrals.csv",
    ] {
        let r = srv.get_auth(path, &admin.token).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
    }
    // Without REFERRAL_ADMIN_PHONES nobody is an operator.
    let plain = ctx.server(&[]).await;
    let first = plain.login(&phone(1)).await;
    plain
        .get_auth("/api/admin/users", &first.token)
        .await
        .assert_error(403, Some("forbidden"));
}

/// Search by phone prefix (with or without `+`), by invite code (any
/// case), everyone page by page ordered by phone; the detail with the
/// referrer; 404 and 400 answers.
pub async fn admin_search_and_detail(ctx: Ctx) {
    let srv = admin_server(&ctx).await;
    let admin = srv.login(&phone(1)).await;
    let users = srv.login_many(10, 5).await;
    let other = srv.login("+15550001234").await;
    assert_eq!(
        srv.activate(&users[1].token, &users[0].invite_code)
            .await
            .status,
        200
    );
    let search = |q: String| {
        let srv = &srv;
        let token = admin.token.clone();
        async move { srv.get_auth(&format!("/api/admin/users{q}"), &token).await }
    };
    // A phone prefix, `+` optional: the five users and the operator, by phone.
    for q in ["?q=%2B7999", "?q=7999", "?q=+7999"] {
        let r = search(q.to_owned()).await;
        assert_eq!(r.status, 200, "{q}: {r:?}");
        let phones: Vec<&str> = r.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|u| u["phone"].as_str().expect("phone"))
            .collect();
        let mut expected = vec![admin.phone.as_str()];
        expected.extend(users.iter().map(|u| u.phone.as_str()));
        assert_eq!(phones, expected, "{q}");
        assert_eq!(r.body["next_cursor"], Value::Null);
    }
    let r = search("?q=1555".to_owned()).await;
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(1), "{r:?}");
    let item = &r.body["items"][0];
    assert_eq!(item["id"], other.id);
    assert_eq!(item["invite_code"], other.invite_code);
    assert_eq!(item["referral_count"], 0);
    assert_eq!(item["blocked"], false);
    assert!(item["created_at"].as_str().is_some_and(|t| t.contains('T')));
    // An invite code, any case.
    let r = search(format!("?q={}", users[0].invite_code.to_lowercase())).await;
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(1), "{r:?}");
    assert_eq!(r.body["items"][0]["id"], users[0].id);
    assert_eq!(r.body["items"][0]["referral_count"], 1);
    // Everyone, two at a time, ordered by phone.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("?limit=2&cursor={}", enc(c)),
            None => "?limit=2".to_owned(),
        };
        let r = search(q).await;
        assert_eq!(r.status, 200, "{r:?}");
        let items = r.body["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|u| u["phone"].as_str().unwrap().to_owned()),
        );
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
    assert_eq!(seen.len(), 7);
    // Bad input.
    for (q, code) in [
        ("?q=7-999", "invalid_query"),
        ("?q=abc", "invalid_query"),
        ("?limit=0", "invalid_limit"),
        ("?limit=501", "invalid_limit"),
        ("?limit=x", "invalid_limit"),
        ("?cursor=nonsense", "invalid_cursor"),
    ] {
        search(q.to_owned()).await.assert_error(400, Some(code));
    }
    // The detail: profile, referrer, no block.
    let r = srv
        .get_auth(&format!("/api/admin/users/{}", users[1].id), &admin.token)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["user"]["id"], users[1].id);
    assert_eq!(r.body["user"]["phone"], users[1].phone);
    assert_eq!(
        r.body["user"]["activated_invite_code"],
        users[0].invite_code
    );
    assert_eq!(
        r.body["referrer"],
        json!({"id": users[0].id, "phone": users[0].phone})
    );
    assert_eq!(r.body["blocked"], Value::Null);
    let r = srv
        .get_auth(&format!("/api/admin/users/{}", users[0].id), &admin.token)
        .await;
    assert_eq!(r.body["referrer"], Value::Null);
    assert_eq!(r.body["user"]["referrals"], json!([users[1].phone]));
    for id in ["00000000-0000-4000-8000-000000000000", "not-an-id"] {
        srv.get_auth(&format!("/api/admin/users/{id}"), &admin.token)
            .await
            .assert_error(404, Some("user_not_found"));
    }
}

/// A block: the detail names the reason and the operator; the user's token
/// answers 403 `user_blocked` on every user route, their login too (the
/// code route still 202); a blocked operator is refused too; an unblock
/// lets the same token in again. Bad reasons are 400 and change nothing.
pub async fn admin_block_and_unblock(ctx: Ctx) {
    let srv = admin_server(&ctx).await;
    let admin = srv.login(&phone(1)).await;
    let second = srv.login(&phone(2)).await;
    let bob = srv.login(&phone(3)).await;
    let carol = srv.login(&phone(4)).await;
    let block = format!("/api/admin/users/{}/block", bob.id);
    for (body, code) in [
        (json!({"reason": "  "}), "invalid_reason"),
        (json!({"reason": "a\nb"}), "invalid_reason"),
        (json!({"reason": "x".repeat(501)}), "invalid_reason"),
        (json!({}), "invalid_body"),
        (json!({"reason": 5}), "invalid_body"),
    ] {
        srv.post_auth(&block, &admin.token, &body)
            .await
            .assert_error(400, Some(code));
    }
    assert_eq!(srv.get_auth("/api/profile", &bob.token).await.status, 200);
    srv.post_auth(
        "/api/admin/users/00000000-0000-4000-8000-000000000000/block",
        &admin.token,
        &json!({"reason": "spam"}),
    )
    .await
    .assert_error(404, Some("user_not_found"));

    let reason = "several accounts, one \"device\"";
    let r = srv
        .post_auth(&block, &admin.token, &json!({ "reason": reason }))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["user"]["id"], bob.id);
    assert_eq!(r.body["blocked"]["reason"], reason);
    assert_eq!(r.body["blocked"]["by"], admin.id);
    assert!(
        r.body["blocked"]["at"]
            .as_str()
            .is_some_and(|t| t.contains('T'))
    );
    // Blocking again keeps the first block.
    let again = srv
        .post_auth(&block, &second.token, &json!({"reason": "other"}))
        .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.body["blocked"], r.body["blocked"]);

    // Every user route with Bob's token: 403 user_blocked.
    srv.get_auth("/api/profile", &bob.token)
        .await
        .assert_error(403, Some("user_blocked"));
    srv.get_auth("/api/profile/referrals", &bob.token)
        .await
        .assert_error(403, Some("user_blocked"));
    srv.get_auth("/api/profile/rewards", &bob.token)
        .await
        .assert_error(403, Some("user_blocked"));
    srv.activate(&bob.token, &carol.invite_code)
        .await
        .assert_error(403, Some("user_blocked"));
    // The code route answers as for anyone; the login is refused.
    let code = srv.send_code(&bob.phone).await;
    srv.verify(&bob.phone, &code)
        .await
        .assert_error(403, Some("user_blocked"));
    // The detail and the search show the block.
    let r = srv
        .get_auth(&format!("/api/admin/users/{}", bob.id), &admin.token)
        .await;
    assert_eq!(r.body["blocked"]["by"], admin.id);
    let r = srv
        .get_auth(
            &format!("/api/admin/users?q={}", enc(&bob.phone)),
            &admin.token,
        )
        .await;
    assert_eq!(r.body["items"][0]["blocked"], true, "{r:?}");
    // Others are not affected.
    assert_eq!(srv.get_auth("/api/profile", &carol.token).await.status, 200);

    // A blocked operator: 403 user_blocked on admin routes too.
    let r = srv
        .post_auth(
            &format!("/api/admin/users/{}/block", second.id),
            &admin.token,
            &json!({"reason": "left the team"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    srv.get_auth("/api/admin/users", &second.token)
        .await
        .assert_error(403, Some("user_blocked"));

    // Unblock: the same token works again; unblocking again changes nothing.
    let unblock = format!("/api/admin/users/{}/unblock", bob.id);
    for _ in 0..2 {
        let r = srv.post_auth(&unblock, &admin.token, &json!({})).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body["blocked"], Value::Null);
    }
    assert_eq!(srv.get_auth("/api/profile", &bob.token).await.status, 200);
    assert_eq!(
        srv.activate(&bob.token, &carol.invite_code).await.status,
        200
    );
    let code = srv.send_code(&bob.phone).await;
    assert_eq!(srv.verify(&bob.phone, &code).await.status, 200);
    srv.post_auth(
        "/api/admin/users/not-an-id/unblock",
        &admin.token,
        &json!({}),
    )
    .await
    .assert_error(404, Some("user_not_found"));
}

/// `(currency, pending, approved, paid)` of a profile's first balance.
fn balance(profile: &Value) -> (i64, i64, i64) {
    let b = &profile["rewards"][0];
    (
        b["pending"].as_i64().unwrap_or(0),
        b["approved"].as_i64().unwrap_or(0),
        b["paid"].as_i64().unwrap_or(0),
    )
}

/// The rewards a user's profile route lists.
async fn rewards_of(s: &Server, user: &User) -> Vec<Value> {
    let r = s.get_auth("/api/profile/rewards", &user.token).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body["items"].as_array().expect("items").clone()
}

/// Alice refers Bob and Carol; Bob converts with `external_id` `o,"1"`;
/// Carol's welcome reward is paid out as `p,"1"`. The users.
async fn program(s: &Server) -> (User, User, User, User) {
    let admin = s.login(&phone(1)).await;
    let alice = s.login(&phone(3)).await;
    let bob = s.login(&phone(4)).await;
    let carol = s.login(&phone(5)).await;
    for u in [&bob, &carol] {
        assert_eq!(s.activate(&u.token, &alice.invite_code).await.status, 200);
    }
    let r = s
        .post_auth(
            "/api/server/conversions",
            KEY,
            &json!({"external_id": "o,\"1\"", "user_id": bob.id, "amount": 150_000, "currency": "RUB"}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let welcome = &rewards_of(s, &carol).await[0];
    let r = s
        .post_auth(
            &format!(
                "/api/server/rewards/{}/paid",
                welcome["id"].as_str().unwrap()
            ),
            KEY,
            &json!({"payout_ref": "p,\"1\""}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    (admin, alice, bob, carol)
}

/// Voiding a pending and an approved reward drops the owner's balance;
/// again is 200; a paid one is 409 `reward_not_voidable`; 404 and 400.
pub async fn admin_void_reward(ctx: Ctx) {
    let srv = admin_server(&ctx).await;
    let (admin, alice, bob, carol) = program(&srv).await;
    assert_eq!(balance(&srv.profile(&alice.token).await), (8500, 0, 0));
    let fixed = rewards_of(&srv, &alice)
        .await
        .into_iter()
        .find(|r| r["kind"] == "referrer_fixed")
        .expect("the fixed reward");
    let void = |id: &str| format!("/api/admin/rewards/{id}/void");
    let id = fixed["id"].as_str().unwrap();
    srv.post_auth(&void(id), &admin.token, &json!({"reason": ""}))
        .await
        .assert_error(400, Some("invalid_reason"));
    srv.post_auth(&void(id), &admin.token, &json!({}))
        .await
        .assert_error(400, Some("invalid_body"));
    assert_eq!(balance(&srv.profile(&alice.token).await), (8500, 0, 0));
    for _ in 0..2 {
        let r = srv
            .post_auth(
                &void(id),
                &admin.token,
                &json!({"reason": "fraud, \"confirmed\""}),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body["id"], fixed["id"]);
        assert_eq!(r.body["status"], "voided");
        assert_eq!(r.body["amount"], 1000);
    }
    assert_eq!(balance(&srv.profile(&alice.token).await), (7500, 0, 0));
    // Bob's approved welcome reward.
    assert_eq!(balance(&srv.profile(&bob.token).await), (0, 300, 0));
    let welcome = &rewards_of(&srv, &bob).await[0];
    let r = srv
        .post_auth(
            &void(welcome["id"].as_str().unwrap()),
            &admin.token,
            &json!({"reason": "self-referral ring"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(srv.profile(&bob.token).await["rewards"], json!([]));
    // Carol's is paid.
    let paid = &rewards_of(&srv, &carol).await[0];
    srv.post_auth(
        &void(paid["id"].as_str().unwrap()),
        &admin.token,
        &json!({"reason": "late"}),
    )
    .await
    .assert_error(409, Some("reward_not_voidable"));
    assert_eq!(balance(&srv.profile(&carol.token).await), (0, 0, 300));
    for id in ["00000000-0000-4000-8000-000000000000", "nope"] {
        srv.post_auth(&void(id), &admin.token, &json!({"reason": "x"}))
            .await
            .assert_error(404, Some("reward_not_found"));
    }
}

/// An operator lists one user's rewards (an addition to API.md's routes):
/// the same REWARDs, newest first, as the user's own
/// `GET /api/profile/rewards`, in keyset pages with the same `limit` and
/// `cursor` rules; a blocked user's too; a void shows; 404 for an unknown
/// user, 400 for a bad `limit` or `cursor`.
pub async fn admin_user_rewards(ctx: Ctx) {
    let srv = admin_server(&ctx).await;
    let (admin, alice, bob, carol) = program(&srv).await;
    let list = |id: &str, q: &str| {
        let path = format!("/api/admin/users/{id}/rewards{q}");
        let srv = &srv;
        let token = admin.token.clone();
        async move { srv.get_auth(&path, &token).await }
    };
    // What each user sees of their own rewards, the operator sees of theirs.
    for u in [&alice, &bob, &carol] {
        let own = srv.get_auth("/api/profile/rewards", &u.token).await;
        let r = list(&u.id, "").await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, own.body, "{}", u.phone);
    }
    let all = rewards_of(&srv, &alice).await;
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(rewards_of(&srv, &carol).await[0]["status"], "paid");
    // One at a time, by the cursor: the same items in the same order.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("?limit=1&cursor={}", enc(c)),
            None => "?limit=1".to_owned(),
        };
        let r = list(&alice.id, &q).await;
        assert_eq!(r.status, 200, "{r:?}");
        let items = r.body["items"].as_array().expect("items");
        assert!(items.len() <= 1, "{r:?}");
        paged.extend(items.iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(paged.len() <= all.len(), "the pages do not end");
    }
    assert_eq!(paged, all);
    // A blocked user's rewards stay in view, and a void shows in the list.
    let r = srv
        .post_auth(
            &format!("/api/admin/users/{}/block", alice.id),
            &admin.token,
            &json!({"reason": "review"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let id = all[0]["id"].as_str().expect("an id");
    let r = srv
        .post_auth(
            &format!("/api/admin/rewards/{id}/void"),
            &admin.token,
            &json!({"reason": "fraud"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = list(&alice.id, "").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["items"][0]["id"], all[0]["id"]);
    assert_eq!(r.body["items"][0]["status"], "voided");
    assert_eq!(r.body["items"][1], all[1]);
    // A user without rewards: an empty page.
    let r = list(&admin.id, "").await;
    assert_eq!(r.body, json!({"items": [], "next_cursor": null}), "{r:?}");
    // Bad input.
    for id in ["00000000-0000-4000-8000-000000000000", "not-an-id"] {
        list(id, "").await.assert_error(404, Some("user_not_found"));
    }
    for (q, code) in [
        ("?limit=0", "invalid_limit"),
        ("?limit=501", "invalid_limit"),
        ("?limit=x", "invalid_limit"),
        ("?cursor=nonsense", "invalid_cursor"),
    ] {
        list(&bob.id, q).await.assert_error(400, Some(code));
    }
}

/// The leaderboard ranks referrers (all time and by `days`), `limit`
/// bounds it; the statistics count users, activations and conversions,
/// with exactly `days` rows, today last.
pub async fn admin_leaderboard_and_stats(ctx: Ctx) {
    let srv = admin_server(&ctx).await;
    let (admin, alice, bob, _carol) = program(&srv).await;
    let dave = srv.login(&phone(6)).await;
    assert_eq!(
        srv.activate(&dave.token, &bob.invite_code).await.status,
        200
    );
    let get = |path: String| {
        let srv = &srv;
        let token = admin.token.clone();
        async move { srv.get_auth(&path, &token).await }
    };
    let r = get("/api/admin/leaderboard".to_owned()).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body["items"],
        json!([
            {"user_id": alice.id, "phone": alice.phone, "referrals": 2, "rewarded": []},
            {"user_id": bob.id, "phone": bob.phone, "referrals": 1, "rewarded": []},
        ])
    );
    let r = get("/api/admin/leaderboard?limit=1&days=7".to_owned()).await;
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(1), "{r:?}");
    assert_eq!(r.body["items"][0]["user_id"], alice.id);
    for (q, code) in [
        ("limit=0", "invalid_limit"),
        ("limit=101", "invalid_limit"),
        ("limit=x", "invalid_limit"),
        ("days=0", "invalid_days"),
        ("days=367", "invalid_days"),
    ] {
        get(format!("/api/admin/leaderboard?{q}"))
            .await
            .assert_error(400, Some(code));
    }

    let r = get("/api/admin/stats?days=3".to_owned()).await;
    assert_eq!(r.status, 200, "{r:?}");
    let totals = &r.body["totals"];
    assert_eq!(totals["users"], 5);
    assert_eq!(totals["activations"], 3);
    assert_eq!(totals["conversions"], 1);
    assert_eq!(
        totals["rewards"],
        json!([{"currency": "RUB", "pending": 8500, "approved": 600, "paid": 300, "voided": 0}])
    );
    let days = r.body["days"].as_array().expect("days");
    assert_eq!(days.len(), 3);
    let today = utc_today();
    assert_eq!(days[2]["date"], today);
    assert_eq!(days[2]["users"], 5);
    assert_eq!(days[2]["activations"], 3);
    assert_eq!(days[2]["conversions"], 1);
    assert!(days[0]["date"].as_str() < days[1]["date"].as_str());
    let r = get("/api/admin/stats".to_owned()).await;
    assert_eq!(r.body["days"].as_array().map(Vec::len), Some(30));
    for q in ["days=0", "days=367", "days=x"] {
        get(format!("/api/admin/stats?{q}"))
            .await
            .assert_error(400, Some("invalid_days"));
    }
}

/// Today's UTC date, `YYYY-MM-DD`, from the system clock.
fn utc_today() -> String {
    let secs = crate::harness::unix_now();
    let days = i64::try_from(secs / 86_400).expect("days");
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Both exports: `text/csv`, a header row, every row, and fields with a
/// comma and quotes (`o,"1"`, `p,"1"`) read back exactly by Python's `csv`
/// module.
pub async fn admin_csv_exports(ctx: Ctx) {
    let srv = admin_server(&ctx).await;
    let (admin, alice, bob, carol) = program(&srv).await;
    let rows = export(&srv, &admin, "referrals.csv").await;
    assert_eq!(
        rows[0],
        [
            "referrer_id",
            "referrer_phone",
            "referee_id",
            "referee_phone",
            "invite_code",
            "activated_at"
        ]
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (row, referee) in rows[1..].iter().zip([&bob, &carol]) {
        assert_eq!(
            row[..5],
            [
                alice.id.as_str(),
                alice.phone.as_str(),
                referee.id.as_str(),
                referee.phone.as_str(),
                alice.invite_code.as_str()
            ]
        );
        assert!(row[5].contains('T'), "{row:?}");
    }

    let rows = export(&srv, &admin, "rewards.csv").await;
    assert_eq!(
        rows[0],
        [
            "id",
            "user_id",
            "phone",
            "kind",
            "amount",
            "currency",
            "status",
            "conversion_id",
            "created_at",
            "approved_at",
            "paid_at",
            "payout_ref"
        ]
    );
    // Welcome ×2 and the two referrer rewards of o,"1".
    assert_eq!(rows.len(), 5, "{rows:?}");
    let paid = rows
        .iter()
        .find(|r| r[6] == "paid")
        .expect("the paid reward");
    assert_eq!(
        paid[1..8],
        [
            carol.id.as_str(),
            carol.phone.as_str(),
            "welcome",
            "300",
            "RUB",
            "paid",
            ""
        ]
    );
    assert_eq!(paid[11], "p,\"1\"");
    assert!(!paid[10].is_empty());
    let percent = rows
        .iter()
        .find(|r| r[3] == "referrer_percent")
        .expect("the percentage reward");
    assert_eq!(
        percent[1..8],
        [
            alice.id.as_str(),
            alice.phone.as_str(),
            "referrer_percent",
            "7500",
            "RUB",
            "pending",
            "o,\"1\""
        ]
    );
    assert_eq!(percent[9..], ["", "", ""]);
    // Every reward of the profile routes is there, by id.
    let mut ids: Vec<String> = Vec::new();
    for u in [&alice, &bob, &carol] {
        for r in rewards_of(&srv, u).await {
            ids.push(r["id"].as_str().unwrap().to_owned());
        }
    }
    ids.sort();
    let mut exported: Vec<String> = rows[1..].iter().map(|r| r[0].clone()).collect();
    exported.sort();
    assert_eq!(exported, ids);
}
