//! The operators' routes (`/api/admin/*`) for actix-web: the [`Admin`]
//! extractor and the streamed CSV answer ([`Csv`]). The rules are
//! [`referral_http::admin`]'s; this module only adapts them.

use std::future::Future;
use std::pin::Pin;

use actix_web::body::BoxBody;
use actix_web::dev::Payload;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse, Responder, web};
use referral_http::admin::{
    self,
    dto::{BlockRequest, UnblockRequest, VoidRequest},
};
use referral_http::{CsvExport, Operator};

use crate::{ActixHeaders, Answer, Api, Error, api_of, get, query, read_json, resource};

/// The caller of an `/api/admin/*` route: a user whose phone is one of the
/// [`Api`]'s admin phones. Rejects with 401 `unauthorized`, 403
/// `user_blocked` or 403 `forbidden` ([`Api::authenticate_admin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admin(pub Operator);

impl FromRequest for Admin {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Error>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let api = api_of(&req)?;
            Ok(Self(
                api.authenticate_admin(&ActixHeaders(req.headers())).await?,
            ))
        })
    }
}

/// A CSV export as an actix answer: 200, its headers, and a body streamed
/// batch by batch (an error on a later batch ends the body with an error,
/// so actix cuts the connection).
#[derive(Debug)]
pub struct Csv(pub CsvExport);

impl Responder for Csv {
    type Body = BoxBody;

    fn respond_to(self, _req: &HttpRequest) -> HttpResponse {
        let headers = self.0.headers();
        let chunks = futures_util::stream::unfold(self.0, |mut export| async move {
            let chunk = export.next_chunk().await?;
            Some((chunk.map(web::Bytes::from), export))
        });
        let mut response = HttpResponse::Ok().streaming(chunks);
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// Registers the admin routes (part of [`crate::configure`]).
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/admin/users", "GET, HEAD").route(get().to(search_users)))
        .service(resource("/api/admin/users/{id}", "GET, HEAD").route(get().to(user_detail)))
        .service(
            resource("/api/admin/users/{id}/rewards", "GET, HEAD").route(get().to(user_rewards)),
        )
        .service(resource("/api/admin/users/{id}/block", "POST").route(web::post().to(block_user)))
        .service(
            resource("/api/admin/users/{id}/unblock", "POST").route(web::post().to(unblock_user)),
        )
        .service(
            resource("/api/admin/rewards/{id}/void", "POST").route(web::post().to(void_reward)),
        )
        .service(resource("/api/admin/stats", "GET, HEAD").route(get().to(stats)))
        .service(resource("/api/admin/leaderboard", "GET, HEAD").route(get().to(leaderboard)))
        .service(
            resource("/api/admin/export/referrals.csv", "GET, HEAD")
                .route(get().to(export_referrals)),
        )
        .service(
            resource("/api/admin/export/rewards.csv", "GET, HEAD").route(get().to(export_rewards)),
        );
}

async fn search_users(
    api: web::Data<Api>,
    req: HttpRequest,
    Admin(op): Admin,
) -> Result<Answer, Error> {
    Ok(Answer(admin::search_users(&api, op, query(&req)).await?))
}

async fn user_detail(
    api: web::Data<Api>,
    Admin(op): Admin,
    id: web::Path<String>,
) -> Result<Answer, Error> {
    Ok(Answer(admin::user_detail(&api, op, &id).await?))
}

async fn user_rewards(
    api: web::Data<Api>,
    req: HttpRequest,
    Admin(op): Admin,
    id: web::Path<String>,
) -> Result<Answer, Error> {
    Ok(Answer(
        admin::user_rewards(&api, op, &id, query(&req)).await?,
    ))
}

/// The operator first, then the body (as for the user routes).
async fn block_user(
    api: web::Data<Api>,
    req: HttpRequest,
    Admin(op): Admin,
    id: web::Path<String>,
    body: web::Payload,
) -> Result<Answer, Error> {
    let body: BlockRequest = read_json(&req, body).await?;
    Ok(Answer(admin::block_user(&api, op, &id, body).await?))
}

async fn unblock_user(
    api: web::Data<Api>,
    req: HttpRequest,
    Admin(op): Admin,
    id: web::Path<String>,
    body: web::Payload,
) -> Result<Answer, Error> {
    let body: UnblockRequest = read_json(&req, body).await?;
    Ok(Answer(admin::unblock_user(&api, op, &id, body).await?))
}

async fn void_reward(
    api: web::Data<Api>,
    req: HttpRequest,
    Admin(op): Admin,
    id: web::Path<String>,
    body: web::Payload,
) -> Result<Answer, Error> {
    let body: VoidRequest = read_json(&req, body).await?;
    Ok(Answer(admin::void_reward(&api, op, &id, body).await?))
}

async fn stats(api: web::Data<Api>, req: HttpRequest, Admin(op): Admin) -> Result<Answer, Error> {
    Ok(Answer(admin::stats(&api, op, query(&req)).await?))
}

async fn leaderboard(
    api: web::Data<Api>,
    req: HttpRequest,
    Admin(op): Admin,
) -> Result<Answer, Error> {
    Ok(Answer(admin::leaderboard(&api, op, query(&req)).await?))
}

async fn export_referrals(api: web::Data<Api>, Admin(op): Admin) -> Result<Csv, Error> {
    Ok(Csv(admin::export_referrals(&api, op).await?))
}

async fn export_rewards(api: web::Data<Api>, Admin(op): Admin) -> Result<Csv, Error> {
    Ok(Csv(admin::export_rewards(&api, op).await?))
}
