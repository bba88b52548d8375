//! Mapping sqlx errors to [`StoreError`].

use referral_core::StoreError;

/// Maps a sqlx error, keeping it as the source.
///
/// [`StoreError::Unavailable`]: the database cannot be reached or serve now
/// (refused or lost connection, pool timeout or closed, TLS failure, bytes
/// that are not PostgreSQL's protocol (a connection cut mid-message, a
/// proxy or load balancer with no server behind it), the server shutting
/// down or starting up, too many connections, a statement timeout, a
/// read-only server after a failover, its database missing, a serialization
/// failure or deadlock (a standby cancelling a read, a lock cycle broken),
/// a pooler's own errors: PgBouncer answers `08P01` for its refusals and
/// timeouts, and closes connections it drops). Anything else,
/// a bug or a schema that does not match, is [`StoreError::Internal`].
pub(crate) fn map(error: sqlx::Error) -> StoreError {
    if is_unavailable(&error) {
        StoreError::unavailable(error)
    } else {
        StoreError::internal(error)
    }
}

fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        // sqlx reports a connection closed during the handshake as one, e.g.
        // "unexpected response from SSLRequest: 0x00".
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| unavailable_sqlstate(&code)),
        _ => false,
    }
}

/// Whether a call that failed with `error` may be sent again as it is:
/// PostgreSQL answered a serialization failure (`40001`: a standby
/// cancelling a read that conflicts with recovery) or a deadlock (`40P01`:
/// it aborted this transaction to break a lock cycle). Both come after the
/// transaction was rolled back, so nothing of the call was written. Lost
/// connections are not retried: a commit may have happened before the loss.
pub(crate) fn is_retryable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code == "40001" || code == "40P01"),
        _ => false,
    }
}

/// SQLSTATEs that say "not now" rather than "wrong".
fn unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources (too many connections, disk full)
        || code.starts_with("57P") // admin/crash shutdown, cannot connect now, database dropped
        || code == "57014" // query canceled: statement_timeout
        || code == "25006" // read-only transaction: a standby after failover
        // serialization failure, deadlock: a standby cancelling a read that
        // conflicts with recovery, or a transaction PostgreSQL aborted to
        // break a lock cycle; nothing was written, the call may be retried.
        || code == "40001"
        || code == "40P01"
        || code == "55P03" // lock not available: lock_timeout
        || code == "25P03" // idle in transaction session timeout
        // invalid SQL statement name: a prepared statement gone because a
        // pooler moved the session to another server connection (a store
        // behind a transaction pooler without `transaction_pooler(true)`).
        || code == "26000"
        // invalid catalog name: the database is gone (dropped, being restored)
        // while the server runs; at start the migrations still fail loudly.
        || code == "3D000"
}

/// Maps a migration error.
pub(crate) fn map_migrate(error: sqlx::migrate::MigrateError) -> StoreError {
    match error {
        sqlx::migrate::MigrateError::Execute(e) => map(e),
        other => StoreError::internal(other),
    }
}

/// An error for data the database returned but this crate cannot decode.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::internal(format!("unexpected data from the database: {what}"))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::borrow::Cow;
    use std::error::Error as StdError;

    use super::*;

    /// A server error with this SQLSTATE, as sqlx reports one.
    #[derive(Debug)]
    struct Sqlstate(&'static str);

    impl std::fmt::Display for Sqlstate {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl StdError for Sqlstate {}

    impl sqlx::error::DatabaseError for Sqlstate {
        fn message(&self) -> &str {
            "test"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn StdError + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn StdError + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    pub(crate) fn sqlstate(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(Sqlstate(code)))
    }

    #[test]
    fn only_rolled_back_transactions_are_retried() {
        for code in ["40001", "40P01"] {
            assert!(is_retryable(&sqlstate(code)), "{code}");
            // After the last attempt: Unavailable, never Internal.
            assert!(map(sqlstate(code)).is_transient(), "{code}");
        }
        // Not retried: a lost connection may have lost a commit's answer;
        // a timeout, a read-only standby or a pooler's refusal would only
        // fail again (they are Unavailable); the rest are bugs.
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(!is_retryable(&sqlx::Error::Io(reset)));
        assert!(!is_retryable(&sqlx::Error::PoolTimedOut));
        assert!(!is_retryable(&sqlx::Error::Protocol("cut".into())));
        for code in ["57014", "25006", "08P01", "55P03", "23505", "XX000"] {
            assert!(!is_retryable(&sqlstate(code)), "{code}");
        }
    }

    #[test]
    fn pooler_and_standby_errors_are_unavailable() {
        // PgBouncer's own errors (query_wait_timeout, server_login_retry,
        // "no more connections allowed") and a server restarting behind it.
        for code in [
            "08P01", "08006", "57P01", "53300", "25006", "40001", "40P01",
        ] {
            let mapped = map(sqlstate(code));
            assert!(
                matches!(mapped, StoreError::Unavailable(_)),
                "{code}: {mapped:?}"
            );
        }
        // A pooler closing the connection: mid-message, or before a reply.
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert!(matches!(
            map(sqlx::Error::Io(eof)),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            map(sqlx::Error::Protocol("unexpected end of stream".into())),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(map(sqlstate("42883")), StoreError::Internal(_)));
    }

    #[test]
    fn connection_problems_are_unavailable() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(map(sqlx::Error::Io(refused)).is_transient());
        assert!(map(sqlx::Error::PoolTimedOut).is_transient());
        assert!(map(sqlx::Error::PoolClosed).is_transient());
        assert!(!map(sqlx::Error::RowNotFound).is_transient());
        assert!(map(sqlx::Error::Protocol("unexpected response".into())).is_transient());
        assert!(!map(sqlx::Error::ColumnNotFound("x".into())).is_transient());
        for code in [
            "08006", "57P01", "57P03", "53300", "57014", "25006", "3D000", "40001", "40P01",
            "55P03", "25P03", "26000", "08P01",
        ] {
            assert!(unavailable_sqlstate(code), "{code}");
        }
        for code in ["23505", "42P01", "XX000", "42883"] {
            assert!(!unavailable_sqlstate(code), "{code}");
        }
    }
}
