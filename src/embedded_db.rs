//! A private PostgreSQL cluster from the server binaries installed on this machine, for
//! `demo`, `serve --embedded-db DIR` and the test helpers when no server is running.
//!
//! `initdb` into a directory (fresh and removed afterwards, or the caller's and kept), then
//! `pg_ctl start` on a free port of 127.0.0.1 with its socket in that directory and trust
//! authentication for local connections only (initdb's `-A trust` writes `local` and
//! `127.0.0.1/32`/`::1/128` lines, nothing else, and the server listens on 127.0.0.1 alone).
//! As root the server runs as the `postgres` user, since initdb refuses root.
//!
//! Stopping: [`Cluster`] stops the server (and removes a fresh directory) when dropped, which
//! covers a normal exit, Ctrl-C and SIGTERM (the commands return from their signal wait) and a
//! failed start. A watchdog shell started with the server covers the rest: when the process
//! that started the cluster is gone, however it ended (SIGKILL included, and a test run, whose
//! statics are never dropped), it stops the server within a second.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};

/// What to install when there is no server at all.
pub const INSTALL_HINT: &str = "no PostgreSQL server binaries found (pg_config --bindir, /usr/lib/postgresql/*/bin): \
     install the server (Debian/Ubuntu: apt-get install postgresql) or start one with `docker compose up`, \
     or set DATABASE_URL";

/// Whether something accepts TCP connections at `address` within half a second.
pub fn answers(address: SocketAddr) -> bool {
    TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok()
}

/// The directory of `initdb` and `pg_ctl`: `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian keeps the server binaries off the PATH).
pub fn server_binaries() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|d| has_server(d)) {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().split('.').next()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_server(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// A running private cluster.
#[derive(Debug)]
pub struct Cluster {
    bindir: PathBuf,
    dir: PathBuf,
    port: u16,
    /// The `postgres` user's uid and gid when we run as root.
    run_as: Option<(u32, u32)>,
    /// The caller's directory: kept (and the server only stopped) at the end.
    keep: bool,
}

impl Cluster {
    /// Starts a cluster in a fresh directory under the system's temporary directory, removed
    /// when the cluster is dropped.
    pub fn start_temporary() -> anyhow::Result<Cluster> {
        let dir =
            std::env::temp_dir().join(format!("dolphin-bridge-pg-{}-{}", std::process::id(), rand::random::<u32>()));
        Cluster::start(dir, false)
    }

    /// Starts the cluster kept in `dir` (created there on first use).
    pub fn start_in(dir: &Path) -> anyhow::Result<Cluster> {
        let dir = std::path::absolute(dir).with_context(|| format!("{}", dir.display()))?;
        Cluster::start(dir, true)
    }

    fn start(dir: PathBuf, keep: bool) -> anyhow::Result<Cluster> {
        let bindir = server_binaries().context(INSTALL_HINT)?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let run_as =
            if is_root() { Some(postgres_user().context("running as root needs a `postgres` user")?) } else { None };
        let port = free_port()?;
        let cluster = Cluster { bindir, dir, port, run_as, keep };
        // From here on a failure drops `cluster`, which stops whatever started and cleans up.
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&cluster.dir, Some(uid), Some(gid))
                .context("handing the directory to postgres")?;
        }
        if !cluster.data().join("PG_VERSION").is_file() {
            let init = cluster
                .command("initdb")
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "-D"])
                .arg(cluster.data())
                .output()
                .context("running initdb")?;
            if !init.status.success() {
                bail!("initdb failed: {}", String::from_utf8_lossy(&init.stderr).trim());
            }
        }
        let mut options =
            format!("-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{}'", cluster.dir.display());
        if !keep {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let started = cluster
            .command("pg_ctl")
            .arg("-D")
            .arg(cluster.data())
            .arg("-l")
            .arg(cluster.dir.join("server.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .stdout(Stdio::null())
            .output()
            .context("running pg_ctl start")?;
        if !started.status.success() {
            let log = std::fs::read_to_string(cluster.dir.join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            bail!("the private PostgreSQL did not start: {}", tail.into_iter().rev().collect::<Vec<_>>().join(" | "));
        }
        cluster.watch_owner()?;
        Ok(cluster)
    }

    /// The URL of `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Whether its directory outlives it (`--embedded-db DIR`).
    pub fn kept(&self) -> bool {
        self.keep
    }

    /// Where it keeps its files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A server binary, run as `postgres` when we are root.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bindir.join(program));
        command.stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid).env("HOME", &self.dir);
        }
        command
    }

    /// A shell that stops the server once this process is gone (see the module doc). It
    /// stops only the server it watched: a kept directory may have a new one by then (a
    /// restarted `serve`), whose `postmaster.pid` names another process.
    fn watch_owner(&self) -> anyhow::Result<()> {
        let pid_file = self.data().join("postmaster.pid");
        let postmaster = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.lines().next().map(|l| l.trim().to_string()))
            .context("reading the new server's postmaster.pid")?;
        let mut script = format!(
            "while [ -d /proc/{owner} ]; do sleep 1; done; \
             if [ \"$(head -n 1 '{pid_file}' 2>/dev/null)\" = '{postmaster}' ]; then \
             '{pg_ctl}' -D '{data}' -m fast -w stop >/dev/null 2>&1; fi",
            owner = std::process::id(),
            pid_file = pid_file.display(),
            pg_ctl = self.bindir.join("pg_ctl").display(),
            data = self.data().display(),
        );
        if !self.keep {
            script.push_str(&format!("; rm -rf '{}'", self.dir.display()));
        }
        let mut command = Command::new("sh");
        command.args(["-c", &script]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        // Its own process group: a Ctrl-C at the terminal does not end it before the server.
        command.process_group(0);
        command.spawn().context("starting the watchdog of the private PostgreSQL")?;
        Ok(())
    }

    fn stop(&self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Starts a private cluster (kept in `dir`, else temporary) and points `config` at it; says
/// so in one line. Refused when DATABASE_URL is set: an explicit one is never overridden.
pub async fn start_for(config: &mut crate::config::Config, dir: Option<std::path::PathBuf>) -> anyhow::Result<Cluster> {
    if config.database_url_given {
        anyhow::bail!("DATABASE_URL is set: unset it to use --embedded-db, or drop --embedded-db");
    }
    let cluster = tokio::task::spawn_blocking(move || match dir {
        Some(dir) => Cluster::start_in(&dir),
        None => Cluster::start_temporary(),
    })
    .await??;
    config.database_url = cluster.url("dolphin_bridge");
    config.read_database_url = None;
    let lifetime = if cluster.kept() { "kept there" } else { "removed on exit" };
    println!(
        "started a private PostgreSQL on {} (files in {}, {lifetime}); set DATABASE_URL to use your own",
        crate::config::redact_url(&config.database_url),
        cluster.dir().display()
    );
    Ok(cluster)
}

fn is_root() -> bool {
    // The effective uid, as the kernel reports it (no libc call needed).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        .unwrap_or(false)
}

/// The `postgres` user's uid and gid, from `/etc/passwd`.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_cluster_starts_answers_and_is_gone_when_dropped() {
        if server_binaries().is_none() {
            eprintln!("skipped: {INSTALL_HINT}");
            return;
        }
        let cluster = Cluster::start_temporary().unwrap_or_else(|e| panic!("{e:#}"));
        let address: SocketAddr = format!("127.0.0.1:{}", cluster.port).parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(answers(address), "the server listens on {address}");
        let dir = cluster.dir().to_path_buf();
        assert!(dir.join("data/PG_VERSION").is_file());
        let hba = std::fs::read_to_string(dir.join("data/pg_hba.conf")).unwrap_or_default();
        let rules: Vec<&str> = hba.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).collect();
        assert!(
            rules.iter().all(|l| l.starts_with("local") || l.contains("127.0.0.1/32") || l.contains("::1/128")),
            "{rules:?}"
        );
        drop(cluster);
        assert!(!answers(address), "stopped");
        assert!(!dir.exists(), "removed");
    }
}
