//! The cases of API.md's "Rewards (the program pays)" section.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Backend, Ctx, Resp, Server, join_all, phone};

/// The API key every rewards case gives its servers.
const KEY: &str = "contract-suite-api-key-0123456789abcdef";

/// The worked example's policy, with a short hold and approval interval.
const WORKED: [(&str, &str); 8] = [
    ("REFERRAL_API_KEYS", KEY),
    ("REFERRAL_REWARD_REFERRER_FIXED", "1000"),
    ("REFERRAL_REWARD_REFERRER_BP", "500"),
    ("REFERRAL_REWARD_WELCOME_FIXED", "300"),
    ("REFERRAL_REWARD_MAX_PER_REFERRER", "20000"),
    ("REFERRAL_REWARD_CURRENCY", "RUB"),
    ("REFERRAL_REWARD_HOLD_SECS", "4"),
    ("REFERRAL_REWARD_APPROVE_EVERY_SECS", "1"),
];

async fn server_post(s: &Server, path: &str, body: &Value) -> Resp {
    s.post_auth(path, KEY, body).await
}

async fn convert(s: &Server, body: &Value) -> Resp {
    server_post(s, "/api/server/conversions", body).await
}

async fn reverse(s: &Server, id: &str, body: &Value) -> Resp {
    server_post(s, &format!("/api/server/conversions/{id}/reversals"), body).await
}

/// `(kind, amount, status)` of a list of rewards.
fn summary(rewards: &Value) -> Vec<(String, i64, String)> {
    let mut v: Vec<_> = rewards
        .as_array()
        .expect("rewards")
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().expect("kind").to_owned(),
                r["amount"].as_i64().expect("amount"),
                r["status"].as_str().expect("status").to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

fn s(kind: &str, amount: i64, status: &str) -> (String, i64, String) {
    (kind.to_owned(), amount, status.to_owned())
}

/// Every reward of a user, through the pages.
async fn all_rewards(s: &Server, token: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!(
                "/api/profile/rewards?limit=2&cursor={}",
                crate::harness::enc(c)
            ),
            None => "/api/profile/rewards?limit=2".to_owned(),
        };
        let r = s.get_auth(&path, token).await;
        assert_eq!(r.status, 200, "{r:?}");
        items.extend(r.body["items"].as_array().expect("items").iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
}

/// API.md's worked example end to end: welcome, fixed and percentage,
/// a partial refund while pending, approval by the periodic task, the
/// clawbacks of the rest, the cap; balances, pages, `converted`, payment.
pub async fn rewards_worked_example(ctx: Ctx) {
    let srv = ctx.server(&WORKED).await;
    let alice = srv.login(&phone(1)).await;
    let bob = srv.login(&phone(2)).await;
    let carol = srv.login(&phone(3)).await;
    assert_eq!(srv.profile(&alice.token).await["rewards"], json!([]));
    // 1. Bob activates Alice's code: welcome 300, approved at once.
    assert_eq!(
        srv.activate(&bob.token, &alice.invite_code).await.status,
        200
    );
    assert_eq!(
        srv.activate(&carol.token, &alice.invite_code).await.status,
        200
    );
    let p = srv.profile(&bob.token).await;
    assert_eq!(
        p["rewards"],
        json!([{"currency": "RUB", "pending": 0, "approved": 300, "paid": 0}])
    );
    let welcome = all_rewards(&srv, &bob.token).await;
    assert_eq!(welcome.len(), 1);
    assert_eq!(welcome[0]["kind"], "welcome");
    assert_eq!(welcome[0]["referral_phone"], alice.phone);
    // 2. Bob's order o1 of 150000 (by phone): fixed 1000 and 5 % 7500, pending.
    let o1 = json!({"external_id": "o1", "phone": bob.phone, "amount": 150_000, "currency": "RUB"});
    let r = convert(&srv, &o1).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["conversion"]["user_id"], bob.id);
    assert_eq!(r.body["conversion"]["kind"], "purchase");
    assert_eq!(r.body["conversion"]["reversed_amount"], 0);
    assert_eq!(
        summary(&r.body["rewards"]),
        vec![
            s("referrer_fixed", 1000, "pending"),
            s("referrer_percent", 7500, "pending")
        ]
    );
    for reward in r.body["rewards"].as_array().unwrap() {
        assert_eq!(reward["referral_phone"], bob.phone);
        assert_eq!(reward["conversion_id"], "o1");
    }
    let first = r.body.clone();
    // The same request again: 200, the same answer; by user id as well.
    let again = convert(&srv, &o1).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.body, first);
    // 3. o1 refunded by 50000 while pending: 666 and 5000.
    let r = reverse(&srv, "o1", &json!({"reversal_id": "r1", "amount": 50_000})).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["conversion"]["reversed_amount"], 50_000);
    assert_eq!(
        summary(&r.body["rewards"]),
        vec![
            s("referrer_fixed", 666, "pending"),
            s("referrer_percent", 5000, "pending")
        ]
    );
    let p = srv.profile(&alice.token).await;
    assert_eq!(
        p["rewards"],
        json!([{"currency": "RUB", "pending": 5666, "approved": 0, "paid": 0}])
    );
    // Converted: Bob yes, Carol no.
    let r = srv.get_auth("/api/profile/referrals", &alice.token).await;
    let conv: Vec<(String, bool)> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["phone"].as_str().unwrap().to_owned(),
                i["converted"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        conv,
        vec![(bob.phone.clone(), true), (carol.phone.clone(), false)]
    );
    // 4. The hold passes: the periodic task approves both.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = srv.profile(&alice.token).await;
        if p["rewards"] == json!([{"currency": "RUB", "pending": 0, "approved": 5666, "paid": 0}]) {
            break;
        }
        assert!(Instant::now() < deadline, "not approved: {p}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Then the rest of o1 is refunded: two clawbacks, approved.
    let r = reverse(&srv, "o1", &json!({"reversal_id": "r2"})).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["conversion"]["reversed_amount"], 150_000);
    assert_eq!(
        summary(&r.body["rewards"]),
        vec![
            s("clawback", -5000, "approved"),
            s("clawback", -666, "approved")
        ]
    );
    // 5. o2 of 300000 (by user id): 5 % fits, percentage only.
    let r = convert(
        &srv,
        &json!({"external_id": "o2", "user_id": bob.id, "amount": 300_000, "currency": "RUB"}),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        summary(&r.body["rewards"]),
        vec![s("referrer_percent", 15_000, "pending")]
    );
    let o2_reward = r.body["rewards"][0]["id"].as_str().unwrap().to_owned();
    // o3 of 200000 finds 5000 left of the cap.
    let r = convert(
        &srv,
        &json!({"external_id": "o3", "phone": bob.phone, "amount": 200_000, "currency": "RUB", "kind": "renewal"}),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["conversion"]["kind"], "renewal");
    assert_eq!(
        summary(&r.body["rewards"]),
        vec![s("referrer_percent", 5000, "pending")]
    );
    let p = srv.profile(&alice.token).await;
    assert_eq!(
        p["rewards"],
        json!([{"currency": "RUB", "pending": 20_000, "approved": 0, "paid": 0}])
    );
    // Alice's rewards, newest first, through keyset pages of 2.
    let all = all_rewards(&srv, &alice.token).await;
    assert_eq!(all.len(), 6, "{all:?}");
    let created: Vec<&str> = all
        .iter()
        .map(|r| r["created_at"].as_str().unwrap())
        .collect();
    let mut sorted = created.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(created, sorted, "newest first");
    assert_eq!(all[0]["conversion_id"], "o3");
    // Payment: an approved reward, once per payout reference.
    let approved = all
        .iter()
        .find(|r| r["kind"] == "referrer_fixed")
        .expect("the fixed reward");
    let id = approved["id"].as_str().unwrap();
    let pay = |id: String, payout: &'static str| {
        let srv = &srv;
        async move {
            server_post(
                srv,
                &format!("/api/server/rewards/{id}/paid"),
                &json!({"payout_ref": payout}),
            )
            .await
        }
    };
    let r = pay(id.to_owned(), "payout-1").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "paid");
    assert_eq!(r.body["payout_ref"], "payout-1");
    assert!(r.body["paid_at"].is_string());
    let r2 = pay(id.to_owned(), "payout-1").await;
    assert_eq!((r2.status, &r2.body), (200, &r.body));
    pay(id.to_owned(), "payout-2")
        .await
        .assert_error(409, Some("reward_not_payable"));
    pay(o2_reward, "payout-1")
        .await
        .assert_error(409, Some("reward_not_payable"));
    pay(
        "0b9d4c2e-8a51-4b8e-9d43-5f8f2c1a7e10".to_owned(),
        "payout-1",
    )
    .await
    .assert_error(404, Some("reward_not_found"));
    pay("not-an-id".to_owned(), "payout-1")
        .await
        .assert_error(404, Some("reward_not_found"));
    pay(id.to_owned(), "bad ref")
        .await
        .assert_error(400, Some("invalid_body"));
    let p = srv.profile(&alice.token).await;
    assert_eq!(
        p["rewards"],
        json!([{"currency": "RUB", "pending": 20_000, "approved": -666, "paid": 666}])
    );
}

/// The server routes' errors: keys, bodies, amounts, currencies, users,
/// conflicts, reversals; the rewards page's limit and cursor.
pub async fn rewards_errors(ctx: Ctx) {
    let srv = ctx
        .server(&[
            (
                "REFERRAL_API_KEYS",
                &format!("{KEY},another-key-of-at-least-32-bytes-000"),
            ),
            ("REFERRAL_REWARD_REFERRER_BP", "1000"),
        ])
        .await;
    let alice = srv.login(&phone(1)).await;
    let bob = srv.login(&phone(2)).await;
    assert_eq!(
        srv.activate(&bob.token, &alice.invite_code).await.status,
        200
    );
    let ok =
        json!({"external_id": "order-1", "phone": bob.phone, "amount": 1000, "currency": "USD"});
    let path = "/api/server/conversions";
    // 401: no key, a wrong key, a user's access token; nothing recorded.
    srv.post(path, &ok)
        .await
        .assert_error(401, Some("unauthorized"));
    srv.post_auth(path, "wrong-key-wrong-key-wrong-key-wrong-key", &ok)
        .await
        .assert_error(401, Some("unauthorized"));
    srv.post_auth(path, &bob.token, &ok)
        .await
        .assert_error(401, Some("unauthorized"));
    srv.post_auth(
        "/api/server/conversions/order-1/reversals",
        &bob.token,
        &json!({"reversal_id": "x"}),
    )
    .await
    .assert_error(401, Some("unauthorized"));
    srv.post_auth(
        "/api/server/rewards/x/paid",
        &alice.token,
        &json!({"payout_ref": "x"}),
    )
    .await
    .assert_error(401, Some("unauthorized"));
    // The second key works too.
    let r = srv
        .post_auth(path, "another-key-of-at-least-32-bytes-000", &ok)
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        summary(&r.body["rewards"]),
        vec![s("referrer_percent", 100, "pending")]
    );
    // Bad amounts, currencies and bodies: 400, nothing recorded.
    for amount in [
        json!(0),
        json!(-5),
        json!(1.5),
        json!("100"),
        json!(1_000_000_000_000_001_i64),
    ] {
        let mut body = ok.clone();
        body["external_id"] = json!("order-2");
        body["amount"] = amount;
        convert(&srv, &body)
            .await
            .assert_error(400, Some("invalid_amount"));
    }
    for currency in ["rub", "RU", "RUBL", ""] {
        let mut body = ok.clone();
        body["external_id"] = json!("order-2");
        body["currency"] = json!(currency);
        convert(&srv, &body)
            .await
            .assert_error(400, Some("invalid_currency"));
    }
    for body in [
        json!({"phone": bob.phone, "amount": 1, "currency": "RUB"}),
        json!({"external_id": "a b", "phone": bob.phone, "amount": 1, "currency": "RUB"}),
        json!({"external_id": "x".repeat(129), "phone": bob.phone, "amount": 1, "currency": "RUB"}),
        json!({"external_id": "order-2", "amount": 1, "currency": "RUB"}),
        json!({"external_id": "order-2", "phone": bob.phone, "user_id": bob.id, "amount": 1, "currency": "RUB"}),
        json!({"external_id": "order-2", "phone": bob.phone, "amount": 1, "currency": "RUB", "kind": "k".repeat(33)}),
        json!({"external_id": "order-2", "phone": bob.phone, "amount": 1, "currency": "RUB", "occurred_at": "yesterday"}),
        json!({"external_id": "order-2", "user_id": "nope", "amount": 1, "currency": "RUB"}),
    ] {
        convert(&srv, &body)
            .await
            .assert_error(400, Some("invalid_body"));
    }
    // Unknown users: 404.
    convert(
        &srv,
        &json!({"external_id": "order-2", "phone": phone(99), "amount": 1, "currency": "RUB"}),
    )
    .await
    .assert_error(404, Some("user_not_found"));
    convert(&srv, &json!({"external_id": "order-2", "user_id": "0b9d4c2e-8a51-4b8e-9d43-5f8f2c1a7e10", "amount": 1, "currency": "RUB"}))
        .await
        .assert_error(404, Some("user_not_found"));
    // The same id with other fields: 409; the same occurred_at given: 200.
    let mut other = ok.clone();
    other["amount"] = json!(1001);
    convert(&srv, &other)
        .await
        .assert_error(409, Some("conversion_conflict"));
    let mut other = ok.clone();
    other["phone"] = json!(alice.phone);
    convert(&srv, &other)
        .await
        .assert_error(409, Some("conversion_conflict"));
    let at = json!({"external_id": "order-3", "user_id": bob.id, "amount": 500, "currency": "USD",
        "occurred_at": "2026-01-01T00:00:00Z"});
    // Before Bob's activation: recorded, earns nothing.
    let r = convert(&srv, &at).await;
    assert_eq!((r.status, &r.body["rewards"]), (201, &json!([])), "{r:?}");
    assert_eq!(convert(&srv, &at).await.status, 200);
    let mut later = at.clone();
    later["occurred_at"] = json!("2026-01-02T00:00:00Z");
    convert(&srv, &later)
        .await
        .assert_error(409, Some("conversion_conflict"));
    // Reversals: 404, 400, idempotency, 409, percent-encoded ids.
    reverse(&srv, "missing", &json!({"reversal_id": "r"}))
        .await
        .assert_error(404, Some("conversion_not_found"));
    for amount in [json!(0), json!(-1), json!(1.5), json!(1001)] {
        reverse(
            &srv,
            "order-1",
            &json!({"reversal_id": "r", "amount": amount}),
        )
        .await
        .assert_error(400, Some("invalid_amount"));
    }
    reverse(&srv, "order-1", &json!({"amount": 1}))
        .await
        .assert_error(400, Some("invalid_body"));
    let r = reverse(&srv, "order-1", &json!({"reversal_id": "r", "amount": 400})).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        summary(&r.body["rewards"]),
        vec![s("referrer_percent", 60, "pending")]
    );
    let again = reverse(&srv, "order-1", &json!({"reversal_id": "r", "amount": 400})).await;
    assert_eq!((again.status, &again.body), (200, &r.body));
    reverse(&srv, "order-1", &json!({"reversal_id": "r", "amount": 300}))
        .await
        .assert_error(409, Some("reversal_conflict"));
    reverse(
        &srv,
        "order-1",
        &json!({"reversal_id": "r9", "amount": 601}),
    )
    .await
    .assert_error(400, Some("invalid_amount"));
    let odd = "a/b?c#d%e";
    let enc: String = url::form_urlencoded::byte_serialize(odd.as_bytes()).collect();
    let r = convert(
        &srv,
        &json!({"external_id": odd, "phone": bob.phone, "amount": 10, "currency": "USD"}),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = reverse(&srv, &enc, &json!({"reversal_id": "r"})).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["conversion"]["external_id"], odd);
    // The rewards page: limit and cursor rules; Bob has none of his own.
    for bad in ["0", "501", "x"] {
        srv.get_auth(&format!("/api/profile/rewards?limit={bad}"), &alice.token)
            .await
            .assert_error(400, Some("invalid_limit"));
    }
    srv.get_auth("/api/profile/rewards?cursor=garbage", &alice.token)
        .await
        .assert_error(400, Some("invalid_cursor"));
    srv.get("/api/profile/rewards")
        .await
        .assert_error(401, Some("unauthorized"));
    let r = srv.get_auth("/api/profile/rewards", &bob.token).await;
    assert_eq!(r.body, json!({"items": [], "next_cursor": null}));
    let p = srv.profile(&alice.token).await;
    assert_eq!(
        p["rewards"],
        json!([{"currency": "USD", "pending": 60, "approved": 0, "paid": 0}])
    );
}

/// Without `REFERRAL_API_KEYS` every server route is 401.
pub async fn rewards_without_keys(ctx: Ctx) {
    let srv = ctx.server(&[]).await;
    let user = srv.login(&phone(1)).await;
    let body = json!({"external_id": "o", "phone": user.phone, "amount": 1, "currency": "RUB"});
    srv.post_auth("/api/server/conversions", KEY, &body)
        .await
        .assert_error(401, Some("unauthorized"));
    srv.post_auth("/api/server/conversions", "", &body)
        .await
        .assert_error(401, Some("unauthorized"));
    let p = srv.profile(&user.token).await;
    assert_eq!(p["rewards"], json!([]));
}

/// Two processes on one PostgreSQL recording the same conversion at once:
/// one conversion, one set of rewards, every answer the same.
pub async fn rewards_two_servers_one_conversion(ctx: Ctx) {
    assert_eq!(ctx.backend(), Backend::Postgres);
    let db = ctx.fresh_store().await.expect("a database");
    let env = [
        ("REFERRAL_API_KEYS", KEY),
        ("REFERRAL_REWARD_REFERRER_FIXED", "1000"),
        ("REFERRAL_REWARD_REFERRER_BP", "500"),
    ];
    let a = ctx.server_on(Some(&db), &env).await;
    let b = ctx.server_on(Some(&db), &env).await;
    let alice = a.login(&phone(1)).await;
    let bob = a.login(&phone(2)).await;
    assert_eq!(a.activate(&bob.token, &alice.invite_code).await.status, 200);
    for round in 0..3 {
        let body = json!({"external_id": format!("race-{round}"), "phone": bob.phone,
            "amount": 10_000, "currency": "RUB"});
        let answers = join_all((0..16).map(|i| {
            let srv = if i % 2 == 0 { &a } else { &b };
            let body = body.clone();
            async move { convert(srv, &body).await }
        }))
        .await;
        let created = answers.iter().filter(|r| r.status == 201).count();
        assert_eq!(created, 1, "{answers:?}");
        assert!(
            answers.iter().all(|r| matches!(r.status, 200 | 201)),
            "{answers:?}"
        );
        assert!(
            answers.iter().all(|r| r.body == answers[0].body),
            "{answers:?}"
        );
    }
    let all = all_rewards(&b, &alice.token).await;
    // The fixed part once (first conversion), 5 % of each of three.
    let mut kinds = summary(&Value::Array(all));
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            s("referrer_fixed", 1000, "pending"),
            s("referrer_percent", 500, "pending"),
            s("referrer_percent", 500, "pending"),
            s("referrer_percent", 500, "pending"),
        ]
    );
}
