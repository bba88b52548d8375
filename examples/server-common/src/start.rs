//! [`start`]: the example servers' wiring, from [`Settings`] to an [`Api`].

use std::sync::Arc;

use referral_core::{OtpKey, ReferralService, SystemClock, ThreadRandom};
use referral_http::{Api, JwtAuth, JwtSecret};
use referral_memory::MemoryStore;

use crate::approver::Approver;
use crate::settings::{Settings, SettingsError, redact_url};

/// A started [`Api`] and which store it uses.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Started {
    /// The routes' state.
    pub api: Api,
    /// `memory` or `postgres`.
    pub store: &'static str,
    /// The periodic approval of rewards whose hold has ended, for the
    /// server to spawn (and stop at shutdown).
    pub approver: Approver,
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

/// Builds the service the settings describe: the in-memory store, or
/// PostgreSQL (migrated) when `DATABASE_URL` is set; the SMS sender of
/// `REFERRAL_SMS_PROVIDER` ([`crate::provider::sms_sender`]: the simulated
/// one with its dev outbox when that is on, or a real provider); the JWT
/// authenticator; the API keys; the operators of `REFERRAL_ADMIN_PHONES`
/// (the store is also the service's operator store).
///
/// # Errors
/// [`StartError`] for bad settings or an unreachable database.
pub async fn start(settings: &Settings) -> Result<Started, StartError> {
    let config = settings.config()?;
    let admins = settings.admin_phones()?;
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
    if settings.sms_timeout() >= settings.request_timeout() {
        tracing::warn!(
            "REFERRAL_SMS_TIMEOUT_MS is not below REFERRAL_REQUEST_TIMEOUT_SECS: \
             a slow send answers 503 unavailable instead of sms_unavailable"
        );
    }
    let (sms, outbox) = crate::provider::sms_sender(settings)?;
    let database_url = settings
        .database_url
        .as_deref()
        .filter(|url| !url.trim().is_empty());
    let (builder, store) = match database_url {
        Some(url) => {
            tracing::info!(database = %redact_url(url), "using the PostgreSQL store");
            let migration_url = settings
                .db_migration_url
                .as_deref()
                .filter(|url| !url.trim().is_empty());
            let store = connect_postgres(
                url,
                settings.db_max_connections,
                settings.db_transaction_pooler,
                migration_url,
            )
            .await?;
            (
                ReferralService::builder(Arc::clone(&store), sms)
                    .rewards(Arc::clone(&store) as _)
                    .operators(store),
                "postgres",
            )
        }
        None => {
            tracing::info!("using the in-memory store (data is lost on exit)");
            let store = Arc::new(MemoryStore::new());
            (
                ReferralService::builder(Arc::clone(&store), sms)
                    .rewards(Arc::clone(&store) as _)
                    .operators(store),
                "memory",
            )
        }
    };
    let service = builder
        .otp_key(key)
        .config(config)
        .build()
        .map_err(SettingsError::from)?;
    let auth = JwtAuth::new(&secret, settings.token_ttl(), Arc::new(SystemClock));
    let service = Arc::new(service);
    let approver = Approver::new(Arc::clone(&service), settings.reward_approve_every());
    if !admins.is_empty() {
        tracing::info!(
            operators = admins.len(),
            "REFERRAL_ADMIN_PHONES: operators may use /api/admin/*"
        );
    }
    let mut api = Api::builder(service, auth)
        .api_keys(&settings.api_keys)
        .admin_phones(admins);
    if let Some(proxies) = &settings.trusted_proxies {
        tracing::info!(%proxies, "trusting X-Forwarded-For from these proxies");
        api = api.trusted_proxies(proxies.clone());
    }
    if let Some(outbox) = outbox {
        api = api.dev_outbox(outbox);
    }
    Ok(Started {
        api: api.build(),
        store,
        approver,
    })
}

/// The PostgreSQL store, migrated at start over `migration_url` when given,
/// else over `url` unless `url` is a transaction pooler (then not at all).
async fn connect_postgres(
    url: &str,
    max_connections: u32,
    transaction_pooler: bool,
    migration_url: Option<&str>,
) -> Result<Arc<referral_sqlx::PgStore>, StartError> {
    let mut options = referral_sqlx::PgStoreOptions::new(url)
        .map_err(StartError::Store)?
        .max_connections(max_connections)
        .transaction_pooler(transaction_pooler);
    if let Some(direct) = migration_url {
        options = options.migration_url(direct).map_err(StartError::Store)?;
    }
    let store = referral_sqlx::PgStore::connect_with(options)
        .await
        .map_err(StartError::Store)?;
    if migration_url.is_some() || !transaction_pooler {
        store.migrate().await.map_err(StartError::Store)?;
    } else {
        tracing::info!(
            "behind a transaction pooler without REFERRAL_DB_MIGRATION_URL: migrations not run"
        );
    }
    Ok(Arc::new(store))
}
