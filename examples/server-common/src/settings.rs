//! [`Settings`]: every setting of API.md as a command-line flag and an
//! environment variable, checked once and turned into a [`Config`].

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser};

use crate::provider::{SmsSettings, SmsSettingsError};
use referral_core::{BasisPoints, Config, Currency, OtpLength, Region};
use referral_http::{AdminPhones, ApiKey, JwtSecret, TrustedProxies};

/// The settings of an example server (API.md's table, plus the few a real
/// deployment needs: request and SMS timeouts).
///
/// Each field is a flag (`--listen`) and an environment variable
/// (`REFERRAL_LISTEN`); the flag wins. `Debug` hides the JWT secret and the
/// database URL's password.
#[derive(Clone, Parser)]
#[command(
    about = "Phone login with one-time SMS codes and a one-invite referral program, over HTTP",
    long_about = None,
    version
)]
#[non_exhaustive]
pub struct Settings {
    /// Address to bind; port 0 = any free port.
    #[arg(long, env = "REFERRAL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Unset: the in-memory store; `postgres://…`: the PostgreSQL store
    /// (migrations run at start).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// `1`: `DATABASE_URL` points at a transaction-mode pooler (PgBouncer):
    /// no named prepared statements, no startup options; the start-up
    /// migrations run over `REFERRAL_DB_MIGRATION_URL` when it is set, and not
    /// at all otherwise.
    #[arg(
        long,
        env = "REFERRAL_DB_TRANSACTION_POOLER",
        default_value = "0",
        value_parser = BoolishValueParser::new(),
        action = ArgAction::Set
    )]
    pub db_transaction_pooler: bool,

    /// A direct URL to the same database (not through a pooler) for the
    /// start-up migrations; unset: they run over `DATABASE_URL`, or not at
    /// all behind a transaction pooler.
    #[arg(long, env = "REFERRAL_DB_MIGRATION_URL", hide_env_values = true)]
    pub db_migration_url: Option<String>,

    /// Simulated SMS delay in milliseconds: `N` or `MIN-MAX`; `0` = none.
    #[arg(long, env = "REFERRAL_SMS_DELAY_MS", default_value = "1000-2000")]
    pub sms_delay_ms: SmsDelay,

    /// `1`: keep the simulated SMS outbox readable at `GET /api/dev/sms`;
    /// `0`: that route answers 404.
    #[arg(
        long,
        env = "REFERRAL_DEV_OUTBOX",
        default_value = "1",
        value_parser = BoolishValueParser::new(),
        action = ArgAction::Set
    )]
    pub dev_outbox: bool,

    /// HS256 secret for access tokens, at least 32 bytes; unset: a random one
    /// per process (with a warning). The login-code hashing key is derived
    /// from it, so every process sharing a store needs the same secret.
    #[arg(long, env = "REFERRAL_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<JwtSecret>,

    /// Access-token lifetime, in seconds.
    #[arg(long, env = "REFERRAL_TOKEN_TTL_SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(1..=10 * 365 * 86_400))]
    pub token_ttl_secs: u64,

    /// Digits in a login code (4 to 8).
    #[arg(long, env = "REFERRAL_OTP_LENGTH", default_value_t = 4,
          value_parser = clap::value_parser!(u8).range(4..=8))]
    pub otp_length: u8,

    /// A login code's lifetime, in seconds.
    #[arg(long, env = "REFERRAL_OTP_TTL_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub otp_ttl_secs: u64,

    /// Wrong guesses that burn one code.
    #[arg(long, env = "REFERRAL_OTP_MAX_ATTEMPTS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub otp_max_attempts: u32,

    /// Least time between two codes sent to one phone, in seconds (0 = none).
    #[arg(long, env = "REFERRAL_OTP_RESEND_COOLDOWN_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub otp_resend_cooldown_secs: u64,

    /// Codes sent to one phone in any rolling hour.
    #[arg(long, env = "REFERRAL_OTP_MAX_SENDS_PER_HOUR", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub otp_max_sends_per_hour: u32,

    /// Wrong guesses for one phone in any rolling 24 h, across codes; past it
    /// the phone is stepped up, not locked: its live code is burned and every
    /// code sent until the window frees is longer (8 digits).
    #[arg(long, env = "REFERRAL_OTP_MAX_FAILURES_PER_DAY", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub otp_max_failures_per_day: u32,

    /// Digits of the codes sent to a phone that has spent its daily failure
    /// budget (4 to 8, at least `REFERRAL_OTP_LENGTH`).
    #[arg(long, env = "REFERRAL_OTP_STEP_UP_LENGTH", default_value_t = 8,
          value_parser = clap::value_parser!(u8).range(4..=8))]
    pub otp_step_up_length: u8,

    /// Codes requested from one client address (an IPv4 address or an IPv6
    /// /64) in any rolling hour, whatever the phones; 0 = no limit.
    #[arg(long, env = "REFERRAL_IP_MAX_SENDS_PER_HOUR", default_value_t = 30)]
    pub ip_max_sends_per_hour: u32,

    /// Comma-separated IP addresses and CIDR networks of the reverse proxies
    /// whose `X-Forwarded-For` names the client (read right to left, trusted
    /// hops skipped); unset: the socket's peer is the client, whatever the
    /// headers say.
    #[arg(long, env = "REFERRAL_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<TrustedProxies>,

    /// Activations of unknown invite codes by one user in any rolling hour.
    #[arg(long, env = "REFERRAL_INVITE_MAX_FAILURES_PER_HOUR", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub invite_max_failures_per_hour: u32,

    /// Codes sent to ALL phones together in any rolling hour: a cost circuit
    /// breaker against SMS pumping (beyond API.md). Once spent, the code
    /// route answers 503 `sms_unavailable` with `Retry-After`. Unset: no
    /// global budget.
    #[arg(long, env = "REFERRAL_SMS_MAX_SENDS_PER_HOUR",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub sms_max_sends_per_hour: Option<u32>,

    /// Country calling codes that may be sent a code, comma-separated (e.g.
    /// `7,44`; beyond API.md). Other countries' phones answer 400
    /// `invalid_phone`. Unset: every country.
    #[arg(long, env = "REFERRAL_ALLOWED_COUNTRY_CODES", value_delimiter = ',',
          value_parser = clap::value_parser!(u16).range(1..=999))]
    pub allowed_country_codes: Option<Vec<u16>>,

    /// ISO region (e.g. `RU`) for numbers written without `+`; unset: only
    /// international numbers.
    #[arg(long, env = "REFERRAL_DEFAULT_REGION")]
    pub default_region: Option<Region>,

    /// Longest time one request may take before it is answered 503
    /// `unavailable`, in seconds (beyond API.md). Keep it above the longest
    /// SMS delay plus the SMS timeout.
    #[arg(long, env = "REFERRAL_REQUEST_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout_secs: u64,

    /// Most PostgreSQL connections this process opens (beyond API.md; mind
    /// the server's `max_connections` when running several processes).
    #[arg(long, env = "REFERRAL_DB_MAX_CONNECTIONS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,

    /// Longest time the SMS sender may take (simulated delay included) before
    /// the code request answers 503 `sms_unavailable`, in milliseconds
    /// (beyond API.md).
    #[arg(long, env = "REFERRAL_SMS_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub sms_timeout_ms: u64,

    /// Longest time a client may take to send a request's headers (from
    /// the connection's start, or the end of the previous answer) before the
    /// connection is closed, in seconds (beyond API.md): stalled and idle
    /// clients cannot hold connections forever.
    #[arg(long, env = "REFERRAL_HEADER_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout_secs: u64,

    /// Most client connections served at once (beyond API.md); past it the
    /// server stops accepting until one closes, so a flood of connections
    /// cannot exhaust its file descriptors. Keep it below the process's
    /// descriptor limit (`ulimit -n`) minus the database connections.
    /// (`referral-server-actix` gives each of its workers, one per core, an
    /// equal share rounded up: its bound is this rounded up to a multiple of
    /// the cores.)
    #[arg(long, env = "REFERRAL_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// The SMS provider and its settings, and the test phones.
    #[command(flatten)]
    pub sms: SmsSettings,
    /// Comma-separated keys (each at least 32 bytes) that the host's
    /// backend sends as `Authorization: Bearer <key>` on `/api/server/*`;
    /// unset: those routes answer 401.
    #[arg(
        long,
        env = "REFERRAL_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<ApiKey>,

    /// Comma-separated phones (any spelling the login accepts) whose users
    /// are operators: their access tokens also open `/api/admin/*`; unset:
    /// nobody is (those routes answer 403 to every user).
    #[arg(long, env = "REFERRAL_ADMIN_PHONES", value_delimiter = ',')]
    pub admin_phones: Vec<String>,

    /// Minor units paid to the referrer on a referee's first qualifying
    /// conversion.
    #[arg(long, env = "REFERRAL_REWARD_REFERRER_FIXED", default_value_t = 0,
          value_parser = clap::value_parser!(i64).range(0..=1_000_000_000_000_000))]
    pub reward_referrer_fixed: i64,

    /// Basis points (1 % = 100) of each qualifying conversion's amount paid
    /// to the referrer, rounded down to the minor unit.
    #[arg(long, env = "REFERRAL_REWARD_REFERRER_BP", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub reward_referrer_bp: u32,

    /// Conversions later than this many days after the referee's
    /// activation earn nothing.
    #[arg(long, env = "REFERRAL_REWARD_WINDOW_DAYS", default_value_t = 365,
          value_parser = clap::value_parser!(u64).range(1..=36_500))]
    pub reward_window_days: u64,

    /// Conversions below this amount (minor units) earn nothing.
    #[arg(long, env = "REFERRAL_REWARD_MIN_AMOUNT", default_value_t = 0,
          value_parser = clap::value_parser!(i64).range(0..=1_000_000_000_000_000))]
    pub reward_min_amount: i64,

    /// Minor units given to the referee when they activate a code (a
    /// `welcome` reward, approved at once).
    #[arg(long, env = "REFERRAL_REWARD_WELCOME_FIXED", default_value_t = 0,
          value_parser = clap::value_parser!(i64).range(0..=1_000_000_000_000_000))]
    pub reward_welcome_fixed: i64,

    /// ISO 4217 currency of the fixed and welcome amounts; conversions in
    /// another currency earn only the percentage part.
    #[arg(long, env = "REFERRAL_REWARD_CURRENCY", default_value = "RUB")]
    pub reward_currency: Currency,

    /// Most a referrer can earn per currency in any rolling cap window
    /// (minor units); unset: no cap.
    #[arg(long, env = "REFERRAL_REWARD_MAX_PER_REFERRER",
          value_parser = clap::value_parser!(i64).range(0..=1_000_000_000_000_000))]
    pub reward_max_per_referrer: Option<i64>,

    /// The cap's rolling window, in days.
    #[arg(long, env = "REFERRAL_REWARD_CAP_WINDOW_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=36_500))]
    pub reward_cap_window_days: u64,

    /// How long a reward stays `pending` (the refund window) before it is
    /// `approved`, in seconds.
    #[arg(long, env = "REFERRAL_REWARD_HOLD_SECS", default_value_t = 2_592_000,
          value_parser = clap::value_parser!(u64).range(0..=3_153_600_000))]
    pub reward_hold_secs: u64,

    /// How often the server approves rewards whose hold has ended, in
    /// seconds (safe with many processes).
    #[arg(long, env = "REFERRAL_REWARD_APPROVE_EVERY_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub reward_approve_every_secs: u64,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("db_transaction_pooler", &self.db_transaction_pooler)
            .field(
                "db_migration_url",
                &self.db_migration_url.as_deref().map(redact_url),
            )
            .field("sms_delay_ms", &self.sms_delay_ms)
            .field("dev_outbox", &self.dev_outbox)
            .field("jwt_secret", &self.jwt_secret)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("otp_length", &self.otp_length)
            .field("otp_ttl_secs", &self.otp_ttl_secs)
            .field("otp_max_attempts", &self.otp_max_attempts)
            .field("otp_resend_cooldown_secs", &self.otp_resend_cooldown_secs)
            .field("otp_max_sends_per_hour", &self.otp_max_sends_per_hour)
            .field("otp_max_failures_per_day", &self.otp_max_failures_per_day)
            .field("otp_step_up_length", &self.otp_step_up_length)
            .field("ip_max_sends_per_hour", &self.ip_max_sends_per_hour)
            .field("trusted_proxies", &self.trusted_proxies)
            .field(
                "invite_max_failures_per_hour",
                &self.invite_max_failures_per_hour,
            )
            .field("default_region", &self.default_region)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("db_max_connections", &self.db_max_connections)
            .field("sms_timeout_ms", &self.sms_timeout_ms)
            .field("header_timeout_secs", &self.header_timeout_secs)
            .field("max_connections", &self.max_connections)
            .field("sms", &self.sms)
            .field("api_keys", &self.api_keys.len())
            .field("admin_phones", &self.admin_phones.len())
            .field("reward_referrer_fixed", &self.reward_referrer_fixed)
            .field("reward_referrer_bp", &self.reward_referrer_bp)
            .field("reward_window_days", &self.reward_window_days)
            .field("reward_min_amount", &self.reward_min_amount)
            .field("reward_welcome_fixed", &self.reward_welcome_fixed)
            .field("reward_currency", &self.reward_currency)
            .field("reward_max_per_referrer", &self.reward_max_per_referrer)
            .field("reward_cap_window_days", &self.reward_cap_window_days)
            .field("reward_hold_secs", &self.reward_hold_secs)
            .field("reward_approve_every_secs", &self.reward_approve_every_secs)
            .finish()
    }
}

/// A database URL with its password replaced by `***`, for logs.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// A settings value the service cannot run with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The core refused the configuration.
    #[error(transparent)]
    Config(#[from] referral_core::ConfigError),
    /// The login-code length is out of range.
    #[error(transparent)]
    OtpLength(#[from] referral_core::otp::OtpLengthError),
    /// The basis points are out of range.
    #[error(transparent)]
    BasisPoints(#[from] referral_core::BasisPointsError),
    /// The step-up length is shorter than the login-code length.
    #[error(
        "REFERRAL_OTP_STEP_UP_LENGTH ({step_up}) must be at least REFERRAL_OTP_LENGTH ({length})"
    )]
    StepUpShorter {
        /// `REFERRAL_OTP_STEP_UP_LENGTH`.
        step_up: u8,
        /// `REFERRAL_OTP_LENGTH`.
        length: u8,
    },
    /// The JWT secret is too short to derive the code-hashing key from.
    #[error("the JWT secret must have at least 32 bytes")]
    Secret,
    /// The SMS provider cannot be set up (the message names the setting).
    #[error(transparent)]
    Sms(#[from] SmsSettingsError),
    /// A phone of `REFERRAL_ADMIN_PHONES` is not a phone.
    #[error("REFERRAL_ADMIN_PHONES: {phone:?} is not a phone: {error}")]
    AdminPhone {
        /// The entry as given.
        phone: String,
        /// Why it is not a phone.
        #[source]
        error: referral_core::PhoneError,
    },
}

impl Settings {
    /// The settings from the process's arguments and environment; prints help
    /// or an error and exits on bad input (clap's behaviour).
    #[must_use]
    pub fn from_env_and_args() -> Self {
        <Self as Parser>::parse()
    }

    /// Like [`Settings::from_env_and_args`], with the binary's own name and
    /// version in `--help` and `--version`.
    #[must_use]
    pub fn parse_as(name: &'static str, version: &'static str) -> Self {
        use clap::{CommandFactory, FromArgMatches};
        let matches = <Self as CommandFactory>::command()
            .name(name)
            .bin_name(name)
            .version(version)
            .get_matches();
        <Self as FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    /// The settings from `(variable, value)` pairs as the environment would
    /// give them (`("REFERRAL_OTP_LENGTH", "6")`; a later pair replaces an
    /// earlier one of the same variable), the process's own environment
    /// ignored: for in-process tests, where many servers with
    /// different settings share one process.
    ///
    /// # Errors
    /// clap's error for an unknown variable or a bad value.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Result<Self, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        let command = <Self as CommandFactory>::command();
        let mut args = vec!["server".to_owned()];
        // As in an environment, a later pair replaces an earlier one.
        let mut last: Vec<(&str, &str)> = Vec::new();
        for &(name, value) in pairs {
            last.retain(|(n, _)| *n != name);
            last.push((name, value));
        }
        for (name, value) in &last {
            let flag = command
                .get_arguments()
                .find(|a| a.get_env().is_some_and(|e| e == *name))
                .and_then(clap::Arg::get_long)
                .ok_or_else(|| {
                    clap::Error::raw(
                        clap::error::ErrorKind::UnknownArgument,
                        format!("no setting reads {name}"),
                    )
                })?;
            args.push(format!("--{flag}={value}"));
        }
        let matches = command
            .mut_args(|a| a.env(None::<&str>))
            .try_get_matches_from(args)?;
        <Self as FromArgMatches>::from_arg_matches(&matches)
    }

    /// The operators of `REFERRAL_ADMIN_PHONES`, read with the default
    /// region.
    ///
    /// # Errors
    /// [`SettingsError::AdminPhone`] for an entry that is not a phone.
    pub fn admin_phones(&self) -> Result<AdminPhones, SettingsError> {
        AdminPhones::parse(
            self.admin_phones.iter().map(String::as_str),
            self.default_region,
        )
        .map_err(|(phone, error)| SettingsError::AdminPhone { phone, error })
    }

    /// The core configuration these settings describe.
    ///
    /// # Errors
    /// [`SettingsError`] for values the core refuses.
    pub fn config(&self) -> Result<Config, SettingsError> {
        let mut config = Config::default();
        let otp = &mut config.otp;
        otp.length = OtpLength::new(self.otp_length)?;
        if self.otp_step_up_length < self.otp_length {
            return Err(SettingsError::StepUpShorter {
                step_up: self.otp_step_up_length,
                length: self.otp_length,
            });
        }
        otp.step_up_length = OtpLength::new(self.otp_step_up_length)?;
        otp.max_sends_per_client_per_window = Some(self.ip_max_sends_per_hour).filter(|&n| n > 0);
        otp.ttl = Duration::from_secs(self.otp_ttl_secs);
        otp.max_attempts = self.otp_max_attempts;
        otp.resend_cooldown = Duration::from_secs(self.otp_resend_cooldown_secs);
        otp.max_sends_per_window = self.otp_max_sends_per_hour;
        otp.send_window = Duration::from_secs(3600);
        otp.max_failures_per_window = self.otp_max_failures_per_day;
        otp.failure_window = Duration::from_secs(24 * 3600);
        otp.max_global_sends_per_window = self.sms_max_sends_per_hour;
        otp.allowed_country_codes
            .clone_from(&self.allowed_country_codes);
        config.invite.max_failures_per_window = self.invite_max_failures_per_hour;
        config.invite.failure_window = Duration::from_secs(3600);
        config.default_region = self.default_region;
        config.test_phones = self.sms.test_phones();
        let day = 24 * 3600;
        let rewards = &mut config.rewards;
        rewards.referrer_fixed = self.reward_referrer_fixed;
        rewards.referrer_bp = BasisPoints::new(self.reward_referrer_bp)?;
        rewards.window = Duration::from_secs(self.reward_window_days * day);
        rewards.min_amount = self.reward_min_amount;
        rewards.welcome = self.reward_welcome_fixed;
        rewards.currency = self.reward_currency;
        rewards.max_per_referrer = self.reward_max_per_referrer;
        rewards.cap_window = Duration::from_secs(self.reward_cap_window_days * day);
        rewards.hold = Duration::from_secs(self.reward_hold_secs);
        Ok(config)
    }

    /// The request timeout.
    #[must_use]
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// The header read timeout.
    #[must_use]
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs)
    }

    /// The SMS sender timeout.
    #[must_use]
    pub fn sms_timeout(&self) -> Duration {
        Duration::from_millis(self.sms_timeout_ms)
    }

    /// How often the approval task runs.
    #[must_use]
    pub fn reward_approve_every(&self) -> Duration {
        Duration::from_secs(self.reward_approve_every_secs)
    }

    /// The access-token lifetime.
    #[must_use]
    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_secs)
    }
}

/// The simulated SMS delay: a fixed number of milliseconds or a `MIN-MAX`
/// range drawn uniformly for each message; `0` is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmsDelay {
    min_ms: u64,
    max_ms: u64,
}

/// Why a string is not an [`SmsDelay`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected milliseconds as N or MIN-MAX with MIN <= MAX <= 600000, e.g. 1000-2000")]
pub struct SmsDelayError;

impl SmsDelay {
    /// The longest accepted delay: ten minutes.
    pub const MAX_MS: u64 = 600_000;

    /// No delay.
    pub const NONE: Self = Self {
        min_ms: 0,
        max_ms: 0,
    };

    /// A delay drawn from `min_ms..=max_ms`.
    ///
    /// # Errors
    /// [`SmsDelayError`] when `min_ms > max_ms` or `max_ms` is over ten minutes.
    pub fn new(min_ms: u64, max_ms: u64) -> Result<Self, SmsDelayError> {
        if min_ms > max_ms || max_ms > Self::MAX_MS {
            return Err(SmsDelayError);
        }
        Ok(Self { min_ms, max_ms })
    }

    /// The shortest delay.
    #[must_use]
    pub fn min(self) -> Duration {
        Duration::from_millis(self.min_ms)
    }

    /// The longest delay.
    #[must_use]
    pub fn max(self) -> Duration {
        Duration::from_millis(self.max_ms)
    }

    /// One delay, drawn uniformly from the range with `random`.
    #[must_use]
    pub fn pick(self, random: &dyn referral_core::Random) -> Duration {
        let span = self.max_ms - self.min_ms;
        let extra = match u32::try_from(span) {
            Ok(0) | Err(_) => 0,
            Ok(span) => u64::from(random.below(span.saturating_add(1))),
        };
        Duration::from_millis(self.min_ms + extra)
    }
}

impl FromStr for SmsDelay {
    type Err = SmsDelayError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let number = |t: &str| -> Result<u64, SmsDelayError> {
            let t = t.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(SmsDelayError);
            }
            t.parse().map_err(|_| SmsDelayError)
        };
        match s.split_once('-') {
            Some((a, b)) => Self::new(number(a)?, number(b)?),
            None => {
                let n = number(s)?;
                Self::new(n, n)
            }
        }
    }
}

impl fmt::Display for SmsDelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min_ms == self.max_ms {
            write!(f, "{}", self.min_ms)
        } else {
            write!(f, "{}-{}", self.min_ms, self.max_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use referral_core::SeededRandom;

    fn parse(args: &[&str]) -> Result<Settings, clap::Error> {
        Settings::try_parse_from(std::iter::once("server").chain(args.iter().copied()))
    }

    #[test]
    fn sms_delays() {
        assert_eq!("0".parse::<SmsDelay>(), Ok(SmsDelay::NONE));
        assert_eq!("1000-2000".parse::<SmsDelay>(), SmsDelay::new(1000, 2000));
        assert_eq!("250".parse::<SmsDelay>().unwrap().to_string(), "250");
        for bad in ["", "-", "2-1", "a", "1-", "-1", "1-2-3", "+5", "700000"] {
            assert!(bad.parse::<SmsDelay>().is_err(), "{bad}");
        }
        let d = SmsDelay::new(10, 20).unwrap();
        let rng = SeededRandom::new(1);
        for _ in 0..100 {
            let p = d.pick(&rng);
            assert!(p >= d.min() && p <= d.max());
        }
        assert_eq!(SmsDelay::NONE.pick(&rng), Duration::ZERO);
    }

    #[test]
    fn defaults_are_the_contract() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.sms_delay_ms, SmsDelay::new(1000, 2000).unwrap());
        assert!(s.dev_outbox);
        assert_eq!(s.config().unwrap(), Config::default());
        assert_eq!(s.token_ttl(), Duration::from_secs(86_400));
    }

    #[test]
    fn flags_are_checked() {
        assert!(parse(&["--dev-outbox", "0"]).is_ok_and(|s| !s.dev_outbox));
        assert!(parse(&["--otp-length", "3"]).is_err());
        assert!(parse(&["--otp-length", "9"]).is_err());
        assert!(parse(&["--otp-max-attempts", "0"]).is_err());
        assert!(parse(&["--jwt-secret", "short"]).is_err());
        assert!(parse(&["--default-region", "XX"]).is_err());
        assert!(parse(&["--api-keys", "short"]).is_err());
        assert!(parse(&["--reward-currency", "rub"]).is_err());
        assert!(parse(&["--reward-referrer-bp", "10001"]).is_err());
        assert!(parse(&["--reward-approve-every-secs", "0"]).is_err());
        assert!(parse(&["--otp-step-up-length", "3"]).is_err());
        assert!(parse(&["--otp-step-up-length", "9"]).is_err());
        assert!(parse(&["--ip-max-sends-per-hour", "-1"]).is_err());
        assert!(parse(&["--trusted-proxies", "10.0.0.0/33"]).is_err());
        assert!(parse(&["--trusted-proxies", "proxy.internal"]).is_err());
        let s = parse(&[
            "--api-keys",
            "0123456789abcdef0123456789abcdef,fedcba9876543210fedcba9876543210",
            "--reward-referrer-bp",
            "500",
            "--reward-max-per-referrer",
            "20000",
        ])
        .unwrap();
        assert_eq!(s.api_keys.len(), 2);
        let rewards = s.config().unwrap().rewards;
        assert_eq!(rewards.referrer_bp.get(), 500);
        assert_eq!(rewards.max_per_referrer, Some(20_000));
        let s = parse(&["--default-region", "ru", "--otp-length", "6"]).unwrap();
        let config = s.config().unwrap();
        assert_eq!(config.otp.length.get(), 6);
        assert_eq!(config.default_region.map(Region::code), Some("RU"));
    }

    #[test]
    fn login_abuse_settings() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.otp_step_up_length, 8);
        assert_eq!(s.ip_max_sends_per_hour, 30);
        assert_eq!(s.trusted_proxies, None);
        let otp = s.config().unwrap().otp;
        assert_eq!(otp.step_up_length.get(), 8);
        assert_eq!(otp.max_sends_per_client_per_window, Some(30));

        let s = parse(&[
            "--otp-length",
            "6",
            "--otp-step-up-length",
            "7",
            "--ip-max-sends-per-hour",
            "0",
            "--trusted-proxies",
            "10.0.0.0/8, 2001:db8::/32,192.0.2.1",
        ])
        .unwrap();
        let otp = s.config().unwrap().otp;
        assert_eq!((otp.length.get(), otp.step_up_length.get()), (6, 7));
        assert_eq!(otp.max_sends_per_client_per_window, None, "0 = no limit");
        let proxies = s.trusted_proxies.unwrap();
        assert_eq!(proxies.to_string(), "10.0.0.0/8,2001:db8::/32,192.0.2.1/32");

        // A step-up shorter than the code: refused, naming both settings.
        let s = parse(&["--otp-length", "6", "--otp-step-up-length", "5"]).unwrap();
        let e = s.config().unwrap_err().to_string();
        assert!(
            e.contains("REFERRAL_OTP_STEP_UP_LENGTH") && e.contains("REFERRAL_OTP_LENGTH"),
            "{e}"
        );
        // A bad proxy list: clap's error names the setting and the entry.
        let e = Settings::from_pairs(&[("REFERRAL_TRUSTED_PROXIES", "10.0.0.1,10.0.0.0/99")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("trusted-proxies") && e.contains("10.0.0.0/99"),
            "{e}"
        );
    }

    #[test]
    fn from_pairs_ignores_the_environment() {
        let s = Settings::from_pairs(&[
            ("REFERRAL_OTP_LENGTH", "6"),
            ("DATABASE_URL", "postgres://x@y/z"),
        ])
        .unwrap();
        assert_eq!(s.otp_length, 6);
        assert_eq!(s.database_url.as_deref(), Some("postgres://x@y/z"));
        assert_eq!(Settings::from_pairs(&[]).unwrap().database_url, None);
        assert!(Settings::from_pairs(&[("REFERRAL_NOPE", "1")]).is_err());
        let s = Settings::from_pairs(&[("REFERRAL_OTP_LENGTH", "6"), ("REFERRAL_OTP_LENGTH", "5")]);
        assert_eq!(s.unwrap().otp_length, 5);
        assert!(Settings::from_pairs(&[("REFERRAL_OTP_LENGTH", "3")]).is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let s = parse(&[
            "--jwt-secret",
            "0123456789abcdef0123456789abcdef-secret",
            "--database-url",
            "postgres://app:hunter2@db:5432/referral",
        ])
        .unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("abcdef-secret"), "{shown}");
        assert!(
            shown.contains("postgres://app:***@db:5432/referral"),
            "{shown}"
        );
    }
}
