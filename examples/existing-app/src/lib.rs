//! An existing axum service that adds referrals: it has its own routes and
//! its own cookie sessions, mounts the referral routes under `/referral`,
//! and plugs its sessions into the routes' authentication hook, so a phone
//! login through `/referral/api/auth/verify` opens one of ITS sessions (a
//! `sid` cookie, no bearer token) and its own routes and the referral routes
//! recognise the same cookie.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use referral_axum::{Api, AuthError, AuthUser, Authenticator, Credentials, Headers};
use referral_core::{Random, ReferralService, StubSmsSender, ThreadRandom, User, UserId};
use referral_memory::MemoryStore;

/// The app's own session store: session id → user.
#[derive(Debug, Default)]
pub struct Sessions(Mutex<HashMap<String, UserId>>);

impl Sessions {
    /// Opens a session for `user`; its id.
    pub fn open(&self, user: UserId) -> String {
        let mut bytes = [0u8; 16];
        ThreadRandom.fill_bytes(&mut bytes);
        let sid = bytes.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
        self.lock().insert(sid.clone(), user);
        sid
    }

    /// The user of a session, if it is open.
    pub fn user(&self, sid: &str) -> Option<UserId> {
        self.lock().get(sid).copied()
    }

    /// Closes a session.
    pub fn close(&self, sid: &str) {
        self.lock().remove(sid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, UserId>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The `sid` cookie of a request.
fn sid(headers: &dyn Headers) -> Option<&str> {
    headers
        .get("cookie")?
        .split(';')
        .find_map(|pair| pair.trim().strip_prefix("sid="))
}

/// The hook: a referral login opens an app session; a request is its
/// session's user.
#[async_trait]
impl Authenticator for Sessions {
    async fn log_in(&self, user: &User) -> Result<Credentials, AuthError> {
        let sid = self.open(user.id);
        Ok(Credentials::none().with_header(
            "set-cookie",
            format!("sid={sid}; HttpOnly; SameSite=Lax; Path=/"),
        ))
    }

    async fn authenticate(&self, headers: &dyn Headers) -> Result<UserId, AuthError> {
        let sid = sid(headers).ok_or(AuthError::Missing)?;
        self.user(sid).ok_or(AuthError::Invalid)
    }
}

/// The app's state: its own sessions and the referral routes' [`Api`].
#[derive(Debug, Clone)]
pub struct AppState {
    /// The app's sessions.
    pub sessions: Arc<Sessions>,
    /// The referral routes' state.
    pub referral: Api,
}

impl FromRef<AppState> for Api {
    fn from_ref(state: &AppState) -> Api {
        state.referral.clone()
    }
}

/// The state over the in-memory store, with the SMS outbox readable at
/// `/referral/api/dev/sms` (a demo: no real SMS).
///
/// # Panics
/// Never: the default configuration is valid.
#[must_use]
pub fn state() -> AppState {
    let sms = Arc::new(StubSmsSender::new());
    let service = ReferralService::builder(Arc::new(MemoryStore::new()), Arc::clone(&sms) as _)
        .build()
        .expect("the default configuration is valid");
    let sessions = Arc::new(Sessions::default());
    let referral = Api::builder(service, Arc::clone(&sessions))
        .dev_outbox(sms)
        .build();
    AppState { sessions, referral }
}

/// The app: its own routes, and the referral routes under `/referral`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { "an existing app" }))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .nest("/referral", referral_axum::router())
        .fallback(referral_axum::middleware::not_found)
        .with_state(state)
}

/// The app's own route, for its session's user (the referral extractor
/// works here too).
async fn me(AuthUser(user): AuthUser) -> String {
    format!("signed in as {user}")
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    if let Some(sid) = sid(&headers) {
        state.sessions.close(sid);
    }
    (
        [(header::SET_COOKIE, "sid=; Max-Age=0; Path=/")],
        "signed out",
    )
}
