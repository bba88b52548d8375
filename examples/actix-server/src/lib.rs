//! `referral-server-actix`'s app, as a library so the contract suite can run
//! it in process: the referral routes of `referral-actix` as they are (the
//! contract's paths), the web pages, and the guard the contract asks for
//! (request timeout, header limit, JSON envelope), all taken from
//! `referral-actix` as any host would. The binary (`src/main.rs`) adds
//! binding, the connection limits and shutdown.

use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, web};
use referral_actix::Api;
use referral_actix::middleware::{Guard, guard, not_found};
use referral_server_common::Settings;

mod pages;

/// Every route of API.md and the pages, with the request timeout of
/// `settings`, the header limit and the JSON error envelope.
pub fn app(
    api: Api,
    settings: &Settings,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    > + use<>,
> {
    let options = Guard::default()
        .timeout(settings.request_timeout())
        .limits(*api.limits());
    App::new()
        .configure(referral_actix::configure_with(api))
        .configure(pages::configure)
        .default_service(web::to(not_found))
        .wrap_fn(move |req, srv| guard(req, srv, options))
}
