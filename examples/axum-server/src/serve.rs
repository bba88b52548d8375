//! The accept loop, in place of `axum::serve` (which sets no header read
//! timeout and no connection limit): hyper's HTTP/1 with a header read
//! timeout, at most `max_connections` connections at once (past it, accepting
//! waits), the peer's address in each request (axum's `ConnectInfo`, the
//! client address of the per-client send limit), and a graceful shutdown
//! that lets in-flight requests finish.
//!
//! Connections are served by one single-threaded tokio runtime per core
//! (as actix-web does), each on its own thread: the loop accepts on the
//! caller's runtime and hands each connection to the next worker in turn.
//! A connection then lives on one thread: its tasks, its I/O and its timers
//! (hyper's header read timer, the request timeout) never leave that
//! thread's runtime, where tokio's multi-thread runtime shares one timer
//! wheel behind a lock between its workers and moves tasks between them.
//! Measured in PERFORMANCE.md ("Change 6: one runtime per core"). Each
//! worker's header read timers come from its own [`PooledTimer`], which
//! reuses tokio sleeps rather than making one per request.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use referral_server::App;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tower::ServiceExt as _;

use crate::timer::PooledTimer;

/// The limits the accept loop enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Longest wait for a request's headers (also bounds idle keep-alive).
    pub(crate) header_timeout: Duration,
    /// Most connections open at once.
    pub(crate) max_connections: usize,
    /// Longest wait for in-flight requests after the shutdown signal.
    pub(crate) shutdown_grace: Duration,
    /// Worker threads serving connections (one runtime each).
    pub(crate) workers: usize,
}

/// An accepted connection on its way to a worker: the socket (taken off the
/// accepting runtime), its peer, its place under the connection limit and
/// its graceful-shutdown watcher.
struct Accepted {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    watcher: Watcher,
}

/// The worker threads: one single-threaded runtime each.
struct Workers {
    senders: Vec<mpsc::UnboundedSender<Accepted>>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    next: usize,
}

impl Workers {
    /// Starts `count` (at least one) workers serving `app`.
    fn start(count: usize, app: &App, header_timeout: Duration) -> std::io::Result<Self> {
        let mut workers = Self {
            senders: Vec::new(),
            stops: Vec::new(),
            threads: Vec::new(),
            next: 0,
        };
        for n in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (sender, accepted) = mpsc::unbounded_channel();
            let (stop, stopped) = oneshot::channel();
            let app = app.clone();
            let thread = std::thread::Builder::new()
                .name(format!("referral-worker-{n}"))
                .spawn(move || {
                    runtime.block_on(work(accepted, stopped, app, header_timeout));
                    // Dropping the runtime here ends what is left of its
                    // connections: the grace period is over.
                })?;
            workers.senders.push(sender);
            workers.stops.push(stop);
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// Hands `accepted` to the next worker in turn.
    fn dispatch(&mut self, accepted: Accepted) {
        let worker = self.next % self.senders.len();
        self.next = self.next.wrapping_add(1);
        if self.senders[worker].send(accepted).is_err() {
            // Only if that worker's thread ended (it does not before stop):
            // the connection closes, its permit returns.
            tracing::error!(worker, "a connection worker is gone; connection closed");
        }
    }

    /// No more connections: each worker keeps serving the ones it has.
    fn close(&mut self) {
        self.senders.clear();
    }

    /// Ends every worker (what is still open is dropped) and waits for
    /// their threads.
    async fn stop(self) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        let threads = self.threads;
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    tracing::error!("a connection worker panicked");
                }
            }
        })
        .await;
        if let Err(error) = joined {
            tracing::error!(%error, "waiting for the connection workers failed");
        }
    }
}

/// A worker: serves every connection it is handed on its own runtime, until
/// the accept loop is gone and `stopped` resolves.
async fn work(
    mut accepted: mpsc::UnboundedReceiver<Accepted>,
    stopped: oneshot::Receiver<()>,
    app: App,
    header_timeout: Duration,
) {
    let mut builder = http1::Builder::new();
    // This worker's own timer: the header read timers of its connections
    // reuse its sleeps (see `timer.rs`).
    builder
        .timer(PooledTimer::new())
        .header_read_timeout(header_timeout);
    while let Some(Accepted {
        stream,
        peer,
        permit,
        watcher,
    }) = accepted.recv().await
    {
        // Registered with this thread's runtime from here on.
        let stream = match TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::error!(%error, "could not register a connection");
                continue;
            }
        };
        let service = app
            .clone()
            .map_request(move |mut request: axum::extract::Request<_>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let conn = watcher.watch(
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)),
        );
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    // The accept loop stopped: the connections left finish here until the
    // grace period ends.
    let _ = stopped.await;
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting, lets in-flight requests finish (idle connections close at
/// once) and returns; after `shutdown_grace` it gives up on stragglers.
pub(crate) async fn serve(
    listener: TcpListener,
    app: App,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let mut workers = match Workers::start(limits.workers, &app, limits.header_timeout) {
        Ok(workers) => workers,
        Err(error) => {
            tracing::error!(%error, "could not start the connection workers");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Past the limit, wait for a connection to close before accepting:
        // the kernel's backlog holds the rest, no descriptor is spent.
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    if !matches!(
                        error.kind(),
                        std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                    ) {
                        // E.g. out of file descriptors: wait for some to close.
                        tracing::error!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // Off this runtime's reactor, onto the worker's.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%error, "could not hand a connection over");
                continue;
            }
        };
        workers.dispatch(Accepted {
            stream,
            peer,
            permit,
            watcher: graceful.watcher(),
        });
    }
    drop(listener);
    workers.close();
    tracing::info!("shutting down: finishing in-flight requests");
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?limits.shutdown_grace, "connections still open at the end of the grace period");
    }
    workers.stop().await;
}
