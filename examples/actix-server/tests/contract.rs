//! The HTTP contract of API.md against `referral-server-actix`'s app: in
//! process (`actix_web::test::init_service`), and as a process for start-up
//! and shutdown; on the in-memory store and on PostgreSQL (`DATABASE_URL`).

use std::sync::Arc;

use referral_contract_tests::{ActixApp, Transport};
use referral_server_common::Settings;

fn app(api: referral_actix::Api, settings: &Settings) -> Arc<dyn Transport> {
    let settings = settings.clone();
    Arc::new(ActixApp::start(move || {
        referral_server_actix::app(api, &settings)
    }))
}

referral_contract_tests::contract_tests!(
    bin: env!("CARGO_BIN_EXE_referral-server-actix"),
    app: crate::app
);
