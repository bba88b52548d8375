//! The abuse and bad-input suite (`examples/security-tests`) against the
//! `referral-server-actix` binary, on the in-memory store and on PostgreSQL (`DATABASE_URL`).

referral_security_tests::security_tests!(env!("CARGO_BIN_EXE_referral-server-actix"));
