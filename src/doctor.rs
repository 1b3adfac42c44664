//! `dolphin-bridge doctor`: a readable check of the configuration, the database, the
//! migrations, the stored secrets and every tenant's endpoints, for the operator who wants
//! to know before going live (or at 2 a.m.) what is wrong. Each result is printed as soon as
//! it is known; the endpoints are probed all at once (5 s each at most), so a report over
//! many tenants takes seconds, not minutes. Exit code 1 when anything is wrong.

use std::time::{Duration, Instant};

use crate::config::{redact_url, Config};
use crate::domain::tenant::TenantSettings;
use crate::domain::Target;
use crate::secrets::Sealer;
use crate::store::{self, integrity, tenants};
use crate::tenancy;

/// One line per host of a database URL: what it is now (primary, standby, unreachable).
async fn hosts(topology: &store::topology::Topology, what: &str) -> Vec<Check> {
    topology
        .survey()
        .await
        .into_iter()
        .map(|probe| match probe.outcome {
            Ok((role, lag)) if role.in_recovery => {
                ok(what, format!("{}: {role}, replay {lag:.1} s behind", probe.host.label))
            }
            Ok((role, _)) => ok(what, format!("{}: {role}", probe.host.label)),
            Err(e) => Check { ok: false, what: what.into(), detail: format!("{}: {e}", probe.host.label) },
        })
        .collect()
}

/// One line of the report.
struct Check {
    ok: bool,
    what: String,
    detail: String,
}

/// The report: each check printed the moment it is known; whether all passed.
struct Report {
    all_ok: bool,
}

/// The width of the check names in the report's first column.
const NAME_WIDTH: usize = 36;

impl Report {
    fn add(&mut self, c: Check) {
        println!("{} {:NAME_WIDTH$}  {}", if c.ok { "ok  " } else { "FAIL" }, c.what, c.detail);
        self.all_ok &= c.ok;
    }

    fn extend(&mut self, checks: impl IntoIterator<Item = Check>) {
        checks.into_iter().for_each(|c| self.add(c));
    }
}

pub async fn run(config: &Config) -> anyhow::Result<bool> {
    let mut checks = Report { all_ok: true };
    checks.add(Check {
        ok: true,
        what: "configuration".into(),
        detail: format!(
            "listen {}, {} workers, retry schedule of {} delays, delivery timeout {:?}, lease {:?}",
            config.listen,
            config.workers,
            config.retry_schedule.len(),
            config.delivery_timeout,
            config.lease
        ),
    });
    if config.admin_token.is_none() {
        checks.add(warn("admin API", "BRIDGE_ADMIN_TOKEN is not set: the admin API answers 403"));
    }
    if config.secret_key.is_none() {
        checks.add(warn("secret key", "BRIDGE_SECRET_KEY is not set: peer secrets are stored in the clear"));
    }
    let db = store::Database::lazy(&config.database_url, 2).map_err(anyhow::Error::msg)?;
    if db.topology.follows_failovers() {
        checks.extend(hosts(&db.topology, "database host").await);
        if let Some(url) = &config.read_database_url {
            let reads =
                store::topology::Topology::new("BRIDGE_READ_DATABASE_URL", url, false).map_err(anyhow::Error::msg)?;
            checks.extend(hosts(&reads, "read host").await);
        }
        if let Err(why) = db.topology.find().await {
            checks.add(Check {
                ok: false,
                what: "database".into(),
                detail: format!("no host fits target_session_attrs={}: {why}", db.topology.attrs().as_str()),
            });
            return Ok(checks.all_ok);
        }
    }
    let pool = db.pool;
    let version = store::schema::server_version(&pool).await;
    match version {
        Err(e) => {
            checks.add(Check {
                ok: false,
                what: "database".into(),
                detail: format!("{}: {e}", redact_url(&config.database_url)),
            });
            return Ok(checks.all_ok);
        }
        Ok(v) => checks.add(ok("database", format!("PostgreSQL {v} at {}", redact_url(&config.database_url)))),
    }
    let expected = store::schema::migrations_expected();
    let applied = store::schema::migrations_applied(&pool).await.unwrap_or(0);
    checks.add(Check {
        ok: applied >= expected,
        what: "migrations".into(),
        detail: format!(
            "{applied} of {expected} applied{}",
            if applied < expected { " (run `dolphin-bridge migrate`)" } else { "" }
        ),
    });
    if applied < expected {
        return Ok(checks.all_ok);
    }
    match tenancy::check_secrets(&pool, &Sealer::new(config.secret_key)).await {
        Ok(0) => checks.add(ok("secrets", "every stored peer secret opens".into())),
        Ok(n) if config.secret_key.is_some() => {
            checks.add(warn("secrets", &format!("{n} still in the clear: run `dolphin-bridge encrypt-secrets`")))
        }
        Ok(n) => checks.add(ok("secrets", format!("{n} stored in the clear (no key set)"))),
        Err(e) => checks.add(Check { ok: false, what: "secrets".into(), detail: e.to_string() }),
    }
    match integrity::orphans(&pool).await {
        Ok(o) if o.total() == 0 => checks.add(ok("integrity", "every message, event, delivery and attempt has its parent".into())),
        Ok(o) => checks.add(Check {
            ok: false,
            what: "integrity".into(),
            detail: format!(
                "rows without their parent: {} messages, {} ticket events, {} deliveries (no ticket), {} attempts (no delivery)",
                o.messages, o.ticket_events, o.deliveries, o.delivery_attempts
            ),
        }),
        Err(e) => checks.add(Check { ok: false, what: "integrity".into(), detail: e.to_string() }),
    }
    // Every endpoint at once (each within 5 s), printed as each answers.
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let mut probes = futures::stream::FuturesUnordered::new();
    for row in tenants::list(&pool).await?.into_iter().filter(|t| t.deleted_at.is_none()) {
        let settings: TenantSettings = serde_json::from_value(row.settings).unwrap_or_default();
        for target in Target::ALL {
            if let Some(url) = settings.url_for(*target) {
                probes.push(reach(client.clone(), format!("{} {target}", row.owner), url.to_string()));
            }
        }
    }
    while let Some(check) = futures::StreamExt::next(&mut probes).await {
        checks.add(check);
    }
    pool.close().await;
    Ok(checks.all_ok)
}

fn ok(what: &str, detail: String) -> Check {
    Check { ok: true, what: what.into(), detail }
}

/// Not an error, but worth knowing.
fn warn(what: &str, detail: &str) -> Check {
    Check { ok: true, what: what.into(), detail: format!("warning: {detail}") }
}

/// Any HTTP answer means the endpoint is reachable (TLS included); only transport errors fail.
async fn reach(client: reqwest::Client, what: String, url: String) -> Check {
    let started = Instant::now();
    match client.head(&url).timeout(Duration::from_secs(5)).send().await {
        Ok(r) => {
            ok(&what, format!("{url} answered HTTP {} in {} ms", r.status().as_u16(), started.elapsed().as_millis()))
        }
        Err(e) => {
            let mut detail = format!("{url} unreachable");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                detail.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            Check { ok: false, what, detail }
        }
    }
}
