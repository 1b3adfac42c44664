//! The embedded default (README *Quick start*): `serve --embedded-db DIR` keeps a private
//! PostgreSQL in DIR across runs, and `demo` brings its own when no server runs; either way
//! no server process outlives the command.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

fn bridge() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dolphin-bridge"));
    command.env_remove("DATABASE_URL").env_remove("BRIDGE_ADMIN_TOKEN").env("RUST_LOG", "warn").stdin(Stdio::null());
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

async fn wait_ready(port: u16, child: &mut Child) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = client.get(format!("http://127.0.0.1:{port}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            return;
        }
        assert!(child.try_wait().expect("wait").is_none(), "the command exited before it was ready");
        assert!(Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stop(mut child: Child) {
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "did not stop after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "graceful exit, got {status}");
}

/// Whether a PostgreSQL server runs on the data directory under `dir`.
fn server_runs_in(dir: &Path) -> bool {
    let pid_file = dir.join("data/postmaster.pid");
    let Ok(text) = std::fs::read_to_string(pid_file) else { return false };
    text.lines()
        .next()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

#[tokio::test]
async fn serve_with_an_embedded_db_keeps_it_across_runs_and_leaves_no_server_behind() {
    if dolphin_bridge::embedded_db::server_binaries().is_none() {
        panic!("{}", dolphin_bridge::embedded_db::INSTALL_HINT);
    }
    let dir = std::env::temp_dir().join(format!("dbt_embedded_{}", uuid::Uuid::new_v4().simple()));
    for run in 0..2 {
        let port = free_port();
        let mut child = bridge()
            .args(["serve", "--embedded-db"])
            .arg(&dir)
            .env("BRIDGE_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve");
        wait_ready(port, &mut child).await;
        assert!(server_runs_in(&dir), "run {run}: its server runs in {}", dir.display());
        stop(child).await;
        assert!(!server_runs_in(&dir), "run {run}: the server stopped with serve");
        assert!(dir.join("data/PG_VERSION").is_file(), "run {run}: the cluster is kept");
    }
    // An explicit DATABASE_URL is never overridden.
    let refused = bridge()
        .args(["serve", "--embedded-db"])
        .arg(&dir)
        .env("DATABASE_URL", format!("{}/never_used", server_url()))
        .output()
        .expect("serve");
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("DATABASE_URL is set"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn demo_uses_a_running_server_or_brings_its_own_and_removes_it() {
    let port = free_port();
    let mut child = bridge()
        .arg("demo")
        .env("BRIDGE_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("demo");
    wait_ready(port, &mut child).await;
    let stdout = child.stdout.take().expect("stdout");
    stop(child).await;
    let out = std::io::read_to_string(stdout).unwrap_or_default();
    let private = out.lines().find(|l| l.contains("started a private PostgreSQL")).map(str::to_string);
    if dolphin_bridge::embedded_db::answers(([127, 0, 0, 1], 5432).into()) {
        assert_eq!(private, None, "a server runs on 5432: demo uses it\n{out}");
    } else {
        let line = private.unwrap_or_else(|| panic!("nothing on 5432: demo says what it started\n{out}"));
        let dir =
            line.split("files in ").nth(1).and_then(|rest| rest.split(',').next()).expect("the line names its files");
        assert!(!Path::new(dir).exists(), "{dir} is removed on exit");
    }
    assert!(out.contains("dolphin-bridge demo is running"), "{out}");
}
