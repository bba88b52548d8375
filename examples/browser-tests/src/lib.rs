//! Browser tests of the example servers' web page (`/`) and docs page (`/docs`).
//!
//! Each server package runs the same tests against its own binary through one macro, in a
//! thin `tests/browser.rs`:
//!
//! ```ignore
//! referral_browser_tests::browser_tests!(env!("CARGO_BIN_EXE_referral-server"));
//! ```
//!
//! A test spawns the server binary (`REFERRAL_LISTEN=127.0.0.1:0`, no SMS delay, the
//! in-memory store) and reads its `listening on http://ADDR` line, starts `chromedriver`
//! on a free loopback port, and drives headless Chromium (a fresh profile, a phone-sized
//! window) through the page as a person would: it types, clicks the forms' submit buttons
//! and reads the hooks API.md lists ("Web pages"). A missing hook fails the test.
//!
//! Chromium and chromedriver come from Debian (`apt-get install chromium chromium-driver`:
//! `/usr/bin/chromium`, `/usr/bin/chromedriver`); `REFERRAL_CHROMIUM` and
//! `REFERRAL_CHROMEDRIVER` override the paths. When they are missing the tests are skipped
//! with a message, except when the `CI` variable is set: then they fail.
//!
//! The tests of one binary take turns (one browser at a time), so they stay light on a
//! small machine.

use std::sync::Mutex;

mod browser;
mod flows;
mod process;

/// Expands to the browser tests, run against the server binary at `$server_binary`
/// (usually `env!("CARGO_BIN_EXE_<name>")` inside the server's own package).
#[macro_export]
macro_rules! browser_tests {
    ($server_binary:expr) => {
        /// Two people log in through the page, one activates the other's code, the
        /// referral appears, errors show in the alert, logging out works.
        #[test]
        fn web_page_login_invite_referral_and_errors() {
            $crate::web_page_login_invite_referral_and_errors($server_binary);
        }

        /// The host records conversions with an API key; the page shows the reward
        /// balances, the rewards page by page, and which referrals converted.
        #[test]
        fn web_page_rewards_balances_list_and_converted() {
            $crate::web_page_rewards_balances_list_and_converted($server_binary);
        }

        /// An operator on `/admin`: stats chart and leaderboard, search, detail, block
        /// (the user's token then 403) and unblock, void (the user's balance drops), an
        /// export saved.
        #[test]
        fn admin_page_block_void_stats_and_leaderboard() {
            $crate::admin_page_block_void_stats_and_leaderboard($server_binary);
        }

        /// With the outbox off the page does not show a development code.
        #[test]
        fn web_page_hides_dev_code_when_outbox_is_off() {
            $crate::web_page_hides_dev_code_when_outbox_is_off($server_binary);
        }

        /// `/docs` renders `/api/openapi.json` with the script the server serves itself.
        #[test]
        fn docs_page_renders_the_openapi_document() {
            $crate::docs_page_renders_the_openapi_document($server_binary);
        }
    };
}

/// One browser at a time per test binary.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `flow` with a fresh browser session, unless the browser is missing outside CI.
fn with_browser<F>(test: &str, flow: F)
where
    F: AsyncFnOnce(&fantoccini::Client),
{
    with_session(test, async |session| flow(session.client()).await);
}

/// As [`with_browser`], with the whole session (its download directory too).
fn with_session<F>(test: &str, flow: F)
where
    F: AsyncFnOnce(&browser::Session),
{
    let Some(paths) = browser::BrowserPaths::find(test) else {
        return;
    };
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let session = browser::Session::start(&paths).await;
        flow(&session).await;
        session.close().await;
    });
}

/// Two people log in through the page (reading `#dev-code`); the second activates the
/// first's code; the first sees the referral in `#referrals`; errors (a bad phone, one's
/// own code, an unknown code) show in `[role=alert]`; logging out returns to the phone form.
///
/// # Panics
/// When the page or the server does not behave so, or when the browser is missing while
/// `CI` is set.
pub fn web_page_login_invite_referral_and_errors(server_binary: &str) {
    with_browser(
        "web_page_login_invite_referral_and_errors",
        async |client| {
            let server = process::Server::start(server_binary, true);
            flows::login_invite_referral_and_errors(client, server.base_url()).await;
        },
    );
}

/// Rewards end to end, with a server paying a fixed 1000, 5 % and a welcome 300 (RUB):
/// Alice and Bob log in through the page and Bob activates Alice's code (his page shows
/// the approved welcome gift); a third user activates it over the API; the host records
/// Bob's conversions in RUB, JPY and KWD through `POST /api/server/conversions` with an
/// API key; Alice's page shows the pending balance per currency in major units
/// (`#reward-balances`), her rewards newest first with "Show more rewards" paging by
/// cursor (`#rewards`), and Bob's referral marked `converted` while the other's is not.
///
/// # Panics
/// When the page or the server does not behave so, or as
/// [`web_page_login_invite_referral_and_errors`].
pub fn web_page_rewards_balances_list_and_converted(server_binary: &str) {
    with_browser(
        "web_page_rewards_balances_list_and_converted",
        async |client| {
            let server = process::Server::start_with(server_binary, true, flows::REWARD_SETTINGS);
            flows::rewards_balances_list_and_converted(client, server.base_url()).await;
        },
    );
}

/// The operators' page end to end, on a laptop-sized window, with the rewards test's
/// policy and an operator phone (`REFERRAL_ADMIN_PHONES`): over the API Alice refers Bob
/// and Carol, Bob refers Dave, and the host records Bob's order (Alice earns 1000 + 5 %,
/// pending). The operator logs in on `/admin` through its forms (code from `#dev-code`)
/// and finds today's bars of `#stats-chart` (5 users, 3 activations, 1 conversion; every
/// other day 0), the reward totals and the leaderboard (Alice 2, Bob 1); searches Bob's
/// phone (typed with spaces and dashes), opens him (referrer Alice, referral Dave),
/// blocks him with a reason: Bob's token on `/api/profile` is then 403 `user_blocked`;
/// unblocks him: 200 again. From Bob's detail the operator opens Alice (the referrer
/// link), voids her pending fixed reward with a reason: her pending balance (over the
/// API) drops by 1000. The referrals export is fetched with the token and saved as
/// `referrals.csv` (read from the browser's download directory), the rewards export as
/// `rewards.csv` (the voided reward in it). Nothing from another origin, no sideways
/// scrolling. After logging out, a user who is not an operator logs in on the page and
/// sees the server's 403 message, back at the log-in.
///
/// # Panics
/// When the page or the server does not behave so (a Block or Void button that does
/// nothing fails it), or as [`web_page_login_invite_referral_and_errors`].
pub fn admin_page_block_void_stats_and_leaderboard(server_binary: &str) {
    with_session(
        "admin_page_block_void_stats_and_leaderboard",
        async |session| {
            let mut settings = flows::REWARD_SETTINGS.to_vec();
            settings.push(("REFERRAL_ADMIN_PHONES", flows::OPERATOR));
            let server = process::Server::start_with(server_binary, true, &settings);
            flows::admin_page(session.client(), server.base_url(), &session.downloads()).await;
        },
    );
}

/// With `REFERRAL_DEV_OUTBOX=0`, sending a code shows the code form but no `#dev-code`.
///
/// # Panics
/// When the page shows a development code anyway, or as
/// [`web_page_login_invite_referral_and_errors`].
pub fn web_page_hides_dev_code_when_outbox_is_off(server_binary: &str) {
    with_browser(
        "web_page_hides_dev_code_when_outbox_is_off",
        async |client| {
            let server = process::Server::start(server_binary, false);
            flows::dev_code_hidden(client, server.base_url()).await;
        },
    );
}

/// `/docs` renders the routes of `/api/openapi.json`, loading only same-origin resources.
///
/// # Panics
/// When the page does not render the document, or loads anything from another origin.
pub fn docs_page_renders_the_openapi_document(server_binary: &str) {
    with_browser("docs_page_renders_the_openapi_document", async |client| {
        let server = process::Server::start(server_binary, true);
        flows::docs_page(client, server.base_url()).await;
    });
}
