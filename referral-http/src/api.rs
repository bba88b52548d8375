//! [`Api`]: the service, the host's [`Authenticator`] and the HTTP options,
//! shared by every route. Built with [`Api::builder`], no command line
//! involved.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use referral_core::{ClientAddress, ReferralService, StubSmsSender, UserId};

use crate::admin::AdminPhones;
use crate::auth::{Authenticator, Headers};
use crate::client::TrustedProxies;
use crate::error::ApiError;
use crate::keys::{ApiKey, ApiKeys};
use crate::rules::Limits;

/// Everything the referral routes need: the [`ReferralService`], the host's
/// [`Authenticator`], the request [`Limits`], the optional development SMS
/// outbox, and the OpenAPI document serialised once. Cheap to clone (one
/// [`Arc`]).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use referral_core::{ReferralService, StubSmsSender, SystemClock};
/// use referral_http::{Api, JwtAuth, JwtSecret};
/// use referral_memory::MemoryStore;
///
/// let sms = Arc::new(StubSmsSender::new());
/// let service = ReferralService::builder(Arc::new(MemoryStore::new()), sms).build()?;
/// let secret: JwtSecret = "a secret of at least thirty-two bytes".parse()?;
/// let auth = JwtAuth::new(&secret, Duration::from_secs(3600), Arc::new(SystemClock));
/// let api = Api::builder(service, auth).max_body_bytes(8 * 1024).build();
/// assert_eq!(api.limits().max_body_bytes, 8192);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    service: Arc<ReferralService>,
    auth: Arc<dyn Authenticator>,
    outbox: Option<Arc<StubSmsSender>>,
    limits: Limits,
    health_timeout: Duration,
    api_keys: ApiKeys,
    trusted_proxies: TrustedProxies,
    admins: AdminPhones,
    openapi: String,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("service", &self.inner.service)
            .field("authenticator", &self.inner.auth)
            .field("dev_outbox", &self.inner.outbox.is_some())
            .field("limits", &self.inner.limits)
            .field("health_timeout", &self.inner.health_timeout)
            .field("api_keys", &self.inner.api_keys)
            .field("trusted_proxies", &self.inner.trusted_proxies)
            .field("admins", &self.inner.admins)
            .finish_non_exhaustive()
    }
}

/// Proof that a request carried one of the [`Api`]'s API keys: made only
/// by [`Api::authenticate_server`], required by the `/api/server/*`
/// handlers.
#[derive(Debug, Clone, Copy)]
pub struct ServerCaller(());

/// Builds an [`Api`]; from [`Api::builder`].
#[must_use]
pub struct ApiBuilder {
    service: Arc<ReferralService>,
    auth: Arc<dyn Authenticator>,
    outbox: Option<Arc<StubSmsSender>>,
    limits: Limits,
    health_timeout: Duration,
    api_keys: ApiKeys,
    trusted_proxies: TrustedProxies,
    admins: AdminPhones,
}

impl fmt::Debug for ApiBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiBuilder")
            .field("authenticator", &self.auth)
            .field("dev_outbox", &self.outbox.is_some())
            .field("limits", &self.limits)
            .field("health_timeout", &self.health_timeout)
            .field("api_keys", &self.api_keys)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("admins", &self.admins)
            .finish_non_exhaustive()
    }
}

impl ApiBuilder {
    /// Serves the messages kept by `outbox` at `GET /api/dev/sms` (for
    /// development and tests: it shows login codes to anyone who asks).
    /// Without it that route answers 404 `not_found`.
    pub fn dev_outbox(mut self, outbox: Arc<StubSmsSender>) -> Self {
        self.outbox = Some(outbox);
        self
    }

    /// The request size limits (default: [`Limits::default`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The largest request body, in bytes (default 16 KiB).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_body_bytes = bytes;
        self
    }

    /// How long `GET /health` waits for the store before answering 503
    /// (default [`Api::DEFAULT_HEALTH_TIMEOUT`]).
    pub fn health_timeout(mut self, timeout: Duration) -> Self {
        self.health_timeout = timeout;
        self
    }

    /// The keys the host's backend sends on the `/api/server/*` routes
    /// (default: none, and those routes answer 401).
    pub fn api_keys(mut self, keys: &[ApiKey]) -> Self {
        self.api_keys = ApiKeys::new(keys);
        self
    }

    /// The reverse proxies whose `X-Forwarded-For` names the client of a
    /// request (default: none, and the socket's peer is the client). See
    /// [`crate::client`].
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// The operators: users with these phones may call the `/api/admin/*`
    /// routes (default: nobody; see [`crate::admin`]).
    pub fn admin_phones(mut self, phones: AdminPhones) -> Self {
        self.admins = phones;
        self
    }

    /// The [`Api`].
    #[must_use]
    pub fn build(self) -> Api {
        let openapi = crate::openapi::json_for(self.service.config());
        Api {
            inner: Arc::new(Inner {
                service: self.service,
                auth: self.auth,
                outbox: self.outbox,
                limits: self.limits,
                health_timeout: self.health_timeout,
                api_keys: self.api_keys,
                trusted_proxies: self.trusted_proxies,
                admins: self.admins,
                openapi,
            }),
        }
    }
}

impl Api {
    /// How long `GET /health` waits for the store by default: 2 s.
    pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

    /// A builder over `service`, recognising users with `authenticator`
    /// ([`crate::JwtAuth`] for the provided bearer tokens, or the host's
    /// own).
    pub fn builder(
        service: impl Into<Arc<ReferralService>>,
        authenticator: impl Authenticator,
    ) -> ApiBuilder {
        ApiBuilder {
            service: service.into(),
            auth: Arc::new(authenticator),
            outbox: None,
            limits: Limits::default(),
            health_timeout: Self::DEFAULT_HEALTH_TIMEOUT,
            api_keys: ApiKeys::default(),
            trusted_proxies: TrustedProxies::default(),
            admins: AdminPhones::default(),
        }
    }

    /// The service underneath.
    #[must_use]
    pub fn service(&self) -> &Arc<ReferralService> {
        &self.inner.service
    }

    /// The host's authenticator.
    #[must_use]
    pub fn authenticator(&self) -> &Arc<dyn Authenticator> {
        &self.inner.auth
    }

    /// The development outbox, when `GET /api/dev/sms` serves one.
    #[must_use]
    pub fn dev_outbox(&self) -> Option<&Arc<StubSmsSender>> {
        self.inner.outbox.as_ref()
    }

    /// The request size limits.
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// How long `GET /health` waits for the store.
    #[must_use]
    pub fn health_timeout(&self) -> Duration {
        self.inner.health_timeout
    }

    /// The reverse proxies whose `X-Forwarded-For` is believed.
    #[must_use]
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.inner.trusted_proxies
    }

    /// The client of a request, for the per-client send limit of the code
    /// route: from the socket's `peer` and the request's `X-Forwarded-For`
    /// field values (every header line, in order), by the rule of
    /// [`crate::client`]. `None` when the host does not know the peer (e.g.
    /// axum served without `ConnectInfo`, or a Unix socket): the code route
    /// then applies no per-client limit and says so once in the logs.
    #[must_use]
    pub fn client_address<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded_for: impl IntoIterator<Item = &'a [u8]>,
    ) -> Option<ClientAddress> {
        let peer = peer?;
        Some(ClientAddress::from(
            self.inner.trusted_proxies.client_ip(peer, forwarded_for),
        ))
    }

    /// The operators' phones.
    #[must_use]
    pub fn admin_phones(&self) -> &AdminPhones {
        &self.inner.admins
    }

    /// The OpenAPI document, serialised once at build.
    #[must_use]
    pub fn openapi_json(&self) -> &str {
        &self.inner.openapi
    }

    /// The caller of an authenticated route, recognised by the host's
    /// [`Authenticator`] from the request's headers, and not blocked by an
    /// operator (one store read per request while operators are on; see
    /// [`referral_core::operator`]).
    ///
    /// # Errors
    /// 401 `unauthorized` for missing, malformed, expired or forged
    /// credentials; 403 `user_blocked` for a blocked user; 503 or 500 when
    /// the authenticator or the store fails.
    pub async fn authenticate(&self, headers: &dyn Headers) -> Result<UserId, ApiError> {
        let user = self.inner.auth.authenticate(headers).await?;
        if self.inner.service.block_of(user).await?.is_some() {
            return Err(crate::admin::user_blocked());
        }
        Ok(user)
    }

    /// Checks the API key of a `/api/server/*` request (constant time).
    ///
    /// # Errors
    /// 401 `unauthorized` for a missing or unknown key (a user's access
    /// token included).
    pub fn authenticate_server(&self, headers: &dyn Headers) -> Result<ServerCaller, ApiError> {
        self.inner.api_keys.check(headers)?;
        Ok(ServerCaller(()))
    }
}
