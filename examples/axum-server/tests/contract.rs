//! The HTTP contract of API.md against `referral-server`'s app: in process
//! (`tower::ServiceExt::oneshot` on the router), and as a process for
//! start-up and shutdown; on the in-memory store and on PostgreSQL
//! (`DATABASE_URL`).

use std::sync::Arc;

use referral_contract_tests::{AxumApp, Transport};
use referral_server_common::Settings;

fn app(api: referral_axum::Api, settings: &Settings) -> Arc<dyn Transport> {
    Arc::new(AxumApp(referral_server::app(api, settings)))
}

referral_contract_tests::contract_tests!(
    bin: env!("CARGO_BIN_EXE_referral-server"),
    app: crate::app
);
