//! Headless Chromium through chromedriver, each test with a fresh profile.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::process::Guarded;

/// Debian's paths, used when `REFERRAL_CHROMIUM` / `REFERRAL_CHROMEDRIVER` are unset.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long chromedriver may take to accept connections.
const DRIVER_START: Duration = Duration::from_secs(20);

/// A laptop-sized window (CSS pixels), for the operators' page.
pub(crate) const LAPTOP_WIDTH: u32 = 1366;
pub(crate) const LAPTOP_HEIGHT: u32 = 768;

/// A phone-sized window (CSS pixels).
const WINDOW_SIZE: &str = "--window-size=390,844";
pub(crate) const WINDOW_WIDTH: u32 = 390;
pub(crate) const WINDOW_HEIGHT: u32 = 844;

/// Where the browser and its driver are.
#[derive(Debug)]
pub(crate) struct BrowserPaths {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

impl BrowserPaths {
    /// Finds both programs. When one is missing: `None` with a message, or a panic when
    /// the `CI` variable is set (a CI run must not pass without running the test).
    pub(crate) fn find(test: &str) -> Option<Self> {
        let chromium = path_from_env("REFERRAL_CHROMIUM", CHROMIUM);
        let chromedriver = path_from_env("REFERRAL_CHROMEDRIVER", CHROMEDRIVER);
        let missing: Vec<String> = [&chromium, &chromedriver]
            .into_iter()
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        if missing.is_empty() {
            return Some(Self {
                chromium,
                chromedriver,
            });
        }
        let message = format!(
            "browser test {test}: missing {}; install them with \
             `apt-get install -y chromium chromium-driver` \
             (or set REFERRAL_CHROMIUM / REFERRAL_CHROMEDRIVER)",
            missing.join(" and ")
        );
        if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
            panic!("{message}; CI is set, so this fails instead of skipping");
        }
        eprintln!("SKIPPED {message}");
        None
    }
}

fn path_from_env(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// A running chromedriver with one browser session; the profile directory is removed and
/// the driver killed when it is dropped.
#[derive(Debug)]
pub(crate) struct Session {
    client: Client,
    // Dropped in this order: the driver (and its browser) first, then the profile.
    _driver: Guarded,
    profile: Profile,
}

impl Session {
    /// Starts chromedriver on a free loopback port and opens a headless Chromium session.
    pub(crate) async fn start(paths: &BrowserPaths) -> Self {
        let port = free_port();
        let child = Command::new(&paths.chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            // Its own process group, so the browser it starts dies with it.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", paths.chromedriver.display()));
        let mut driver = Guarded::new("chromedriver", child, |_| {}).kill_group();
        let started = Instant::now();
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if let Some(status) = driver.exited() {
                panic!("chromedriver exited at start: {status}");
            }
            assert!(
                started.elapsed() < DRIVER_START,
                "chromedriver did not listen on port {port} within {DRIVER_START:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let profile = Profile::new();
        // Files the pages save (the operators' CSV exports) land in the profile, removed
        // with it, never in the home directory.
        let downloads = profile.0.join("downloads");
        std::fs::create_dir_all(&downloads)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", downloads.display()));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": paths.chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--no-default-browser-check",
                    WINDOW_SIZE,
                    format!("--user-data-dir={}", profile.0.display()),
                ],
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                },
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "no browser session from chromedriver: {e}\n{}",
                    driver.output()
                )
            });
        // The flag sizes the first window; this makes sure (headless ignores it at times).
        client
            .set_window_size(WINDOW_WIDTH, WINDOW_HEIGHT)
            .await
            .expect("a phone-sized window");
        Self {
            client,
            _driver: driver,
            profile,
        }
    }

    /// The WebDriver client of this session.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Where the browser saves downloaded files (inside the session's profile).
    pub(crate) fn downloads(&self) -> PathBuf {
        self.profile.0.join("downloads")
    }

    /// Ends the browser session (the driver and the profile go on drop).
    pub(crate) async fn close(self) {
        if let Err(e) = self.client.clone().close().await {
            eprintln!("closing the browser session: {e}");
        }
        drop(self._driver);
        drop(self.profile);
    }
}

/// A fresh Chromium profile directory, removed on drop.
#[derive(Debug)]
struct Profile(PathBuf);

impl Profile {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "referral-browser-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Self(dir)
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        remove_later(&self.0);
    }
}

/// Removes a directory, retrying briefly while the browser lets go of its files.
fn remove_later(dir: &Path) {
    for _ in 0..20 {
        if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A loopback port free at the time of asking.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
