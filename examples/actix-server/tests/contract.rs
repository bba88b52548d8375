//! The HTTP contract of API.md against the `referral-server-actix` binary, on the
//! in-memory store and on PostgreSQL (`DATABASE_URL`).

referral_contract_tests::contract_tests!(env!("CARGO_BIN_EXE_referral-server-actix"));
