//! What a person does on the pages, step by step, through the hooks of API.md.

use std::future::Future;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::{Client, Locator};
use serde_json::{Value, json};

use crate::browser::{LAPTOP_HEIGHT, LAPTOP_WIDTH, WINDOW_HEIGHT, WINDOW_WIDTH};

/// How long one step may take to show its result.
const STEP: Duration = Duration::from_secs(20);
/// How often a step's result is looked for.
const POLL: Duration = Duration::from_millis(100);

/// The first person, typed as people write numbers (the page shows E.164).
const ALICE_TYPED: &str = "+7 (999) 555-01-01";
const ALICE: &str = "+79995550101";
/// The second person.
const BOB: &str = "+79995550102";
/// A third person, who logs in over the API only.
const CAROL: &str = "+79995550103";
/// A fourth, over the API only (the operators' test).
const DAVE: &str = "+79995550104";
/// A user who is not an operator, on the operators' page.
const EVE: &str = "+79995550105";
/// The operator of the operators' test (`REFERRAL_ADMIN_PHONES`).
pub(crate) const OPERATOR: &str = "+79995550100";
/// How the operator types it.
const OPERATOR_TYPED: &str = "+7 999 555 01 00";

/// The API key the host's backend sends in the rewards test.
const API_KEY: &str = "browser-test-api-key-0123456789abcdef";

/// The rewards test's server settings: an API key, a fixed 1000, 5 % and a welcome 300,
/// all RUB, and the default 30-day hold (so the referrer's rewards stay pending).
pub(crate) const REWARD_SETTINGS: &[(&str, &str)] = &[
    ("REFERRAL_API_KEYS", API_KEY),
    ("REFERRAL_REWARD_REFERRER_FIXED", "1000"),
    ("REFERRAL_REWARD_REFERRER_BP", "500"),
    ("REFERRAL_REWARD_WELCOME_FIXED", "300"),
    ("REFERRAL_REWARD_CURRENCY", "RUB"),
];

/// The payout reference the host pays Bob's welcome gift with: printable ASCII that looks
/// like markup, which the page must show as text.
const PAYOUT_REF: &str = "<i>payout-2026-11-30</i>";

/// The rewards the web page shows in one page of `#rewards` (see `index.html`).
const REWARDS_PAGE: usize = 10;

/// Checks, in the page, that every hook of API.md's "Web pages" is there and shaped as
/// it says; returns the list of what is wrong.
const HOOKS_SCRIPT: &str = r#"
const problems = [];
const forms = [];
for (const name of ["phone", "code", "invite_code"]) {
  const inputs = document.querySelectorAll(`input[name="${name}"]`);
  if (inputs.length !== 1) { problems.push(`${inputs.length} inputs named ${name}`); continue; }
  const form = inputs[0].form;
  if (!form) { problems.push(`input ${name} is in no <form>`); continue; }
  if (forms.includes(form)) { problems.push(`input ${name} shares its <form>`); }
  forms.push(form);
  const submit = form.querySelector('button:not([type]), button[type="submit"], input[type="submit"]');
  if (!submit) { problems.push(`the form of ${name} has no submit button`); }
}
for (const id of ["invite-code", "activated-invite-code", "referrals", "dev-code"]) {
  if (!document.getElementById(id)) { problems.push(`no element with id ${id}`); }
}
const list = document.getElementById("referrals");
if (list && !["UL", "OL"].includes(list.tagName)) { problems.push(`#referrals is a <${list.tagName}>, not a list`); }
if (document.querySelectorAll('[role="alert"]').length !== 1) { problems.push('not exactly one element with role="alert"'); }
return problems;
"#;

/// Lists the resources the page loaded from another origin (there must be none).
const FOREIGN_RESOURCES_SCRIPT: &str = r#"
return performance.getEntriesByType("resource")
  .map(e => e.name)
  .filter(n => !n.startsWith(location.origin + "/") && !n.startsWith("blob:") && !n.startsWith("data:"));
"#;

/// Sends one API request from the page (same origin) and answers `{status, body}`.
const FETCH_SCRIPT: &str = r#"
const [method, path, body] = arguments;
const init = { method, headers: { "Content-Type": "application/json" } };
if (body !== null) { init.body = JSON.stringify(body); }
return fetch(path, init).then(async r => ({ status: r.status, body: await r.json() }));
"#;

/// Two people log in, one activates the other's code, the referral appears, errors show.
pub(crate) async fn login_invite_referral_and_errors(client: &Client, base: &str) {
    let page = Page { client, base };
    page.open("/").await;
    page.assert_hooks().await;
    page.assert_phone_size().await;
    page.assert_only_form("phone").await;
    assert!(
        !page.displayed("#invite-code").await,
        "signed out, the page must not show a profile"
    );
    page.snapshot("1-signed-out").await;

    // A wrong phone: the server's message shows in the alert.
    let expected = page
        .api("POST", "/api/auth/code", json!({"phone": "12"}))
        .await;
    let message = error_message(&expected);
    page.fill("phone", "12").await;
    page.submit("phone").await;
    let shown = page.wait_alert().await;
    assert!(
        shown.contains(&message),
        "the alert shows {shown:?}, not the server's message {message:?}"
    );
    page.assert_only_form("phone").await;
    page.snapshot("2-bad-phone").await;

    // Alice logs in and gets her invite code.
    let alice_code = page.log_in(ALICE_TYPED, ALICE).await;

    // Her own code: an error, nothing activated.
    page.fill("invite_code", &alice_code).await;
    page.submit("invite_code").await;
    page.wait_alert().await;
    assert_eq!(page.text("#activated-invite-code").await, "");
    assert!(page.form_displayed("invite_code").await);
    page.assert_phone_size().await;
    page.snapshot("4-own-code").await;
    let alice_window = client.window().await.expect("the current window");

    // Bob, in another window (its own session storage), logs in.
    let bob_window = client.new_window(false).await.expect("a new window").handle;
    client
        .switch_to_window(bob_window.clone())
        .await
        .expect("switch to Bob's window");
    client
        .set_window_size(WINDOW_WIDTH, WINDOW_HEIGHT)
        .await
        .expect("a phone-sized window");
    page.open("/").await;
    page.assert_phone_size().await;
    page.assert_only_form("phone").await;
    let bob_code = page.log_in(BOB, BOB).await;
    assert_ne!(bob_code, alice_code, "two users got the same invite code");

    // An unknown code: an error, nothing activated.
    let unknown = if alice_code == "ZZZZ99" {
        "ZZZZ98"
    } else {
        "ZZZZ99"
    };
    page.fill("invite_code", unknown).await;
    page.submit("invite_code").await;
    page.wait_alert().await;
    assert_eq!(page.text("#activated-invite-code").await, "");

    // Alice's code, typed loosely: activated, and the error is gone.
    page.fill("invite_code", &format!("  {}  ", alice_code.to_lowercase()))
        .await;
    page.submit("invite_code").await;
    page.wait_text("#activated-invite-code", &alice_code).await;
    assert_eq!(
        page.alert().await,
        "",
        "an old error still shows after a success"
    );
    assert!(
        !page.form_displayed("invite_code").await,
        "once a code is activated the invite form has no use and must be hidden"
    );
    assert_eq!(page.referrals().await, Vec::<String>::new());
    page.snapshot("5-activated").await;

    // Alice sees Bob among her referrals (after reloading: her session is kept).
    client
        .switch_to_window(alice_window)
        .await
        .expect("switch to Alice's window");
    client.refresh().await.expect("reload the page");
    page.wait_text("#invite-code", &alice_code).await;
    page.wait_for("Bob in Alice's #referrals", async || {
        Ok((page.referrals().await == [BOB]).then_some(()))
    })
    .await;
    assert_eq!(page.text("#activated-invite-code").await, "");
    page.snapshot("6-referral").await;

    // Logging out returns to the phone form, and stays so after a reload.
    let log_out = client
        .find(Locator::XPath("//button[normalize-space()='Log out']"))
        .await
        .expect("a 'Log out' button");
    log_out.click().await.expect("click 'Log out'");
    page.wait_for("the phone form after logging out", async || {
        Ok(page.form_displayed("phone").await.then_some(()))
    })
    .await;
    page.assert_only_form("phone").await;
    assert!(!page.displayed("#invite-code").await);
    client.refresh().await.expect("reload the page");
    page.assert_only_form("phone").await;

    page.assert_same_origin().await;
    client
        .switch_to_window(bob_window)
        .await
        .expect("switch to Bob's window");
    page.assert_same_origin().await;
}

/// Rewards end to end: balances per currency, the reward list page by page, `converted`.
pub(crate) async fn rewards_balances_list_and_converted(client: &Client, base: &str) {
    let page = Page { client, base };
    let host = Host::new(base);
    page.open("/").await;
    page.assert_hooks().await;
    let alice_code = page.log_in(ALICE, ALICE).await;
    page.wait_for("Alice's empty rewards", async || {
        Ok((page.displayed("#no-rewards").await && page.rewards().await.is_empty()).then_some(()))
    })
    .await;
    assert!(
        !page.displayed("#reward-balances").await,
        "a user with no rewards sees no balance table"
    );
    let alice_window = client.window().await.expect("the current window");

    // Bob logs in and activates Alice's code: his welcome gift, approved at once.
    let bob_window = client.new_window(false).await.expect("a new window").handle;
    client
        .switch_to_window(bob_window)
        .await
        .expect("switch to Bob's window");
    client
        .set_window_size(WINDOW_WIDTH, WINDOW_HEIGHT)
        .await
        .expect("a phone-sized window");
    page.open("/").await;
    page.log_in(BOB, BOB).await;
    page.fill("invite_code", &alice_code).await;
    page.submit("invite_code").await;
    page.wait_text("#activated-invite-code", &alice_code).await;
    page.wait_balances(&[["RUB", "0.00", "3.00", "0.00"]]).await;
    let welcome = page
        .wait_for("Bob's welcome gift in #rewards", async || {
            let items = page.rewards().await;
            Ok((items.len() == 1).then_some(items))
        })
        .await;
    for part in [
        "Welcome gift",
        "3.00 RUB",
        "Approved",
        &format!("invited by {ALICE}"),
    ] {
        assert!(
            welcome[0].contains(part),
            "Bob's welcome reward shows {:?}, without {part:?}",
            welcome[0]
        );
    }
    page.assert_phone_size().await;
    page.snapshot("8-welcome").await;

    // The host pays Bob's welcome gift out; his page shows it paid, with the payout
    // reference as text (one that looks like markup must stay text).
    let bob_token = client
        .execute(
            "return sessionStorage.getItem('referral.access_token');",
            vec![],
        )
        .await
        .expect("read Bob's token");
    let bob_token = bob_token.as_str().expect("Bob's access token in the page");
    let (status, bob_rewards) = host.get("/api/profile/rewards", bob_token).await;
    assert_eq!(status, 200, "{bob_rewards}");
    let welcome_id = bob_rewards["items"][0]["id"]
        .as_str()
        .expect("the welcome reward's id")
        .to_owned();
    let (status, paid) = host
        .post(
            &format!("/api/server/rewards/{welcome_id}/paid"),
            &json!({"payout_ref": PAYOUT_REF}),
        )
        .await;
    assert_eq!(status, 200, "paying the welcome gift: {paid}");
    assert_eq!(paid["payout_ref"], PAYOUT_REF, "{paid}");
    client
        .find(Locator::XPath("//button[normalize-space()='Refresh']"))
        .await
        .expect("a 'Refresh' button")
        .click()
        .await
        .expect("click 'Refresh'");
    page.wait_balances(&[["RUB", "0.00", "0.00", "3.00"]]).await;
    let paid_item = page
        .wait_for("Bob's paid welcome gift in #rewards", async || {
            let items = page.rewards().await;
            Ok((items.len() == 1 && items[0].contains("Paid")).then_some(items))
        })
        .await;
    assert!(
        paid_item[0].contains(&format!("payout ref {PAYOUT_REF}")),
        "Bob's paid reward shows {:?}, without its payout reference",
        paid_item[0]
    );
    let markup = client
        .execute(
            "return document.querySelectorAll('#rewards i, #rewards script').length;",
            vec![],
        )
        .await
        .expect("count elements in #rewards");
    assert_eq!(
        markup.as_u64(),
        Some(0),
        "the payout reference became markup"
    );
    page.snapshot("8b-paid").await;

    // Carol activates Alice's code too (over the API); only Bob buys.
    host.log_in_and_activate(CAROL, &alice_code).await;
    // Bob's orders: o1 earns Alice the fixed part and 5 %, the others 5 % each.
    let mut conversions = vec![
        ("o1".to_owned(), 3_000_000, "RUB"),
        ("j1".to_owned(), 5_000, "JPY"),
        ("k1".to_owned(), 12_345, "KWD"),
    ];
    conversions.extend((1..=8).map(|i| (format!("s{i}"), 1_000, "RUB")));
    for (external_id, amount, currency) in conversions {
        let (status, body) = host
            .post(
                "/api/server/conversions",
                &json!({"external_id": external_id, "phone": BOB, "amount": amount,
                        "currency": currency}),
            )
            .await;
        assert_eq!(status, 201, "recording {external_id}: {body}");
    }

    // Alice refreshes: pending balances per currency, in major units by exponent
    // (RUB 1000 + 150000 + 8 × 50 kopecks; JPY 250 yen; KWD 617 fils).
    client
        .switch_to_window(alice_window)
        .await
        .expect("switch to Alice's window");
    let refresh = client
        .find(Locator::XPath("//button[normalize-space()='Refresh']"))
        .await
        .expect("a 'Refresh' button");
    refresh.click().await.expect("click 'Refresh'");
    page.wait_balances(&[
        ["JPY", "250", "0", "0"],
        ["KWD", "0.617", "0.000", "0.000"],
        ["RUB", "1,514.00", "0.00", "0.00"],
    ])
    .await;
    let fits = client
        .execute(
            "const b = document.getElementById('balances-box'); \
             return [b.scrollWidth, b.clientWidth];",
            vec![],
        )
        .await
        .expect("measure the balance table");
    assert!(
        fits[0].as_f64() <= fits[1].as_f64(),
        "the balance table needs sideways scrolling on a phone: {fits}"
    );
    page.wait_for("Bob converted, Carol not, in #referrals", async || {
        Ok(
            (page.referrals().await == [format!("{BOB} converted"), CAROL.to_owned()])
                .then_some(()),
        )
    })
    .await;

    // Her rewards, newest first, one page, then the next by its cursor.
    let first = page
        .wait_for("a full first page of #rewards", async || {
            let items = page.rewards().await;
            Ok((items.len() == REWARDS_PAGE).then_some(items))
        })
        .await;
    for part in [
        "Share of a purchase",
        "0.50 RUB",
        "Pending",
        &format!("from {BOB}"),
        "conversion s8",
    ] {
        assert!(
            first[0].contains(part),
            "the newest reward shows {:?}, without {part:?}",
            first[0]
        );
    }
    assert!(first[8].contains("0.617 KWD"), "{first:?}");
    assert!(first[9].contains("250 JPY"), "{first:?}");
    page.snapshot("9-rewards").await;
    let more = client
        .find(Locator::XPath(
            "//button[normalize-space()='Show more rewards']",
        ))
        .await
        .expect("a 'Show more rewards' button");
    assert!(more.is_displayed().await.unwrap_or(false));
    more.click().await.expect("click 'Show more rewards'");
    let all = page
        .wait_for("the second page of #rewards", async || {
            let items = page.rewards().await;
            Ok((items.len() == REWARDS_PAGE + 2).then_some(items))
        })
        .await;
    assert_eq!(all[..REWARDS_PAGE], first[..], "the first page changed");
    let oldest = &all[REWARDS_PAGE..];
    assert!(
        oldest
            .iter()
            .any(|r| r.contains("Referral bonus") && r.contains("10.00 RUB"))
            && oldest
                .iter()
                .any(|r| r.contains("Share of a purchase") && r.contains("1,500.00 RUB")),
        "o1's fixed and percentage rewards are not the oldest: {oldest:?}"
    );
    assert!(
        oldest.iter().all(|r| r.contains("conversion o1")),
        "{oldest:?}"
    );
    page.wait_for(
        "'Show more rewards' hidden after the last page",
        async || Ok((!page.displayed("#more-rewards").await).then_some(())),
    )
    .await;
    assert_eq!(page.alert().await, "", "an error shows on the rewards page");
    page.assert_phone_size().await;
    page.assert_same_origin().await;
    page.snapshot("10-all-rewards").await;
}

/// With the outbox off, the code form shows but `#dev-code` does not.
pub(crate) async fn dev_code_hidden(client: &Client, base: &str) {
    let page = Page { client, base };
    page.open("/").await;
    page.assert_hooks().await;
    page.fill("phone", ALICE).await;
    page.submit("phone").await;
    page.wait_for("the code form", async || {
        Ok(page.form_displayed("code").await.then_some(()))
    })
    .await;
    // Wait until the page has asked the outbox (and got its 404) before looking.
    page.wait_for("the page's request to /api/dev/sms", async || {
        let asked = client
            .execute(
                "return performance.getEntriesByType('resource')\
                 .some(e => e.name.includes('/api/dev/sms'));",
                vec![],
            )
            .await?;
        Ok((asked == json!(true)).then_some(()))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !page.displayed("#dev-code").await,
        "#dev-code shows although the outbox is off"
    );
    assert_eq!(page.alert().await, "", "a 404 from the outbox is no error");
}

/// `/docs` renders the document's routes with same-origin scripts only.
pub(crate) async fn docs_page(client: &Client, base: &str) {
    let page = Page { client, base };
    page.open("/docs").await;
    page.wait_for("the rendered API reference", async || {
        let text = client
            .execute("return document.body.innerText;", vec![])
            .await?;
        let text = text.as_str().unwrap_or_default();
        Ok(
            ["/api/auth/code", "/api/auth/verify", "/api/profile/invite"]
                .iter()
                .all(|route| text.contains(route))
                .then_some(()),
        )
    })
    .await;
    let scripts = client
        .execute(
            "return [...document.scripts].map(s => s.src).filter(s => s);",
            vec![],
        )
        .await
        .expect("list the scripts");
    assert!(
        scripts.as_array().is_some_and(|s| !s.is_empty()
            && s.iter().all(|src| src
                .as_str()
                .is_some_and(|src| src.starts_with(&format!("{base}/"))))),
        "the docs page's scripts must come from the server itself: {scripts}"
    );
    page.assert_same_origin().await;
    page.snapshot("7-docs").await;
}

/// The operators' page: stats, leaderboard, search, detail, block, unblock, void, export.
pub(crate) async fn admin_page(client: &Client, base: &str, downloads: &std::path::Path) {
    let page = Page { client, base };
    let host = Host::new(base);
    // The program, over the API: Alice refers Bob and Carol, Bob refers Dave (each gets
    // the 300 welcome gift, approved); Bob's order of 2,000.00 RUB earns Alice the fixed
    // 1000 and 5 % (10000), both pending.
    let alice = host.log_in(ALICE).await;
    let alice_code = alice["profile"]["invite_code"].as_str().expect("a code");
    let bob = host.log_in(BOB).await;
    let bob_id = bob["profile"]["id"].as_str().expect("an id");
    host.activate(token(&bob), alice_code).await;
    host.log_in_and_activate(CAROL, alice_code).await;
    let bob_code = bob["profile"]["invite_code"].as_str().expect("a code");
    host.log_in_and_activate(DAVE, bob_code).await;
    let (status, body) = host
        .post(
            "/api/server/conversions",
            &json!({"external_id": "o1", "phone": BOB, "amount": 200_000, "currency": "RUB"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(host.pending_rub(token(&alice)).await, 11_000);

    // The operator logs in on /admin, on a laptop screen.
    client
        .set_window_size(LAPTOP_WIDTH, LAPTOP_HEIGHT)
        .await
        .expect("a laptop-sized window");
    page.open("/admin").await;
    page.admin_log_in().await;
    page.snapshot("11-admin").await;

    // The statistics: totals, reward totals, and the chart's 30 days, today's bars
    // counting what was made today (every user is), every other day 0.
    page.wait_for(
        "the totals 5 users, 3 activations, 1 conversion",
        async || {
            let shown = [
                page.text("#total-users").await,
                page.text("#total-activations").await,
                page.text("#total-conversions").await,
            ];
            Ok((shown == ["5", "3", "1"]).then_some(()))
        },
    )
    .await;
    page.wait_rows(
        "#stats-rewards",
        &[&["RUB", "110.00", "9.00", "0.00", "0.00"]],
    )
    .await;
    let chart = page
        .eval(
            "const today = new Date().toISOString().slice(0, 10); \
             const groups = [...document.querySelectorAll('#stats-chart g[data-date]')]; \
             return { today, days: groups.map(g => [g.getAttribute('data-date'), \
               [...g.querySelectorAll('rect')].map(r => [r.getAttribute('data-series'), \
                 Number(r.getAttribute('data-value')), Number(r.getAttribute('height'))])]) };",
        )
        .await;
    let days = chart["days"].as_array().expect("the chart's days");
    assert_eq!(
        days.len(),
        30,
        "the chart shows {} days: {chart}",
        days.len()
    );
    let last = days.last().expect("a last day");
    assert_eq!(
        last[0], chart["today"],
        "the last bars are not today's: {chart}"
    );
    let bars: Vec<(String, i64, f64)> = serde_json::from_value(last[1].clone()).expect("bars");
    let values: Vec<(&str, i64)> = bars.iter().map(|(s, v, _)| (s.as_str(), *v)).collect();
    assert_eq!(
        values,
        [("users", 5), ("activations", 3), ("conversions", 1)],
        "today's bars: {chart}"
    );
    let heights: Vec<f64> = bars.iter().map(|(_, _, h)| *h).collect();
    assert!(
        heights[0] > heights[1] && heights[1] > heights[2] && heights[2] > 0.0,
        "the bars' heights do not follow their values: {heights:?}"
    );
    for day in &days[..29] {
        let bars: Vec<(String, i64, f64)> = serde_json::from_value(day[1].clone()).expect("bars");
        assert!(
            bars.iter().all(|(_, v, h)| *v == 0 && *h == 0.0),
            "a day before today has bars: {day}"
        );
    }

    // The leaderboard: Alice with 2 referrals, then Bob with 1; nothing rewarded yet.
    page.wait_rows(
        "#leaderboard",
        &[&["1", ALICE, "2", "none"], &["2", BOB, "1", "none"]],
    )
    .await;

    // Search Bob's phone as people write it; open him.
    page.fill("q", "+7 999 555-01-02").await;
    page.submit("q").await;
    let bob_row = format!("#users tr[data-user-id='{bob_id}']");
    page.wait_for("Bob alone in the search results", async || {
        let rows = page.rows("#users").await?;
        Ok((rows.len() == 1 && rows[0][0] == BOB && rows[0][3] == "active").then_some(()))
    })
    .await;
    page.click(&format!("{bob_row} button")).await;
    page.wait_text("#detail-phone", BOB).await;
    assert_eq!(page.text("#detail-referrer").await, ALICE);
    assert_eq!(page.text("#detail-activated").await, alice_code);
    assert_eq!(page.text("#detail-id").await, bob_id);
    assert_eq!(
        page.eval("return [...document.querySelectorAll('#detail-referrals li')].map(l => l.innerText.trim());")
            .await,
        json!([DAVE])
    );
    assert_eq!(page.blocked_state().await, "false");
    page.snapshot("12-admin-detail").await;

    // Block him with a reason: his next request with his token is refused.
    let reason = "several accounts, one \"device\"";
    page.fill("block_reason", reason).await;
    page.submit("block_reason").await;
    page.wait_for("Bob shown as blocked, with the reason", async || {
        let text = page.text("#detail-blocked").await;
        Ok((page.blocked_state().await == "true"
            && text.contains(reason)
            && text.contains("by you"))
        .then_some(()))
    })
    .await;
    let (status, body) = host.get("/api/profile", token(&bob)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("user_blocked")),
        "Bob's token after the block: {body}"
    );
    page.wait_for("Bob marked blocked in the search results", async || {
        let rows = page.rows("#users").await?;
        Ok((rows.len() == 1 && rows[0][3] == "blocked").then_some(()))
    })
    .await;
    page.snapshot("13-admin-blocked").await;

    // Unblock: the same token works again.
    page.click("#unblock").await;
    page.wait_for("Bob shown as not blocked", async || {
        Ok((page.blocked_state().await == "false").then_some(()))
    })
    .await;
    let (status, body) = host.get("/api/profile", token(&bob)).await;
    assert_eq!(status, 200, "Bob's token after the unblock: {body}");

    // From Bob's detail to his referrer Alice; void her pending fixed reward.
    page.click("#open-referrer").await;
    page.wait_text("#detail-phone", ALICE).await;
    let fixed = "#user-rewards tr[data-kind='referrer_fixed']";
    page.wait_for("Alice's two pending rewards", async || {
        let statuses = page
            .eval("return [...document.querySelectorAll('#user-rewards tbody tr')].map(r => r.getAttribute('data-status'));")
            .await;
        Ok((statuses == json!(["pending", "pending"])).then_some(()))
    })
    .await;
    page.click(&format!("{fixed} button")).await;
    page.fill("void_reason", "order cancelled by hand").await;
    page.submit("void_reason").await;
    page.wait_for("the fixed reward shown voided", async || {
        let status = page
            .eval(&format!(
                "const r = document.querySelector(\"{fixed}\"); return r && r.getAttribute('data-status');"
            ))
            .await;
        Ok((status == json!("voided")).then_some(()))
    })
    .await;
    assert_eq!(
        host.pending_rub(token(&alice)).await,
        10_000,
        "Alice's pending balance did not drop by the voided 1000"
    );
    page.wait_rows("#detail-balances", &[&["RUB", "100.00", "0.00", "0.00"]])
        .await;
    page.wait_rows(
        "#stats-rewards",
        &[&["RUB", "100.00", "9.00", "0.00", "10.00"]],
    )
    .await;
    page.snapshot("14-admin-voided").await;

    // The referrals export: fetched with the token, saved as a file.
    let address_bar = page.eval("return location.href;").await;
    page.click("#export-referrals").await;
    let saved = downloads.join("referrals.csv");
    let csv = page
        .wait_for("referrals.csv in the download directory", async || {
            Ok(std::fs::read_to_string(&saved)
                .ok()
                .filter(|t| t.ends_with("\r\n")))
        })
        .await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three referrals, not {csv:?}");
    assert!(
        lines[0].starts_with("referrer_id,referrer_phone,referee_id"),
        "{csv:?}"
    );
    for (referrer, referee) in [(ALICE, BOB), (ALICE, CAROL), (BOB, DAVE)] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("{referrer},")) && l.contains(referee)),
            "{referrer} → {referee} is not in {csv:?}"
        );
    }
    page.wait_for("the saved export in the status", async || {
        let status = page.text("#status").await;
        Ok(status.contains("Saved referrals.csv").then_some(()))
    })
    .await;
    assert_eq!(
        page.eval("return location.href;").await,
        address_bar,
        "the export left the page"
    );
    let urls = page
        .eval("return performance.getEntriesByType('resource').map(e => e.name);")
        .await;
    assert!(
        !urls.to_string().to_lowercase().contains("token"),
        "a URL carries the token: {urls}"
    );

    // The rewards export: three welcome gifts and Alice's two, the fixed one voided.
    page.click("#export-rewards").await;
    let saved = downloads.join("rewards.csv");
    let csv = page
        .wait_for("rewards.csv in the download directory", async || {
            Ok(std::fs::read_to_string(&saved)
                .ok()
                .filter(|t| t.ends_with("\r\n")))
        })
        .await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 6, "a header and five rewards, not {csv:?}");
    assert!(
        lines[0].starts_with("id,user_id,phone,kind,amount"),
        "{csv:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(ALICE) && l.contains(",referrer_fixed,1000,RUB,voided,")),
        "the voided reward is not in {csv:?}"
    );

    assert_eq!(
        page.alert().await,
        "",
        "an error shows on the operators' page"
    );
    let fits = page
        .eval("return [window.innerWidth, document.documentElement.scrollWidth];")
        .await;
    assert!(
        fits[1].as_f64() <= fits[0].as_f64(),
        "the operators' page scrolls sideways on a laptop screen: {fits}"
    );
    page.assert_same_origin().await;

    // Logging out returns to the log-in; a user who is not an operator logs in there and
    // gets the server's message, and the log-in again.
    page.click("#logout").await;
    page.wait_for("the log-in after logging out", async || {
        Ok((page.form_displayed("phone").await && !page.displayed("#console").await).then_some(()))
    })
    .await;
    page.admin_send_and_verify(EVE).await;
    let shown = page.wait_alert().await;
    assert!(
        shown.contains("operators only"),
        "a user who is not an operator sees {shown:?}"
    );
    page.wait_for(
        "the log-in again for a user who is not an operator",
        async || {
            Ok(
                (page.form_displayed("phone").await && !page.displayed("#console").await)
                    .then_some(()),
            )
        },
    )
    .await;
}

/// The `error.message` of an API answer.
fn error_message(answer: &Value) -> String {
    answer["body"]["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {answer}"))
        .to_owned()
}

/// The host's backend (and a user of the API), over plain HTTP to the server.
#[derive(Debug)]
struct Host<'a> {
    http: reqwest::Client,
    base: &'a str,
}

impl<'a> Host<'a> {
    fn new(base: &'a str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base,
        }
    }

    /// Sends `request`; answers the status and the JSON body.
    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> (u16, Value) {
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = response.status().as_u16();
        let body = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
        (status, body)
    }

    /// `POST path` with the API key, as the host's backend calls `/api/server/*`.
    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(API_KEY)
            .json(body);
        self.send(request, &format!("POST {path}")).await
    }

    /// Logs `phone` in over the API (code from the dev outbox) and activates `code`.
    async fn log_in_and_activate(&self, phone: &str, code: &str) {
        let login = self.log_in(phone).await;
        self.activate(token(&login), code).await;
    }

    /// Logs `phone` in over the API with the code from the dev outbox; answers the
    /// verify answer (`access_token`, `profile`).
    async fn log_in(&self, phone: &str) -> Value {
        let url = |path: &str| format!("{}{path}", self.base);
        let (status, body) = self
            .send(
                self.http
                    .post(url("/api/auth/code"))
                    .json(&json!({"phone": phone})),
                "POST /api/auth/code",
            )
            .await;
        assert_eq!(status, 202, "{body}");
        let (status, sms) = self
            .send(
                // E.164: digits and a `+`, which a query must escape.
                self.http.get(url(&format!(
                    "/api/dev/sms?phone={}",
                    phone.replace('+', "%2B")
                ))),
                "GET /api/dev/sms",
            )
            .await;
        assert_eq!(status, 200, "{sms}");
        let (status, login) = self
            .send(
                self.http
                    .post(url("/api/auth/verify"))
                    .json(&json!({"phone": phone, "code": sms["code"]})),
                "POST /api/auth/verify",
            )
            .await;
        assert_eq!(status, 200, "{login}");
        login
    }

    /// The user of `token` activates `code`.
    async fn activate(&self, token: &str, code: &str) {
        let (status, body) = self
            .send(
                self.http
                    .post(format!("{}/api/profile/invite", self.base))
                    .bearer_auth(token)
                    .json(&json!({"invite_code": code})),
                "POST /api/profile/invite",
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// `GET path` with a user's token: the status and the JSON body.
    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let request = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token);
        self.send(request, &format!("GET {path}")).await
    }

    /// The pending RUB balance of the user of `token` (`GET /api/profile`).
    async fn pending_rub(&self, token: &str) -> i64 {
        let (status, profile) = self.get("/api/profile", token).await;
        assert_eq!(status, 200, "{profile}");
        profile["rewards"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["currency"] == "RUB"))
            .and_then(|b| b["pending"].as_i64())
            .unwrap_or(0)
    }
}

/// The access token of a verify answer.
fn token(login: &Value) -> &str {
    login["access_token"].as_str().expect("an access token")
}

/// The page in the current window of the session.
#[derive(Debug, Clone, Copy)]
struct Page<'a> {
    client: &'a Client,
    base: &'a str,
}

impl Page<'_> {
    /// Saves a screenshot as `NAME.png` in `$REFERRAL_BROWSER_SCREENSHOTS`, when set (to
    /// look at the pages as a person would).
    async fn snapshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("REFERRAL_BROWSER_SCREENSHOTS") else {
            return;
        };
        let png = self.client.screenshot().await.expect("a screenshot");
        let path = std::path::Path::new(&dir).join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
    }

    /// Polls `check` until it answers `Some`, failing after [`STEP`].
    async fn wait_for<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, CmdError>>,
    {
        let started = Instant::now();
        let mut last_error = None;
        loop {
            match check().await {
                Ok(Some(value)) => return value,
                Ok(None) => {}
                Err(e) => last_error = Some(e),
            }
            if started.elapsed() > STEP {
                let alert = self.alert().await;
                panic!(
                    "waited {STEP:?} for {what}; last WebDriver error: {last_error:?}; \
                     the alert shows {alert:?}"
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn assert_hooks(&self) {
        let problems = self
            .client
            .execute(HOOKS_SCRIPT, vec![])
            .await
            .expect("run the hooks check");
        assert_eq!(
            problems,
            json!([]),
            "the page lacks hooks of API.md's \"Web pages\""
        );
    }

    /// At 390 CSS pixels wide, nothing overflows sideways.
    async fn assert_phone_size(&self) {
        let fits = self
            .client
            .execute(
                "return [window.innerWidth, document.documentElement.scrollWidth];",
                vec![],
            )
            .await
            .expect("measure the page");
        let (inner, scroll) = (fits[0].as_f64(), fits[1].as_f64());
        assert!(
            inner.is_some_and(|w| w <= 400.0),
            "the window should be phone-sized: {fits}"
        );
        assert!(
            scroll <= inner,
            "the page is wider than a phone screen: {fits}"
        );
    }

    async fn assert_same_origin(&self) {
        let foreign = self
            .client
            .execute(FOREIGN_RESOURCES_SCRIPT, vec![])
            .await
            .expect("list the page's resources");
        assert_eq!(
            foreign,
            json!([]),
            "the page loaded resources from outside the server"
        );
    }

    /// An API request from the page's origin, for the answers the page should show.
    async fn api(&self, method: &str, path: &str, body: Value) -> Value {
        self.client
            .execute(FETCH_SCRIPT, vec![json!(method), json!(path), body])
            .await
            .unwrap_or_else(|e| panic!("{method} {path} from the page: {e}"))
    }

    async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"))
    }

    /// Whether any element matching `css` is shown.
    async fn displayed(&self, css: &str) -> bool {
        for element in self.find_all(css).await {
            if element.is_displayed().await.unwrap_or(false) {
                return true;
            }
        }
        false
    }

    /// The trimmed text of the one element matching `css` (empty when hidden).
    async fn text(&self, css: &str) -> String {
        let element = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("the page has no {css}: {e}"));
        element
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of {css}: {e}"))
            .trim()
            .to_owned()
    }

    async fn wait_text(&self, css: &str, expected: &str) {
        self.wait_for(&format!("{css} to show {expected:?}"), async || {
            let element = self.client.find(Locator::Css(css)).await?;
            let shown = element.is_displayed().await? && element.text().await?.trim() == expected;
            Ok(shown.then_some(()))
        })
        .await;
    }

    /// The text of the `role="alert"` element.
    async fn alert(&self) -> String {
        match self.client.find(Locator::Css("[role=alert]")).await {
            Ok(alert) => alert.text().await.unwrap_or_default().trim().to_owned(),
            Err(_) => String::new(),
        }
    }

    /// Waits for the alert to show a message, and answers it.
    async fn wait_alert(&self) -> String {
        self.wait_for("an error in [role=alert]", async || {
            let alert = self.client.find(Locator::Css("[role=alert]")).await?;
            let text = alert.text().await?.trim().to_owned();
            Ok((alert.is_displayed().await? && !text.is_empty()).then_some(text))
        })
        .await
    }

    /// The phones listed in `#referrals`.
    async fn referrals(&self) -> Vec<String> {
        let mut phones = Vec::new();
        for item in self.find_all("#referrals li").await {
            if item.is_displayed().await.unwrap_or(false) {
                phones.push(item.text().await.unwrap_or_default().trim().to_owned());
            }
        }
        phones
    }

    /// The rows of the shown `#reward-balances` table, cell by cell (none when hidden).
    async fn balances(&self) -> Result<Vec<Vec<String>>, CmdError> {
        if !self.displayed("#reward-balances").await {
            return Ok(Vec::new());
        }
        let rows = self
            .client
            .execute(
                "return [...document.querySelectorAll('#reward-balances tbody tr')]\
                 .map(r => [...r.cells].map(c => c.innerText.trim()));",
                vec![],
            )
            .await?;
        Ok(serde_json::from_value(rows).unwrap_or_default())
    }

    /// Waits until `#reward-balances` shows exactly `rows` (currency, pending,
    /// approved, paid).
    async fn wait_balances(&self, rows: &[[&str; 4]]) {
        let expected: Vec<Vec<String>> = rows
            .iter()
            .map(|row| row.iter().map(|cell| (*cell).to_owned()).collect())
            .collect();
        let mut last = Vec::new();
        let found = tokio::time::timeout(STEP, async {
            loop {
                if let Ok(rows) = self.balances().await {
                    if rows == expected {
                        return;
                    }
                    last = rows;
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await;
        assert!(
            found.is_ok(),
            "#reward-balances shows {last:?}, not {expected:?}; the alert shows {:?}",
            self.alert().await
        );
    }

    /// The shown items of `#rewards`, their text with white space collapsed.
    async fn rewards(&self) -> Vec<String> {
        let mut items = Vec::new();
        for item in self.find_all("#rewards li").await {
            if item.is_displayed().await.unwrap_or(false) {
                let text = item.text().await.unwrap_or_default();
                items.push(text.split_whitespace().collect::<Vec<_>>().join(" "));
            }
        }
        items
    }

    /// Runs `script` in the page and answers its value.
    async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("run {script}: {e}"))
    }

    /// Clicks the element matching `css`.
    async fn click(&self, css: &str) {
        let element = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("the page has no {css}: {e}"));
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// The rows of the table matching `css` (its body), cell by cell; none when hidden.
    async fn rows(&self, css: &str) -> Result<Vec<Vec<String>>, CmdError> {
        if !self.displayed(css).await {
            return Ok(Vec::new());
        }
        let rows = self
            .client
            .execute(
                "return [...document.querySelector(arguments[0]).tBodies[0].rows]\
                 .map(r => [...r.cells].map(c => c.innerText.trim()));",
                vec![json!(css)],
            )
            .await?;
        Ok(serde_json::from_value(rows).unwrap_or_default())
    }

    /// Waits until the table matching `css` shows exactly `expected`.
    async fn wait_rows(&self, css: &str, expected: &[&[&str]]) {
        let expected: Vec<Vec<String>> = expected
            .iter()
            .map(|row| row.iter().map(|cell| (*cell).to_owned()).collect())
            .collect();
        let mut last = Vec::new();
        let found = tokio::time::timeout(STEP, async {
            loop {
                if let Ok(rows) = self.rows(css).await {
                    if rows == expected {
                        return;
                    }
                    last = rows;
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await;
        assert!(
            found.is_ok(),
            "{css} shows {last:?}, not {expected:?}; the alert shows {:?}",
            self.alert().await
        );
    }

    /// `data-blocked` of the operators' page's `#detail-blocked`.
    async fn blocked_state(&self) -> String {
        self.eval("return document.getElementById('detail-blocked').getAttribute('data-blocked');")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Logs the operator in on `/admin` through its forms, with the code shown in
    /// `#dev-code`, and waits for the console.
    async fn admin_log_in(&self) {
        self.admin_send_and_verify(OPERATOR_TYPED).await;
        self.wait_for("the operators' console", async || {
            Ok(
                (self.displayed("#console").await && !self.form_displayed("code").await)
                    .then_some(()),
            )
        })
        .await;
        assert!(
            self.text("#operator").await.contains(OPERATOR),
            "the page does not name the operator"
        );
    }

    /// On `/admin`'s log-in: sends a code to `typed` and submits the code shown in
    /// `#dev-code`.
    async fn admin_send_and_verify(&self, typed: &str) {
        assert!(self.form_displayed("phone").await);
        assert!(!self.displayed("#console").await);
        self.fill("phone", typed).await;
        self.submit("phone").await;
        let code = self
            .wait_for("the code sent, in #dev-code", async || {
                let element = self.client.find(Locator::Css("#dev-code")).await?;
                let text = element.text().await?.trim().to_owned();
                let is_code =
                    (4..=8).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit());
                Ok((element.is_displayed().await? && is_code).then_some(text))
            })
            .await;
        self.fill("code", &code).await;
        self.submit("code").await;
    }

    /// The form holding the input named `input`.
    async fn form(&self, input: &str) -> Element {
        self.client
            .find(Locator::XPath(&format!(
                "//form[.//input[@name='{input}']]"
            )))
            .await
            .unwrap_or_else(|e| panic!("no <form> holds an input named {input}: {e}"))
    }

    async fn form_displayed(&self, input: &str) -> bool {
        self.form(input).await.is_displayed().await.unwrap_or(false)
    }

    /// Only the form of `input` shows among the three forms.
    async fn assert_only_form(&self, input: &str) {
        for name in ["phone", "code", "invite_code"] {
            let shown = self.form_displayed(name).await;
            assert_eq!(
                shown,
                name == input,
                "the form of {name} should {}be shown now",
                if name == input { "" } else { "not " }
            );
        }
    }

    /// Types `value` into the (shown) input named `input`, replacing what was there.
    async fn fill(&self, input: &str, value: &str) {
        let field = self
            .client
            .find(Locator::Css(&format!("input[name='{input}']")))
            .await
            .unwrap_or_else(|e| panic!("no input named {input}: {e}"));
        field
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clear {input}: {e}"));
        field
            .send_keys(value)
            .await
            .unwrap_or_else(|e| panic!("type into {input}: {e}"));
    }

    /// Clicks the submit button of the form holding `input`.
    async fn submit(&self, input: &str) {
        let button = self
            .form(input)
            .await
            .find(Locator::Css(
                "button:not([type]), button[type='submit'], input[type='submit']",
            ))
            .await
            .unwrap_or_else(|e| panic!("the form of {input} has no submit button: {e}"));
        button
            .click()
            .await
            .unwrap_or_else(|e| panic!("click the submit button of {input}: {e}"));
    }

    /// Logs in through the page with the code shown in `#dev-code`; answers the invite
    /// code the profile shows.
    async fn log_in(&self, typed_phone: &str, phone: &str) -> String {
        self.fill("phone", typed_phone).await;
        self.submit("phone").await;
        let code = self
            .wait_for("the code sent, in #dev-code", async || {
                let element = self.client.find(Locator::Css("#dev-code")).await?;
                let text = element.text().await?.trim().to_owned();
                let is_code =
                    (4..=8).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit());
                Ok((element.is_displayed().await? && is_code).then_some(text))
            })
            .await;
        self.snapshot("3-code-sent").await;
        self.assert_only_form("code").await;
        assert_eq!(
            self.alert().await,
            "",
            "an error shows after sending a code"
        );

        self.fill("code", &code).await;
        self.submit("code").await;
        let invite_code = self
            .wait_for("the profile's #invite-code", async || {
                let element = self.client.find(Locator::Css("#invite-code")).await?;
                let text = element.text().await?.trim().to_owned();
                let is_code = text.len() == 6 && text.bytes().all(|b| b.is_ascii_alphanumeric());
                Ok((element.is_displayed().await? && is_code).then_some(text))
            })
            .await;
        self.assert_only_form("invite_code").await;
        assert!(
            !self.displayed("#dev-code").await,
            "#dev-code still shows once logged in"
        );
        assert_eq!(self.alert().await, "", "an error shows after logging in");
        let body = self
            .client
            .execute("return document.body.innerText;", vec![])
            .await
            .expect("read the page");
        assert!(
            body.as_str().is_some_and(|text| text.contains(phone)),
            "the profile does not show the phone {phone}"
        );
        invite_code
    }
}
