//! [`PgCluster`]: a throwaway PostgreSQL cluster a case may kill.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A PostgreSQL cluster of the test's own, in a temporary folder, on a free
/// loopback port, with `fsync` and `synchronous_commit` on (a commit it
/// acknowledged survives a crash). Stopped and deleted on drop.
///
/// As root the cluster belongs to the `postgres` user (PostgreSQL refuses to
/// run as root), as in `scripts/test.sh`.
#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// Whether `CI` is set (to anything but empty, `0` or `false`).
#[must_use]
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// The folder of PostgreSQL's server binaries: `REFERRAL_PG_BIN`, `PATH`'s
/// `pg_ctl`, or the newest `/usr/lib/postgresql/*/bin`.
#[must_use]
pub fn find_pg_bin() -> Option<PathBuf> {
    let ok = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("REFERRAL_PG_BIN").map(PathBuf::from) {
        return ok(&dir).then_some(dir);
    }
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|d| ok(d))
    {
        return Some(dir);
    }
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, dir)| ok(dir))
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, dir)| dir)
}

impl PgCluster {
    /// Starts a cluster, or `None` (with a message) when PostgreSQL's server
    /// binaries are missing.
    ///
    /// # Panics
    /// Under `CI` without the binaries, or when the cluster cannot start.
    pub fn start(name: &str) -> Option<Self> {
        let Some(bin) = find_pg_bin() else {
            assert!(
                !under_ci(),
                "PostgreSQL's server binaries (initdb, pg_ctl) are missing: the fault case \
                 {name} cannot run under CI (install the postgresql package or set REFERRAL_PG_BIN)"
            );
            eprintln!("skipping {name}: PostgreSQL's server binaries (initdb, pg_ctl) are missing");
            return None;
        };
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!(
            "referral-faults-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::UNIX_EPOCH
                .elapsed()
                .map_or(0, |d| d.subsec_nanos())
        ));
        std::fs::create_dir_all(&dir).expect("create the cluster folder");
        let mut cluster = Self {
            data: dir.join("data"),
            bin,
            dir,
            port: 0,
            as_postgres,
        };
        if as_postgres {
            let known = Command::new("id")
                .args(["-u", "postgres"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !known {
                run_ok(Command::new("useradd").args([
                    "--system",
                    "--user-group",
                    "--home-dir",
                    "/var/lib/postgresql",
                    "--shell",
                    "/bin/sh",
                    "postgres",
                ]));
            }
            run_ok(Command::new("chown").arg("postgres").arg(&cluster.dir));
        }
        let initdb = cluster.bin.join("initdb");
        let out = cluster
            .pg_command(&initdb)
            .arg("-D")
            .arg(&cluster.data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .current_dir(&cluster.dir)
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb: {out:?}");
        for _ in 0..10 {
            let port = free_port();
            let conf = format!(
                "\n# referral-fault-tests: a throwaway cluster that a test kills\n\
                 port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
                 max_connections = 100\nfsync = on\nsynchronous_commit = on\n",
                cluster.dir.display()
            );
            std::fs::write(cluster.data.join("postgresql.auto.conf"), conf)
                .expect("write postgresql.auto.conf");
            cluster.port = port;
            if cluster.pg_ctl_start() {
                return Some(cluster);
            }
        }
        panic!("could not start PostgreSQL: {}", cluster.log());
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The postmaster's process id (first line of `postmaster.pid`).
    #[must_use]
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// Kills the postmaster with SIGKILL (a crash: no shutdown checkpoint;
    /// its backends notice and exit on their own).
    ///
    /// # Panics
    /// When there is no postmaster to kill.
    pub fn kill9(&self) {
        let pid = self.postmaster_pid().expect("a running postmaster");
        run_ok(Command::new("kill").args(["-KILL", &pid.to_string()]));
    }

    /// Starts the cluster again on the same port (crash recovery replays the
    /// WAL), retrying while the killed server's backends are still exiting.
    ///
    /// # Panics
    /// When it does not start within 60 s.
    pub fn restart(&self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if self.pg_ctl_start() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("PostgreSQL did not restart: {}", self.log());
    }

    fn pg_ctl_start(&self) -> bool {
        self.pg_command(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "30", "start"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn pg_command(&self, program: &Path) -> Command {
        if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.postmaster_pid().is_some() {
            let _ = self
                .pg_command(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "-t", "30", "stop"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn run_ok(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?}: {status}");
}
