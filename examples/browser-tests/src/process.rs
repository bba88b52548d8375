//! Child processes (the server under test, chromedriver) that die with their guard.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How long a server may take to print its `listening on` line.
const SERVER_START: Duration = Duration::from_secs(30);

/// Output lines kept for the failure report.
type Log = Arc<Mutex<Vec<String>>>;

/// A child process killed (and reaped) when dropped; its collected output is printed if
/// the test is panicking.
#[derive(Debug)]
pub(crate) struct Guarded {
    name: String,
    child: Child,
    log: Log,
    group: bool,
}

impl Guarded {
    /// Wraps `child`, collecting its piped stdout and stderr lines into the log. Each stdout
    /// line is also passed to `on_stdout`.
    pub(crate) fn new(
        name: &str,
        mut child: Child,
        on_stdout: impl Fn(&str) + Send + 'static,
    ) -> Self {
        let log = Log::default();
        if let Some(out) = child.stdout.take() {
            collect(out, Arc::clone(&log), on_stdout);
        }
        if let Some(err) = child.stderr.take() {
            collect(err, Arc::clone(&log), |_| {});
        }
        Self {
            name: name.to_owned(),
            child,
            log,
            group: false,
        }
    }

    /// On drop, kill the child's whole process group (the child must lead one:
    /// `Command::process_group(0)`), so what it started dies too.
    pub(crate) fn kill_group(mut self) -> Self {
        self.group = true;
        self
    }

    /// Whether the process has exited (and how).
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The output collected so far.
    pub(crate) fn output(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .join("\n")
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if self.group {
            // `kill -KILL -- -PGID`: the group the child leads, nothing else.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "----- output of {} -----\n{}\n----- end of {} -----",
                self.name,
                self.output(),
                self.name
            );
        }
    }
}

/// Reads `from` line by line on a thread until it closes.
fn collect(from: impl Read + Send + 'static, log: Log, on_line: impl Fn(&str) + Send + 'static) {
    thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            on_line(&line);
            log.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(line);
        }
    });
}

/// The server under test, on a free loopback port, with the in-memory store.
#[derive(Debug)]
pub(crate) struct Server {
    base_url: String,
    _process: Guarded,
}

impl Server {
    /// Starts `binary` with no SMS delay and the outbox on or off, and waits for its
    /// `listening on http://ADDR` line.
    pub(crate) fn start(binary: &str, dev_outbox: bool) -> Self {
        Self::start_with(binary, dev_outbox, &[])
    }

    /// As [`Server::start`], with further settings (`REFERRAL_*` variables).
    pub(crate) fn start_with(binary: &str, dev_outbox: bool, settings: &[(&str, &str)]) -> Self {
        let mut command = Command::new(binary);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REFERRAL_") {
                command.env_remove(&key);
            }
        }
        let child = command
            .env_remove("DATABASE_URL")
            .env("REFERRAL_LISTEN", "127.0.0.1:0")
            .env("REFERRAL_SMS_DELAY_MS", "0")
            .env("REFERRAL_DEV_OUTBOX", if dev_outbox { "1" } else { "0" })
            .envs(settings.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the server {binary}: {e}"));
        let (tx, rx) = mpsc::channel();
        let mut process = Guarded::new("the server", child, move |line| {
            if let Some(addr) = line.trim().strip_prefix("listening on http://") {
                let _ = tx.send(addr.to_owned());
            }
        });
        let Ok(addr) = rx.recv_timeout(SERVER_START) else {
            panic!(
                "the server printed no `listening on http://ADDR` line within {SERVER_START:?} \
                 (exit: {:?})",
                process.exited()
            )
        };
        Self {
            base_url: format!("http://{addr}"),
            _process: process,
        }
    }

    /// `http://ADDR`, without a trailing slash.
    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }
}
