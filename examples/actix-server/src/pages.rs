//! The web page at `/`, the operators' page at `/admin` and the API
//! reference at `/docs`, from
//! `referral-server-common`'s embedded assets.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError as _, web};
use referral_actix::{ApiError, Error, get, resource};
use referral_server_common::assets::{self, Asset};

/// Registers `/`, `/admin`, `/assets/{file}`, `/docs` and `/docs/{file}`.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/", "GET, HEAD").route(get().to(index_page)))
        .service(resource("/admin", "GET, HEAD").route(get().to(admin_page)))
        .service(resource("/assets/{file}", "GET, HEAD").route(get().to(page_script)))
        .service(resource("/docs", "GET, HEAD").route(get().to(docs_page)))
        .service(resource("/docs/{file}", "GET, HEAD").route(get().to(docs_asset)));
}

/// A static page or file.
fn asset(asset: Asset) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(asset.content_type)
        .body(asset.body)
}

async fn index_page() -> HttpResponse {
    asset(assets::index_page())
}

async fn admin_page() -> HttpResponse {
    asset(assets::admin_page())
}

async fn docs_page() -> HttpResponse {
    asset(assets::docs_page())
}

async fn page_script(req: HttpRequest) -> HttpResponse {
    match req.match_info().get("file").and_then(assets::page_script) {
        Some(file) => asset(file),
        None => Error(ApiError::not_found()).error_response(),
    }
}

async fn docs_asset(req: HttpRequest) -> HttpResponse {
    match req.match_info().get("file").and_then(assets::docs_asset) {
        Some(file) => {
            let mut response = asset(file);
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static(assets::DOCS_ASSET_CACHE_CONTROL),
            );
            response
        }
        None => Error(ApiError::not_found()).error_response(),
    }
}
