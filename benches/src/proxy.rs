//! A loopback TCP proxy in front of PostgreSQL that reads the wire protocol
//! and counts round trips and transactions, so the cost of a store operation
//! is measured, not read off the code.
//!
//! - A *round trip* is one `ReadyForQuery` the server sends after the start-up:
//!   the client waits for it before going on. It is a *statement* round trip
//!   when the client's batch ran a statement (a simple `Query`, or
//!   `Bind/Execute…Sync`), a *ping* when it was a bare `Sync` (sqlx pings a
//!   connection when it returns to the pool, and before handing it out when
//!   `test_before_acquire` is on).
//! - A *transaction* is a round trip that executed a statement (`Query` or
//!   `Execute`) and ended with the server idle (`ReadyForQuery` status `I`):
//!   an implicit transaction, or an explicit one reaching `COMMIT`/`ROLLBACK`.
//!   Each is one `xact_commit` (or `xact_rollback`) in `pg_stat_database`.
//!
//! Plain TCP only: connect through it with `sslmode=disable`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy counted since the last [`Counts::take`].
#[derive(Debug, Default)]
pub struct Counts {
    round_trips: AtomicU64,
    pings: AtomicU64,
    transactions: AtomicU64,
    statements: AtomicU64,
}

/// A snapshot of [`Counts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// `ReadyForQuery` messages: round trips the client waited for.
    pub round_trips: u64,
    /// Round trips of a bare `Sync` (no statement): pings.
    pub pings: u64,
    /// Round trips that ran a statement and ended outside a transaction.
    pub transactions: u64,
    /// `Query` and `Execute` messages.
    pub statements: u64,
}

impl Counts {
    /// The counts so far, resetting them to zero.
    pub fn take(&self) -> Snapshot {
        Snapshot {
            round_trips: self.round_trips.swap(0, Ordering::SeqCst),
            pings: self.pings.swap(0, Ordering::SeqCst),
            transactions: self.transactions.swap(0, Ordering::SeqCst),
            statements: self.statements.swap(0, Ordering::SeqCst),
        }
    }
}

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    /// Where to connect instead of the server.
    pub addr: SocketAddr,
    /// What it counted.
    pub counts: Arc<Counts>,
}

impl Proxy {
    /// Starts a proxy on 127.0.0.1 (a free port) to `upstream`; it runs
    /// until the process ends.
    ///
    /// # Errors
    /// When it cannot bind.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let shared = Arc::clone(&counts);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counts = Arc::clone(&shared);
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        pipe(client, server, counts).await;
                    }
                });
            }
        });
        Ok(Self { addr, counts })
    }
}

async fn pipe(client: TcpStream, server: TcpStream, counts: Arc<Counts>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    // Set by the client's Query/Execute, cleared by the server's idle
    // ReadyForQuery that ends that statement's transaction.
    let ran = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let up = copy(
        cr,
        sw,
        Side::Client,
        Arc::clone(&counts),
        Arc::clone(&ran),
        Arc::clone(&started),
    );
    let down = copy(sr, cw, Side::Server, counts, ran, started);
    let _ = tokio::join!(up, down);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// Copies one direction, splitting the byte stream into messages (a type
/// byte and a big-endian length that counts itself, except the client's
/// untyped start-up messages and the server's one-byte SSL answer).
async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    side: Side,
    counts: Arc<Counts>,
    ran: Arc<AtomicBool>,
    started: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    // The client's first message (and the one after an SSL request) is untyped.
    let mut untyped = side == Side::Client;
    // Whether the client's batch since its last Sync executed a statement.
    let mut batch_ran = false;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut at = 0;
        loop {
            let rest = &pending[at..];
            if untyped {
                if rest.len() < 8 {
                    break;
                }
                let len = be32(&rest[0..4]);
                if rest.len() < len {
                    break;
                }
                // An SSLRequest/GSSENCRequest is answered with one byte, then
                // another untyped start-up message follows.
                let code = be32(&rest[4..8]);
                untyped = code == 80_877_103 || code == 80_877_104;
                at += len;
                continue;
            }
            if side == Side::Server
                && !started.load(Ordering::SeqCst)
                && rest.first() == Some(&b'N')
            {
                // The server's "no SSL" answer.
                at += 1;
                started.store(true, Ordering::SeqCst);
                continue;
            }
            if rest.len() < 5 {
                break;
            }
            let len = be32(&rest[1..5]) + 1;
            if rest.len() < len {
                break;
            }
            started.store(true, Ordering::SeqCst);
            match (side, rest[0]) {
                (Side::Client, b'Q' | b'E') => {
                    counts.statements.fetch_add(1, Ordering::SeqCst);
                    ran.store(true, Ordering::SeqCst);
                    batch_ran = rest[0] == b'E';
                }
                (Side::Client, b'P' | b'B' | b'D' | b'C' | b'H' | b'F') => batch_ran = true,
                // A Sync ends the batch (taking its flag); a bare one is a ping.
                (Side::Client, b'S') if !std::mem::take(&mut batch_ran) => {
                    counts.pings.fetch_add(1, Ordering::SeqCst);
                }
                (Side::Server, b'Z') => {
                    counts.round_trips.fetch_add(1, Ordering::SeqCst);
                    if rest.get(5) == Some(&b'I') && ran.swap(false, Ordering::SeqCst) {
                        counts.transactions.fetch_add(1, Ordering::SeqCst);
                    }
                }
                _ => {}
            }
            at += len;
        }
        if to.write_all(&pending[..at]).await.is_err() {
            break;
        }
        pending.drain(..at);
    }
    let _ = to.shutdown().await;
}

fn be32(bytes: &[u8]) -> usize {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[..4]);
    usize::try_from(u32::from_be_bytes(b)).unwrap_or(usize::MAX)
}
