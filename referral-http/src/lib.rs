//! # referral-http
//!
//! The HTTP layer of [`referral_core`], written once and free of any web
//! framework: the thin crates `referral-axum` and `referral-actix` mount it
//! in a host's own application.
//!
//! | module | what it holds |
//! |---|---|
//! | [`Api`] | the [`ReferralService`](referral_core::ReferralService), the host's [`Authenticator`] and the options, built with [`Api::builder`] |
//! | [`handlers`] | one function per route, each annotated with its OpenAPI description; returns a [`Reply`] or an [`ApiError`] |
//! | [`ApiError`] | the one mapping from the core's error enums to a status, the `{"error": {"code", "message"}}` envelope and `Retry-After` |
//! | [`rules`] | JSON object bodies, body and header [`Limits`], the envelope for a framework's own error answers |
//! | [`auth`] | the authentication port ([`Authenticator`]) and its default, HS256 bearer tokens ([`JwtAuth`]) |
//! | [`client`] | the client address of a request (the socket's peer, or `X-Forwarded-For` from [`TrustedProxies`]) for the per-client send limit |
//! | [`keys`] | the API keys of the host backend's routes ([`ApiKeys`], compared in constant time) |
//! | [`admin`] | the operators' routes: who is an operator ([`AdminPhones`]), their handlers, DTOs and error mapping, the streamed CSV exports ([`CsvExport`]) |
//! | [`query`] | query strings read as the contract writes them (`?phone=+7…`) |
//! | [`dto`] | the request and answer bodies |
//! | [`openapi`] | the OpenAPI 3.1 document, built from the handlers' annotations |
//!
//! The routes (paths relative to where the host mounts them):
//! `POST /api/auth/code`, `POST /api/auth/verify`, `GET /api/profile`,
//! `POST /api/profile/invite`, `GET /api/profile/referrals`,
//! `GET /api/profile/rewards`, `GET /api/dev/sms`, `GET /health`,
//! `GET /api/openapi.json`, and the host backend's routes (API key, see
//! [`keys`]): `POST /api/server/conversions`,
//! `POST /api/server/conversions/{external_id}/reversals`,
//! `POST /api/server/rewards/{id}/paid`; and the operators' routes (an
//! access token of a phone in [`AdminPhones`], see [`admin`]):
//! `GET /api/admin/users`, `GET /api/admin/users/{id}`,
//! `GET /api/admin/users/{id}/rewards` (an addition to API.md),
//! `POST /api/admin/users/{id}/block`, `POST /api/admin/users/{id}/unblock`,
//! `POST /api/admin/rewards/{id}/void`, `GET /api/admin/stats`,
//! `GET /api/admin/leaderboard`, `GET /api/admin/export/referrals.csv`,
//! `GET /api/admin/export/rewards.csv` (streamed: the framework crates
//! send a [`CsvExport`] chunk by chunk).
//!
//! ## Quick start
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use referral_core::{ReferralService, StubSmsSender, SystemClock};
//! use referral_http::{handlers, Api, JwtAuth, JwtSecret};
//! use referral_http::dto::CodeRequest;
//! use referral_memory::MemoryStore;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let sms = Arc::new(StubSmsSender::new());
//! let service = ReferralService::builder(Arc::new(MemoryStore::new()), sms.clone()).build()?;
//! let secret: JwtSecret = "a secret of at least thirty-two bytes".parse()?;
//! let api = Api::builder(service, JwtAuth::new(&secret, Duration::from_secs(3600), Arc::new(SystemClock)))
//!     .dev_outbox(sms)
//!     .build();
//!
//! // What a framework handler does: inputs in, one call, the reply out. The
//! // client is the socket's peer here (no trusted proxy, so the header is ignored).
//! let client = api.client_address(Some([203, 0, 113, 7].into()), [&b"198.51.100.1"[..]]);
//! let reply = handlers::request_code(&api, client, CodeRequest { phone: "+79991234567".into() }).await?;
//! assert_eq!(reply.status, 202);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(run()).unwrap();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Adding a route
//!
//! 1. its bodies in [`dto`] (listed in [`openapi::ApiDoc`]'s components);
//! 2. a function in [`handlers`] with its `#[utoipa::path]` annotation,
//!    listed in [`openapi::ApiDoc`]'s `paths`;
//! 3. its errors: `From<TheCoreError> for ApiError` in [`error`];
//! 4. a one-line handler in each framework crate calling it.

pub mod admin;
pub mod api;
pub mod auth;
pub mod client;
pub mod dto;
pub mod error;
pub mod handlers;
pub mod keys;
pub mod openapi;
pub mod query;
pub mod rules;

pub use admin::{AdminPhones, CsvExport, Operator};
pub use api::{Api, ApiBuilder, ServerCaller};
pub use auth::{
    AuthError, Authenticator, BearerToken, Credentials, Headers, JwtAuth, JwtSecret, JwtSecretError,
};
pub use client::{TrustedProxies, TrustedProxiesError, X_FORWARDED_FOR};
pub use error::ApiError;
pub use handlers::{JSON, Reply};
pub use keys::{ApiKey, ApiKeyError, ApiKeys};
pub use rules::{Limits, envelope_for, is_json_content_type, parse_json_body};

pub use referral_core;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
