//! The storage conformance kit of referral-core against PostgreSQL, a fresh
//! database per case. Needs `DATABASE_URL` (scripts/test.sh provides one);
//! without it the cases are skipped, except under `CI` where they fail.

mod common;

referral_core::store_conformance_tests!(common::fresh_store);
referral_core::reward_conformance_tests!(common::fresh_store);
referral_core::operator_conformance_tests!(common::fresh_store);
