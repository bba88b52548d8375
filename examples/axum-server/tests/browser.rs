//! The browser tests of the web page and the docs page, against this server.

referral_browser_tests::browser_tests!(env!("CARGO_BIN_EXE_referral-server"));
