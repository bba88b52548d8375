//! The operators' routes (`/api/admin/*`) for axum: the [`Admin`]
//! extractor and the streamed CSV answer ([`Csv`]). The rules are
//! [`referral_http::admin`]'s; this module only adapts them.

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRef, FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use referral_http::admin::{
    self,
    dto::{BlockRequest, UnblockRequest, VoidRequest},
};
use referral_http::{CsvExport, Operator};

use crate::{Answer, Api, Error, JsonBody, only};

/// The caller of an `/api/admin/*` route: a user whose phone is one of the
/// [`Api`]'s admin phones. Rejects with 401 `unauthorized`, 403
/// `user_blocked` or 403 `forbidden` ([`Api::authenticate_admin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admin(pub Operator);

impl<S> FromRequestParts<S> for Admin
where
    Api: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let api = Api::from_ref(state);
        Ok(Self(api.authenticate_admin(&parts.headers).await?))
    }
}

/// A CSV export as an axum answer: 200, its headers, and a body streamed
/// batch by batch (an error on a later batch ends the body with an error,
/// so hyper cuts the connection).
#[derive(Debug)]
pub struct Csv(pub CsvExport);

impl IntoResponse for Csv {
    fn into_response(self) -> Response {
        let headers = self.0.headers();
        let chunks = futures_util::stream::unfold(self.0, |mut export| async move {
            export.next_chunk().await.map(|chunk| (chunk, export))
        });
        let mut response = Response::new(Body::from_stream(chunks));
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

/// The admin routes, merged into [`crate::router`].
pub(crate) fn routes<S>() -> Router<S>
where
    Api: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/api/admin/users", only(get(search_users)))
        .route("/api/admin/users/{id}", only(get(user_detail)))
        .route("/api/admin/users/{id}/rewards", only(get(user_rewards)))
        .route("/api/admin/users/{id}/block", only(post(block_user)))
        .route("/api/admin/users/{id}/unblock", only(post(unblock_user)))
        .route("/api/admin/rewards/{id}/void", only(post(void_reward)))
        .route("/api/admin/stats", only(get(stats)))
        .route("/api/admin/leaderboard", only(get(leaderboard)))
        .route(
            "/api/admin/export/referrals.csv",
            only(get(export_referrals)),
        )
        .route("/api/admin/export/rewards.csv", only(get(export_rewards)))
}

async fn search_users(
    State(api): State<Api>,
    Admin(op): Admin,
    RawQuery(query): RawQuery,
) -> Result<Answer, Error> {
    Ok(Answer(
        admin::search_users(&api, op, query.as_deref()).await?,
    ))
}

async fn user_detail(
    State(api): State<Api>,
    Admin(op): Admin,
    Path(id): Path<String>,
) -> Result<Answer, Error> {
    Ok(Answer(admin::user_detail(&api, op, &id).await?))
}

async fn user_rewards(
    State(api): State<Api>,
    Admin(op): Admin,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Answer, Error> {
    Ok(Answer(
        admin::user_rewards(&api, op, &id, query.as_deref()).await?,
    ))
}

/// The operator first, then the body (as for the user routes).
async fn block_user(
    State(api): State<Api>,
    Admin(op): Admin,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<BlockRequest>,
) -> Result<Answer, Error> {
    Ok(Answer(admin::block_user(&api, op, &id, body).await?))
}

async fn unblock_user(
    State(api): State<Api>,
    Admin(op): Admin,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UnblockRequest>,
) -> Result<Answer, Error> {
    Ok(Answer(admin::unblock_user(&api, op, &id, body).await?))
}

async fn void_reward(
    State(api): State<Api>,
    Admin(op): Admin,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<VoidRequest>,
) -> Result<Answer, Error> {
    Ok(Answer(admin::void_reward(&api, op, &id, body).await?))
}

async fn stats(
    State(api): State<Api>,
    Admin(op): Admin,
    RawQuery(query): RawQuery,
) -> Result<Answer, Error> {
    Ok(Answer(admin::stats(&api, op, query.as_deref()).await?))
}

async fn leaderboard(
    State(api): State<Api>,
    Admin(op): Admin,
    RawQuery(query): RawQuery,
) -> Result<Answer, Error> {
    Ok(Answer(
        admin::leaderboard(&api, op, query.as_deref()).await?,
    ))
}

async fn export_referrals(State(api): State<Api>, Admin(op): Admin) -> Result<Csv, Error> {
    Ok(Csv(admin::export_referrals(&api, op).await?))
}

async fn export_rewards(State(api): State<Api>, Admin(op): Admin) -> Result<Csv, Error> {
    Ok(Csv(admin::export_rewards(&api, op).await?))
}
