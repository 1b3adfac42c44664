//! A pg_auto_failover formation on free local ports, for the failover test: a monitor, a
//! primary and two standbys (`number_sync_standbys = 1`, the package's default for three
//! nodes), from Debian's `postgresql-15-auto-failover` and `pg-auto-failover-cli`. As root,
//! every process runs as the `postgres` user (initdb refuses root). Everything lives in
//! one temporary directory; dropping the formation kills its processes and removes it.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

const PG_AUTOCTL: &str = "/usr/bin/pg_autoctl";

pub struct Formation {
    dir: PathBuf,
    bindir: PathBuf,
    monitor_port: u16,
    /// The keeper processes (`pg_autoctl run`), each the leader of its own process group.
    keepers: Vec<Child>,
    /// The data nodes' ports, in the order of the URI.
    pub ports: Vec<u16>,
}

impl Formation {
    /// The PostgreSQL binaries the extension was built for, or `None` when the packages are
    /// not installed.
    fn installed() -> Option<PathBuf> {
        if !Path::new(PG_AUTOCTL).exists() {
            return None;
        }
        let versions = std::fs::read_dir("/usr/lib/postgresql").ok()?;
        versions.flatten().map(|v| v.path()).find(|v| {
            let version = v.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            v.join("bin/pg_ctl").exists()
                && Path::new(&format!("/usr/share/postgresql/{version}/extension/pgautofailover.control")).exists()
        })
    }

    /// Starts a monitor and three nodes and waits until node 1 is primary and the others
    /// are its secondaries; `None` when the packages are missing.
    pub async fn start() -> Option<Formation> {
        let bindir = Self::installed()?.join("bin");
        let dir = std::env::temp_dir().join(format!("dolphin-ha-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("formation directory");
        let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
        let mut formation =
            Formation { dir, bindir, monitor_port: ports[0], keepers: Vec::new(), ports: ports[1..].to_vec() };
        if running_as_root() {
            let status = Command::new("chown").arg("postgres:postgres").arg(&formation.dir).status().expect("chown");
            assert!(status.success(), "chown the formation directory to postgres");
        }
        let started = Instant::now();
        formation.pg_autoctl(&[
            "create",
            "monitor",
            "--pgdata",
            &formation.pgdata("monitor"),
            "--pgport",
            &formation.monitor_port.to_string(),
            "--hostname",
            "127.0.0.1",
            "--auth",
            "trust",
            "--no-ssl",
        ]);
        formation.run_keeper("monitor");
        if std::env::var_os("FORMATION_DEFAULT_TIMEOUTS").is_none() {
            formation.tune_monitor().await;
        }
        let monitor_uri =
            format!("postgres://autoctl_node@127.0.0.1:{}/pg_auto_failover?sslmode=disable", formation.monitor_port);
        for n in 0..3 {
            let name = format!("node{}", n + 1);
            formation.pg_autoctl(&[
                "create",
                "postgres",
                "--pgdata",
                &formation.pgdata(&name),
                "--pgport",
                &formation.ports[n].to_string(),
                "--hostname",
                "127.0.0.1",
                "--monitor",
                &monitor_uri,
                "--auth",
                "trust",
                "--no-ssl",
                "--name",
                &name,
            ]);
            formation.run_keeper(&name);
            // The first node must be primary before the others clone it.
            formation.wait_for_states(n + 1, Duration::from_secs(90)).await;
        }
        eprintln!("formation: monitor and 3 nodes ready in {:.1} s", started.elapsed().as_secs_f64());
        Some(formation)
    }

    /// The URI the bridge is given, as `pg_autoctl show uri` prints it (with a user), for
    /// sessions with `attrs` (`read-write` for `DATABASE_URL`).
    pub fn uri(&self, database: &str, attrs: &str) -> String {
        let hosts: Vec<String> = self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("postgres://postgres@{}/{database}?target_session_attrs={attrs}&sslmode=disable", hosts.join(","))
    }

    /// A single-host URL of node `n`.
    pub fn node_url(&self, n: usize, database: &str) -> String {
        node_url(self.ports[n], database)
    }

    /// What a watcher task needs to ask the nodes (the formation itself stays with the test).
    pub fn handle(&self) -> Nodes {
        Nodes { ports: self.ports.clone() }
    }

    /// The node that takes writes now, if any.
    pub async fn writable_node(&self) -> Option<usize> {
        self.handle().writable_node().await
    }

    /// Kills node `n` as a machine loss would: its keeper, its postmaster and every
    /// PostgreSQL process under it, all with SIGKILL at once.
    pub fn kill_node(&mut self, n: usize) {
        let name = format!("node{}", n + 1);
        let mut targets = vec![format!("-{}", self.keepers[n + 1].id())];
        targets.extend(self.postgres_processes(&name));
        assert!(targets.len() > 1, "{name} has a running postmaster");
        // A backend may end between the listing and the kill, so `kill` exits non-zero for
        // "no such process"; what matters is that nothing of the node survives.
        let _ = Command::new("kill").arg("-KILL").arg("--").args(&targets).stderr(Stdio::null()).status();
        let survivors: Vec<String> = targets.iter().filter(|pid| process_exists(pid)).cloned().collect();
        assert!(survivors.is_empty(), "{name}: processes {survivors:?} survived kill -KILL");
    }

    /// The postmaster of the data directory `name` and every process under it (none when
    /// it is not running).
    fn postgres_processes(&self, name: &str) -> Vec<String> {
        let Ok(pidfile) = std::fs::read_to_string(Path::new(&self.pgdata(name)).join("postmaster.pid")) else {
            return Vec::new();
        };
        let postmaster = pidfile.lines().next().unwrap_or("").trim().to_string();
        let mut pids = children_of(&postmaster);
        pids.push(postmaster);
        pids
    }

    fn pgdata(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().to_string()
    }

    /// A `pg_autoctl` command line, as the `postgres` user when running as root, with its
    /// configuration kept inside the formation's directory.
    fn command(&self, args: &[&str]) -> Command {
        let path = format!("{}:{}", self.bindir.display(), std::env::var("PATH").unwrap_or_default());
        let env = [
            format!("XDG_CONFIG_HOME={}", self.dir.join("config").display()),
            format!("XDG_DATA_HOME={}", self.dir.join("data").display()),
            format!("XDG_RUNTIME_DIR={}", self.dir.join("run").display()),
            format!("PATH={path}"),
        ];
        let mut command = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "env"]);
            c
        } else {
            Command::new("env")
        };
        command.args(env).arg(PG_AUTOCTL).args(args).current_dir(&self.dir);
        command
    }

    fn pg_autoctl(&self, args: &[&str]) {
        let out = self.command(args).stdin(Stdio::null()).output().expect("run pg_autoctl");
        assert!(out.status.success(), "pg_autoctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Starts `pg_autoctl run` for one node in a process group of its own, logging to a file.
    fn run_keeper(&mut self, name: &str) {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).expect("keeper log");
        let child = self
            .command(&["run", "--pgdata", &self.pgdata(name)])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start pg_autoctl run");
        self.keepers.push(child);
    }

    /// Makes the monitor notice a dead node in seconds rather than the defaults' ~50 s
    /// (health checks every 5 s, 20 s before a node counts as unhealthy, 30 s for an old
    /// primary to demote itself): the figures the test prints are with these settings
    /// unless `FORMATION_DEFAULT_TIMEOUTS` is set.
    async fn tune_monitor(&self) {
        let url = format!("postgres://postgres@127.0.0.1:{}/pg_auto_failover?sslmode=disable", self.monitor_port);
        let until = Instant::now() + Duration::from_secs(60);
        let mut conn = loop {
            match PgConnection::connect(&url).await {
                Ok(c) => break c,
                Err(e) => assert!(Instant::now() < until, "the monitor never answered: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        for (name, value) in [
            ("health_check_period", "1s"),
            ("health_check_timeout", "1s"),
            ("health_check_max_retries", "1"),
            ("health_check_retry_delay", "500ms"),
            ("node_considered_unhealthy_timeout", "3s"),
            ("primary_demote_timeout", "5s"),
        ] {
            sqlx::query(&format!("ALTER SYSTEM SET pgautofailover.{name} = '{value}'"))
                .execute(&mut conn)
                .await
                .expect("tune the monitor");
        }
        sqlx::query("SELECT pg_reload_conf()").execute(&mut conn).await.expect("reload");
        let _ = conn.close().await;
    }

    /// Waits until `n` nodes have reached their goal state as primary or secondary (or, for
    /// a lone first node, `single`).
    async fn wait_for_states(&self, n: usize, deadline: Duration) {
        let url = format!("postgres://postgres@127.0.0.1:{}/pg_auto_failover?sslmode=disable", self.monitor_port);
        let until = Instant::now() + deadline;
        loop {
            let settled: i64 = match PgConnection::connect(&url).await {
                Ok(mut conn) => sqlx::query_scalar(
                    "SELECT count(*) FROM pgautofailover.node
                     WHERE reportedstate = goalstate AND reportedstate IN ('single', 'primary', 'secondary')",
                )
                .fetch_one(&mut conn)
                .await
                .unwrap_or(0),
                Err(_) => 0,
            };
            if settled as usize >= n {
                return;
            }
            assert!(Instant::now() < until, "formation: {n} nodes never settled (logs in {})", self.dir.display());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Formation {
    fn drop(&mut self) {
        let names: Vec<String> = (1..=self.ports.len()).map(|n| format!("node{n}")).chain(["monitor".into()]).collect();
        for name in names {
            let targets = self.postgres_processes(&name);
            if !targets.is_empty() {
                let _ = Command::new("kill").arg("-KILL").arg("--").args(&targets).stderr(Stdio::null()).status();
            }
        }
        for keeper in &mut self.keepers {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg("--")
                .arg(format!("-{}", keeper.id()))
                .stderr(Stdio::null())
                .status();
            let _ = keeper.wait();
        }
        if std::env::var_os("KEEP_FORMATION").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The data nodes' addresses.
pub struct Nodes {
    ports: Vec<u16>,
}

impl Nodes {
    /// The node that takes writes now, if any.
    pub async fn writable_node(&self) -> Option<usize> {
        for (n, port) in self.ports.iter().enumerate() {
            let Ok(mut conn) = PgConnection::connect(&node_url(*port, "postgres")).await else { continue };
            let read_only: Result<String, _> =
                sqlx::query_scalar("SELECT current_setting('transaction_read_only')").fetch_one(&mut conn).await;
            let _ = conn.close().await;
            if read_only.is_ok_and(|r| r == "off") {
                return Some(n);
            }
        }
        None
    }
}

fn node_url(port: u16, database: &str) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/{database}?sslmode=disable")
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// The pids whose parent is `parent` (PostgreSQL's backends and auxiliary processes).
/// Whether `pid` (a process group `-pgid` counts as gone) is still alive: a killed process
/// waiting to be reaped (state `Z`) is not.
fn process_exists(pid: &str) -> bool {
    if pid.starts_with('-') {
        return false;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
            .is_some_and(|zombie| !zombie);
        if !alive || Instant::now() > deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn children_of(parent: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().to_string();
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // `pid (comm) state ppid …`; comm may hold spaces, so read after the last ')'.
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.to_string();
            (ppid == parent).then_some(pid)
        })
        .collect()
}
