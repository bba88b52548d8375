//! The fault cases of `referral-fault-tests` (a killed or cut PostgreSQL, a
//! hanging SMS sender, stalled clients, a connection flood, shutdown under
//! load) against the `referral-server` binary.

referral_fault_tests::fault_tests!(env!("CARGO_BIN_EXE_referral-server"));
