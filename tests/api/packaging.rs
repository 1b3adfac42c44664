//! What ships beside the binary (README *Development*): the Prometheus alert rules and the
//! Grafana dashboard use only metrics the bridge exports, and promtool accepts the rules.

use std::collections::BTreeSet;
use std::process::Command;

/// `repository-relative path` read whole.
fn read(path: &str) -> String {
    let path = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `bridge_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("bridge_") {
        let name: String =
            rest[at..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

/// The names the bridge exports: the string constants of `telemetry::names`, the one place
/// metric names are written (histograms also as `_bucket`, `_sum`, `_count`).
fn exported() -> BTreeSet<String> {
    let source = read("src/telemetry.rs");
    let module = source.split("pub mod names {").nth(1).expect("telemetry::names");
    let mut names = BTreeSet::new();
    for name in metric_names(module) {
        for suffix in ["", "_bucket", "_sum", "_count"] {
            names.insert(format!("{name}{suffix}"));
        }
    }
    names
}

#[test]
fn the_alert_rules_and_the_dashboard_use_only_exported_metrics() {
    let exported = exported();
    assert!(exported.contains("bridge_delivery_queue_depth") && exported.contains("bridge_build_info"));
    let rules = read("deploy/prometheus/alerts.yml");
    let dashboard = read("deploy/grafana/dolphin-bridge.json");
    let dashboard_json: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(dashboard_json["panels"].as_array().is_some_and(|p| p.len() >= 8), "a dashboard with panels");
    for (file, text) in [("alerts.yml", &rules), ("dolphin-bridge.json", &dashboard)] {
        let used = metric_names(text);
        assert!(!used.is_empty(), "{file} uses the bridge's metrics");
        let unknown: Vec<&String> = used.iter().filter(|n| !exported.contains(*n) && n.as_str() != "bridge_").collect();
        assert!(unknown.is_empty(), "{file} uses metrics the bridge does not export: {unknown:?}");
    }
    // The rules the operations issue asks for, by the metric each watches.
    for watched in [
        "bridge_endpoint_breakers",
        "bridge_delivery_oldest_pending_age_seconds",
        "bridge_delivery_attempts_total",
        "bridge_http_requests_total",
        "bridge_database_primary",
    ] {
        assert!(metric_names(&rules).contains(watched), "a rule on {watched}");
    }
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let path = format!("{}/deploy/prometheus/alerts.yml", env!("CARGO_MANIFEST_DIR"));
    let Ok(out) = Command::new("promtool").args(["check", "rules", &path]).output() else {
        assert!(std::env::var("CI").is_err(), "CI must have promtool (Debian package prometheus)");
        eprintln!("SKIPPED: promtool is not installed (apt-get install prometheus)");
        return;
    };
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
