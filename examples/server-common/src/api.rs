//! [`Api`]: every route's work, framework-neutral. A server's handler pulls
//! the raw inputs (body, `Authorization` header, query string) out of its
//! framework's request, calls one method here, and writes the answer.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use referral_core::user::PageLimit;
use referral_core::{
    InviteCode, ReferralCursor, ReferralService, StubSmsSender, SystemClock, ThreadRandom, UserId,
};
use referral_core::{OtpKey, PhoneNumber};
use referral_memory::MemoryStore;

use crate::dto::{
    CodeRequest, CodeSentResponse, DevSms, Health, InviteRequest, LoginResponse, ProfileResponse,
    ReferralItem, ReferralsPage, VerifyRequest, timestamp,
};
use crate::error::ApiError;
use crate::settings::{JwtSecret, Settings, SettingsError, redact_url};
use crate::sms::SimulatedSms;
use crate::token::{TokenError, Tokens};

/// How long `GET /health` waits for the store before answering 503.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The service and everything around it a server needs. Cheap to clone.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    service: ReferralService,
    tokens: Tokens,
    outbox: Option<Arc<StubSmsSender>>,
    store: &'static str,
    openapi: String,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("service", &self.inner.service)
            .field("tokens", &self.inner.tokens)
            .field("store", &self.inner.store)
            .field("dev_outbox", &self.inner.outbox.is_some())
            .finish_non_exhaustive()
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A setting the service refuses.
    #[error("invalid settings")]
    Settings(#[from] SettingsError),
    /// The store could not be opened or migrated.
    #[error("the store could not be opened")]
    Store(#[source] referral_core::StoreError),
}

impl Api {
    /// Builds the service the settings describe: the in-memory store, or
    /// PostgreSQL (migrated) when `DATABASE_URL` is set; the simulated SMS
    /// sender; the token keys.
    ///
    /// # Errors
    /// [`StartError`] for bad settings or an unreachable database.
    pub async fn start(settings: &Settings) -> Result<Self, StartError> {
        let config = settings.config()?;
        let secret = match &settings.jwt_secret {
            Some(secret) => secret.clone(),
            None => {
                tracing::warn!(
                    "REFERRAL_JWT_SECRET is not set: using a random secret for this process; \
                     tokens will not survive a restart and processes cannot share a store"
                );
                JwtSecret::generate(&ThreadRandom)
            }
        };
        // Same secret, same key: every process sharing a store can verify
        // the codes the others sent.
        let key = OtpKey::derive(secret.as_bytes(), "otp")
            .map_err(|_| StartError::Settings(SettingsError::Secret))?;
        if settings.sms_delay_ms.max() >= settings.sms_timeout() {
            tracing::warn!(
                delay = %settings.sms_delay_ms,
                timeout_ms = settings.sms_timeout_ms,
                "the simulated SMS delay reaches the SMS timeout: some or all sends will fail"
            );
        }
        if settings.sms_timeout() >= settings.request_timeout() {
            tracing::warn!(
                "REFERRAL_SMS_TIMEOUT_MS is not below REFERRAL_REQUEST_TIMEOUT_SECS: \
                 a slow send answers 503 unavailable instead of sms_unavailable"
            );
        }
        let outbox = settings.dev_outbox.then(|| Arc::new(StubSmsSender::new()));
        let sms = Arc::new(SimulatedSms::new(
            settings.sms_delay_ms,
            settings.sms_timeout(),
            outbox.clone(),
        ));
        let database_url = settings
            .database_url
            .as_deref()
            .filter(|url| !url.trim().is_empty());
        let (builder, store) = match database_url {
            Some(url) => {
                tracing::info!(database = %redact_url(url), "using the PostgreSQL store");
                let store = connect_postgres(url, settings.db_max_connections).await?;
                (ReferralService::builder(store, sms), "postgres")
            }
            None => {
                tracing::info!("using the in-memory store (data is lost on exit)");
                (
                    ReferralService::builder(Arc::new(MemoryStore::new()), sms),
                    "memory",
                )
            }
        };
        let service = builder
            .otp_key(key)
            .config(config)
            .build()
            .map_err(SettingsError::from)?;
        let tokens = Tokens::new(&secret, settings.token_ttl(), Arc::new(SystemClock));
        Ok(Self {
            inner: Arc::new(Inner {
                service,
                tokens,
                outbox,
                store,
                openapi: crate::openapi::json(),
            }),
        })
    }

    /// The service underneath.
    #[must_use]
    pub fn service(&self) -> &ReferralService {
        &self.inner.service
    }

    /// Which store is in use: `memory` or `postgres`.
    #[must_use]
    pub fn store_kind(&self) -> &'static str {
        self.inner.store
    }

    /// `POST /api/auth/code` (202).
    ///
    /// # Errors
    /// The route's error answers.
    /// The send runs in its own task: a client that hangs up (or a request
    /// timeout) does not cut it off half-way, so a code that was issued is
    /// also sent (or revoked when the sender fails).
    pub async fn request_code(&self, body: CodeRequest) -> Result<CodeSentResponse, ApiError> {
        let phone = self.inner.service.parse_phone(&body.phone)?;
        let inner = Arc::clone(&self.inner);
        let sent = tokio::spawn(async move { inner.service.request_code(&phone).await })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "the code request task failed");
                ApiError::internal()
            })??;
        Ok(CodeSentResponse {
            phone: sent.phone.to_string(),
            expires_in: sent.expires_in.as_secs(),
            retry_after: sent.retry_after.as_secs(),
        })
    }

    /// `POST /api/auth/verify` (200).
    ///
    /// # Errors
    /// The route's error answers.
    pub async fn verify(&self, body: VerifyRequest) -> Result<LoginResponse, ApiError> {
        let service = &self.inner.service;
        let phone = service.parse_phone(&body.phone)?;
        let code = service.parse_code(&body.code)?;
        let login = service.verify_code(&phone, &code).await?;
        let profile = service.profile(login.user.id).await?;
        let access_token = self.inner.tokens.issue(login.user.id).map_err(|e| {
            tracing::error!(error = %e, "token signing failed");
            ApiError::internal()
        })?;
        Ok(LoginResponse {
            access_token,
            token_type: "Bearer".to_owned(),
            expires_in: self.inner.tokens.ttl().as_secs(),
            new_user: login.new_user,
            profile: ProfileResponse::from(&profile),
        })
    }

    /// The caller of an authenticated route, from its `Authorization` header.
    ///
    /// # Errors
    /// 401 `unauthorized` for a missing, malformed, expired or forged token.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<UserId, ApiError> {
        self.inner
            .tokens
            .authenticate(authorization)
            .map_err(|e: TokenError| ApiError::unauthorized(e.to_string()))
    }

    /// `GET /api/profile` (200).
    ///
    /// # Errors
    /// The route's error answers.
    pub async fn profile(&self, authorization: Option<&str>) -> Result<ProfileResponse, ApiError> {
        let user = self.authenticate(authorization)?;
        let profile = self.inner.service.profile(user).await?;
        Ok(ProfileResponse::from(&profile))
    }

    /// `POST /api/profile/invite` (200) for `user`, the caller the handler
    /// already got from [`Api::authenticate`]: the handler authenticates
    /// before it reads the body (so a caller without a token learns nothing
    /// about codes) and passes the id on, so the token is verified once per
    /// request, not twice.
    ///
    /// # Errors
    /// The route's error answers.
    pub async fn activate_invite(
        &self,
        user: UserId,
        body: InviteRequest,
    ) -> Result<ProfileResponse, ApiError> {
        let code = InviteCode::parse(&body.invite_code)?;
        let activation = self.inner.service.activate_invite(user, &code).await?;
        Ok(ProfileResponse::from(&activation.profile))
    }

    /// `GET /api/profile/referrals?limit=&cursor=` (200); `query` is the raw
    /// query string, if any.
    ///
    /// # Errors
    /// The route's error answers.
    pub async fn referrals(
        &self,
        authorization: Option<&str>,
        query: Option<&str>,
    ) -> Result<ReferralsPage, ApiError> {
        let user = self.authenticate(authorization)?;
        let query = crate::query::Query::parse(query.unwrap_or_default());
        let limit = match query.get("limit") {
            None => PageLimit::default(),
            Some(raw) => {
                let n: u64 = raw.trim().parse().map_err(|_| {
                    ApiError::new(
                        400,
                        "invalid_limit",
                        "limit must be a whole number from 1 to 500",
                    )
                })?;
                PageLimit::new(n)?
            }
        };
        let cursor = match query.get("cursor") {
            None => None,
            Some(raw) => Some(ReferralCursor::parse(raw)?),
        };
        let page = self.inner.service.referrals(user, cursor, limit).await?;
        Ok(ReferralsPage {
            items: page.items.iter().map(ReferralItem::from).collect(),
            next_cursor: page.next.map(|c| c.to_string()),
        })
    }

    /// `GET /api/dev/sms?phone=` (200). A `+` starting the value is kept as
    /// `+` (not read as a space), so `?phone=+79991234567` works as written
    /// (see [`crate::query::Query`]).
    ///
    /// # Errors
    /// 404 `not_found` when the outbox is off or nothing was sent;
    /// 400 `invalid_phone`.
    pub fn dev_sms(&self, query: Option<&str>) -> Result<DevSms, ApiError> {
        let outbox = self.inner.outbox.as_ref().ok_or_else(ApiError::not_found)?;
        let query = crate::query::Query::parse(query.unwrap_or_default());
        let raw = query.get("phone").unwrap_or_default();
        let phone: PhoneNumber = self.inner.service.parse_phone(raw)?;
        let sent = outbox
            .latest(&phone)
            .ok_or_else(|| ApiError::new(404, "not_found", "no code was sent to this phone"))?;
        Ok(DevSms {
            phone: sent.to.to_string(),
            code: sent.code.expose().to_owned(),
            sent_at: timestamp(sent.sent_at),
        })
    }

    /// `GET /health`: 200 `ok` when the store answers within
    /// [`HEALTH_TIMEOUT`], else 503 `unavailable`. Returns the status code
    /// and the body.
    pub async fn health(&self) -> (u16, Health) {
        let healthy = matches!(
            tokio::time::timeout(HEALTH_TIMEOUT, self.inner.service.health()).await,
            Ok(Ok(()))
        );
        if healthy {
            (
                200,
                Health {
                    status: "ok".to_owned(),
                },
            )
        } else {
            (
                503,
                Health {
                    status: "unavailable".to_owned(),
                },
            )
        }
    }

    /// `GET /api/openapi.json`: the document, serialised once.
    #[must_use]
    pub fn openapi_json(&self) -> &str {
        &self.inner.openapi
    }
}

async fn connect_postgres(
    url: &str,
    max_connections: u32,
) -> Result<Arc<referral_sqlx::PgStore>, StartError> {
    let options = referral_sqlx::PgStoreOptions::new(url)
        .map_err(StartError::Store)?
        .max_connections(max_connections);
    let store = referral_sqlx::PgStore::connect_with(options)
        .await
        .map_err(StartError::Store)?;
    store.migrate().await.map_err(StartError::Store)?;
    Ok(Arc::new(store))
}
