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
mod tests {
    use super::*;

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
