//! The command line (README *Command line*): `serve`, `migrate`, `demo`, `tenant add`,
//! `tenant list`, `doctor`, `encrypt-secrets`, `healthcheck`, `sim dolphins|third-party`.

use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use crate::clock::SystemClock;
use crate::config::Config;
use crate::domain::tenant::read_tenant;
use crate::secrets::Sealer;
use crate::startup::{self, Patience, StartOptions};
use crate::store::tenants;
use crate::tenancy;

#[derive(Debug, Parser)]
#[command(name = "dolphin-bridge", version, about = "Relay between 3Dolphins and a third-party contact-center system")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub settings: crate::config::Settings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API and run the delivery workers.
    Serve {
        /// Do not apply migrations at start.
        #[arg(long)]
        no_migrate: bool,
        /// Run a private PostgreSQL kept in DIR (created on first use) from the installed
        /// server binaries, instead of connecting to DATABASE_URL.
        #[arg(long, value_name = "DIR")]
        embedded_db: Option<std::path::PathBuf>,
    },
    /// Apply the database migrations and exit.
    Migrate,
    /// Serve with simulated 3Dolphins and third-party peers and live traffic.
    Demo,
    /// Seal the peer secrets still stored in the clear with BRIDGE_SECRET_KEY.
    EncryptSecrets,
    /// Check configuration, database, migrations, secrets and every tenant's endpoints.
    Doctor,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Ask a running bridge whether it is ready (GET /readyz): exit 0 if it is, 1 if not or
    /// no answer within 5 s. For container healthchecks (the image has no shell).
    Healthcheck {
        /// The readiness URL; default `/readyz` on BRIDGE_LISTEN's port of this host.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Run one peer's simulator alone against any bridge (to test your own side).
    #[command(subcommand)]
    Sim(crate::sim::standalone::SimCommand),
    /// Manage the report rollups.
    #[command(subcommand)]
    Rollups(RollupsCommand),
}

#[derive(Debug, Subcommand)]
pub enum RollupsCommand {
    /// Forget the report rollups and build them again from the raw rows (every tenant, or
    /// one). Reports stay exact meanwhile: what is not rolled up yet is read raw.
    Rebuild {
        /// Only this tenant.
        #[arg(long, value_name = "ID")]
        owner: Option<String>,
    },
    /// Compare the summary the API answers (rollups and raw rows) with the same figures
    /// computed straight from the raw rows, over the last DAYS days: exit 1 on any
    /// difference (counts exact, percentiles within 1 %).
    Verify {
        /// Only this tenant.
        #[arg(long, value_name = "ID")]
        owner: Option<String>,
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print its credentials (shown this once).
    Add(TenantAdd),
    /// List tenants and their endpoints (no secrets).
    List,
}

#[derive(Debug, Args)]
pub struct TenantAdd {
    /// The 3Dolphins owner (tenant id).
    #[arg(long)]
    owner: String,
    /// Where the third party receives Incoming Events.
    #[arg(long)]
    third_party_url: String,
    /// Where the third party receives Outgoing Events from 3Dolphins (mirrored replies).
    #[arg(long)]
    third_party_outgoing_url: Option<String>,
    /// Where the third party receives Command Events from 3Dolphins.
    #[arg(long)]
    third_party_command_url: Option<String>,
    #[arg(long)]
    name: Option<String>,
    /// IANA timezone used to read 3Dolphins' zone-less createdDate.
    #[arg(long)]
    timezone: Option<String>,
    /// Where 3Dolphins receives agent replies (Outgoing Events).
    #[arg(long)]
    dolphins_url: Option<String>,
    /// Where 3Dolphins receives Command Events (close).
    #[arg(long)]
    dolphins_command_url: Option<String>,
    /// Print the admin API's JSON reply instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs a command; errors are printed by `main` on one line.
pub async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { no_migrate, embedded_db } => {
            let mut config = config;
            // Held until `serve` returns: dropping it stops the server.
            let _cluster = match embedded_db {
                Some(dir) => Some(crate::embedded_db::start_for(&mut config, Some(dir)).await?),
                None => None,
            };
            if config.admin_token.is_none() {
                tracing::warn!(
                    "BRIDGE_ADMIN_TOKEN is not set: the admin API is disabled (use `dolphin-bridge tenant add`)"
                );
            }
            // Listen at once: while no database host fits, /readyz answers 503 and every
            // request `503 unavailable`, and the process keeps trying (never a crash loop).
            let listener = startup::bind(&config)?;
            let waiting = startup::WaitingServer::start(&listener, &config)?;
            let db = startup::prepare_database(&config, !no_migrate, Patience::Forever).await?;
            waiting.stop().await;
            startup::check_secrets(&db.pool, &config).await?;
            let options = StartOptions { listener: Some(listener), ..StartOptions::default() };
            let app = startup::start(config, db, Arc::new(SystemClock), options).await?;
            app.run_until_signal().await;
        }
        Command::Demo => crate::demo::run(config).await?,
        Command::Sim(command) => crate::sim::standalone::run(command).await?,
        Command::Healthcheck { url } => {
            let url = url.unwrap_or_else(|| format!("http://127.0.0.1:{}/readyz", config.listen.port()));
            healthcheck(&url).await?;
        }
        Command::Doctor => {
            if !crate::doctor::run(&config).await? {
                anyhow::bail!("doctor found problems (see above)");
            }
        }
        Command::EncryptSecrets => {
            if config.secret_key.is_none() {
                anyhow::bail!("set BRIDGE_SECRET_KEY (32 bytes, base64) first");
            }
            let pool = startup::prepare_database(&config, true, Patience::Briefly).await?.pool;
            let sealer = Sealer::new(config.secret_key);
            tenancy::check_secrets(&pool, &sealer).await?;
            let sealed = tenancy::seal_clear_secrets(&pool, &sealer).await?;
            println!("sealed {sealed} secret(s) that were stored in the clear");
        }
        Command::Migrate => {
            let pool = startup::prepare_database(&config, true, Patience::Briefly).await?.pool;
            println!("migrations applied to {}", crate::config::redact_url(&config.database_url));
            pool.close().await;
        }
        Command::Tenant(TenantCommand::Add(args)) => {
            let pool = startup::prepare_database(&config, true, Patience::Briefly).await?.pool;
            let created = tenancy::create(&pool, &draft_from_args(&args)?, &Sealer::new(config.secret_key)).await?;
            print_created(&created, args.json);
        }
        Command::Rollups(RollupsCommand::Rebuild { owner }) => {
            let pool = startup::prepare_database(&config, true, Patience::Briefly).await?.pool;
            let owners = match owner {
                Some(owner) => vec![owner],
                None => tenants::list(&pool).await?.into_iter().map(|t| t.owner).collect(),
            };
            for owner in owners {
                let started = std::time::Instant::now();
                let pass = crate::rollup_task::rebuild(&pool, &owner, chrono::Utc::now())
                    .await
                    .with_context(|| format!("rebuilding the rollups of {owner}"))?;
                println!(
                    "{owner}: {} quarter hours rolled up in {} steps, {:.1} s",
                    pass.quarters,
                    pass.steps,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Command::Rollups(RollupsCommand::Verify { owner, days }) => {
            let pool = startup::prepare_database(&config, true, Patience::Briefly).await?.pool;
            let owners = match owner {
                Some(owner) => vec![owner],
                None => tenants::list(&pool).await?.into_iter().map(|t| t.owner).collect(),
            };
            let to = chrono::Utc::now();
            let from = to - chrono::Duration::days(i64::from(days));
            let mut differing = 0;
            for owner in owners {
                let found = crate::reports::verify::differences(&pool, &owner, from, to)
                    .await
                    .with_context(|| format!("verifying the rollups of {owner}"))?;
                if found.is_empty() {
                    println!("{owner}: the rollups agree with the raw rows over the last {days} days");
                }
                for difference in &found {
                    println!("{owner}: {difference}");
                }
                differing += usize::from(!found.is_empty());
            }
            if differing > 0 {
                anyhow::bail!(
                    "the rollups of {differing} tenant(s) differ: `dolphin-bridge rollups rebuild` rebuilds them"
                );
            }
        }
        Command::Tenant(TenantCommand::List) => {
            let pool = startup::prepare_database(&config, true, Patience::Briefly).await?.pool;
            let rows = tenants::list(&pool).await.context("listing tenants")?;
            if rows.is_empty() {
                println!("no tenants yet: add one with `dolphin-bridge tenant add --owner ID --third-party-url URL`");
            }
            for row in &rows {
                let view = tenancy::view(row);
                let (tp, d) = (&view.third_party, &view.dolphins.settings);
                let state = if row.deleted_at.is_some() { " (deleted)" } else { "" };
                println!("{}{state}  name={:?} timezone={}", row.owner, row.name, row.timezone);
                for (label, value) in [
                    ("third party incoming", Some(&tp.incoming_url)),
                    ("third party outgoing", tp.outgoing_url.as_ref()),
                    ("third party command ", tp.command_url.as_ref()),
                    ("3Dolphins message   ", d.send_message_url.as_ref()),
                    ("3Dolphins command   ", d.command_url.as_ref()),
                ] {
                    println!("  {label}  {}", value.map_or("-", String::as_str));
                }
            }
        }
    }
    Ok(())
}

fn draft_from_args(args: &TenantAdd) -> anyhow::Result<crate::domain::tenant::TenantDraft> {
    let mut doc = json!({
        "owner": args.owner,
        "thirdParty": {"incomingUrl": args.third_party_url},
    });
    let mut set = |path: [&str; 2], value: &Option<String>| {
        if let Some(v) = value {
            doc[path[0]][path[1]] = Value::String(v.clone());
        }
    };
    set(["thirdParty", "outgoingUrl"], &args.third_party_outgoing_url);
    set(["thirdParty", "commandUrl"], &args.third_party_command_url);
    set(["dolphins", "sendMessageUrl"], &args.dolphins_url);
    set(["dolphins", "commandUrl"], &args.dolphins_command_url);
    if let Some(name) = &args.name {
        doc["name"] = json!(name);
    }
    if let Some(tz) = &args.timezone {
        doc["timezone"] = json!(tz);
    }
    read_tenant(&doc).map_err(|problems| {
        let listed: Vec<String> = problems.iter().map(|p| format!("{} {}", p.field, p.problem)).collect();
        anyhow::anyhow!("invalid tenant: {}", listed.join("; "))
    })
}

/// `GET url` within 5 s: `Ok` on a 2xx, else an error saying what came back.
async fn healthcheck(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build()?;
    let response = client.get(url).send().await.with_context(|| format!("no answer from {url}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("not ready ({status}): {}", body.trim());
    }
    println!("ready: {}", body.trim());
    Ok(())
}

fn print_created(created: &tenancy::TenantCreatedOut, as_json: bool) {
    if as_json {
        println!("{}", serde_json::to_string_pretty(created).unwrap_or_default());
        return;
    }
    let created = serde_json::to_value(created).unwrap_or_default();
    let c = &created["credentials"];
    println!("tenant {} created. These secrets are shown only now:", created["owner"].as_str().unwrap_or(""));
    for (label, key) in [
        ("inbound token (3Dolphins → ?token=)", "inboundToken"),
        ("third-party key (Bearer)           ", "thirdPartyKey"),
        ("read key (Bearer, /api/v1)         ", "readKey"),
        ("signing secret (webhook-signature) ", "signingSecret"),
    ] {
        println!("  {label}  {}", c[key].as_str().unwrap_or(""));
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// clap's own consistency checks over every subcommand: a setting's flag that clashes
    /// with a subcommand's own (`sim --listen` once did) fails here, not at a user's start.
    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
