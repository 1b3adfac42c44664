//! `dolphin-bridge demo`: the bridge plus simulators of both peers and live traffic, with
//! no configuration at all: a reachable PostgreSQL (DATABASE_URL, else localhost:5432), or a
//! private one started from the installed server binaries ([`embedded_db`]). Customers write in through the
//! 3Dolphins simulator, the simulated contact centre answers and closes tickets, and
//! everything flows through the real bridge and database.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;

use crate::clock::SystemClock;
use crate::config::Config;
use crate::domain::tenant::read_tenant;
use crate::domain::KeyKind;
use crate::embedded_db;
use crate::secrets::Sealer;
use crate::sim::dolphins::{self, DolphinsSim};
use crate::sim::third_party::{self, AgentPlan, ThirdPartySim};
use crate::startup::{self, StartOptions};
use crate::store::{keys, tenants};
use crate::tenancy;

/// The demo tenant's owner id.
pub const DEMO_OWNER: &str = "demo-tenant";
/// How often a simulated customer writes in.
const TRAFFIC_EVERY: Duration = Duration::from_millis(1500);

/// Keys of the demo tenant for this run.
struct DemoKeys {
    inbound: String,
    third_party: String,
    read: String,
    signing_secret: String,
}

pub async fn run(mut config: Config) -> anyhow::Result<()> {
    // With no DATABASE_URL and nothing on localhost:5432, bring a database along; it is
    // stopped and removed when this function returns (or the process ends).
    let _cluster = if !config.database_url_given && !embedded_db::answers(([127, 0, 0, 1], 5432).into()) {
        Some(embedded_db::start_for(&mut config, None).await?)
    } else {
        None
    };
    let db = startup::prepare_database(&config, true, startup::Patience::Briefly).await?;
    let pool = db.pool.clone();
    startup::check_secrets(&pool, &config).await?;
    let dolphins = DolphinsSim::start(8).await.context("starting the 3Dolphins simulator")?;
    let third_party = ThirdPartySim::start(AgentPlan::default()).await.context("starting the third-party simulator")?;
    let sealer = Sealer::new(config.secret_key);
    let keys = demo_tenant(&pool, &dolphins, &third_party, &sealer).await?;

    let app = startup::start(config, db, Arc::new(SystemClock), StartOptions::default()).await?;
    let base_url = format!("http://127.0.0.1:{}", app.address.port());
    third_party.connect(third_party::BridgeAccess {
        base_url: base_url.clone(),
        third_party_key: keys.third_party.clone(),
        signing_secret: keys.signing_secret.clone(),
    });
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let access = dolphins::BridgeAccess {
        base_url: base_url.clone(),
        inbound_token: keys.inbound.clone(),
        owner: DEMO_OWNER.into(),
    };
    let traffic = {
        let sim = dolphins.clone();
        tokio::spawn(async move { sim.run_traffic(access, TRAFFIC_EVERY, stop_rx).await })
    };
    print_banner(&app.address.to_string(), &base_url, &keys, &dolphins, &third_party);
    app.run_until_signal_then(async move {
        let _ = stop.send(true);
        let _ = traffic.await;
    })
    .await;
    Ok(())
}

/// Creates the demo tenant, or on a later run points it at this run's simulators and
/// gives it fresh keys (keys are shown only once, so the old ones are revoked).
async fn demo_tenant(
    pool: &sqlx::PgPool,
    dolphins: &DolphinsSim,
    third_party: &ThirdPartySim,
    sealer: &Sealer,
) -> anyhow::Result<DemoKeys> {
    let doc = json!({
        "owner": DEMO_OWNER,
        "name": "Demo (simulated peers)",
        "timezone": "Asia/Jakarta",
        "thirdParty": {"incomingUrl": third_party.url("/incoming"), "outgoingUrl": third_party.url("/outgoing"),
                       "commandUrl": third_party.url("/command")},
        "dolphins": {"sendMessageUrl": dolphins.url("/send"), "commandUrl": dolphins.url("/command"),
                     "apiBaseUrl": dolphins.api_base_url(), "username": "demo", "password": "demo", "useApiToken": true},
    });
    let draft = read_tenant(&doc).map_err(|p| anyhow::anyhow!("demo tenant: {p:?}"))?;
    match tenants::get(pool, DEMO_OWNER).await? {
        None => {
            let created = tenancy::create(pool, &draft, sealer).await?;
            let c = created.credentials;
            Ok(DemoKeys {
                inbound: c.inbound_token,
                third_party: c.third_party_key,
                read: c.read_key,
                signing_secret: c.signing_secret,
            })
        }
        Some(row) => {
            let settings = serde_json::to_value(&draft.settings)?;
            let mut tx = pool.begin().await?;
            tenants::update(
                &mut *tx,
                DEMO_OWNER,
                &draft.name,
                &draft.timezone,
                &settings,
                draft.dolphins_password.as_deref(),
            )
            .await?;
            tenants::undelete(&mut *tx, DEMO_OWNER).await?;
            keys::revoke_all(&mut *tx, DEMO_OWNER).await?;
            tx.commit().await?;
            let (_, inbound) = tenancy::add_key(pool, DEMO_OWNER, KeyKind::Inbound).await?;
            let (_, third_party) = tenancy::add_key(pool, DEMO_OWNER, KeyKind::ThirdParty).await?;
            let (_, read) = tenancy::add_key(pool, DEMO_OWNER, KeyKind::Read).await?;
            Ok(DemoKeys { inbound, third_party, read, signing_secret: sealer.open(&row.signing_secret)? })
        }
    }
}

fn print_banner(listen: &str, base: &str, keys: &DemoKeys, dolphins: &DolphinsSim, third_party: &ThirdPartySim) {
    println!(
        "\n  dolphin-bridge demo is running on {listen} (Ctrl-C to stop)\n\
         \n  A simulated 3Dolphins ({}) sends a customer message every {:.1} s; a simulated contact\n\
         \x20 centre ({}) answers as an agent and closes tickets after three replies.\n\
         \n  Look at it in a browser: {base}/console (sign in with the read key below, or with the\n\
         \x20 third-party key {} to also retry, cancel and replay deliveries).\n\
         \n  Or with curl (read key for tenant {DEMO_OWNER}: {}):\n\
         \x20   curl -s {base}/api/v1/tickets -H 'Authorization: Bearer {}'\n\
         \x20   curl -s {base}/api/v1/reports/summary -H 'Authorization: Bearer {}'\n\
         \x20   curl -s {base}/api/v1/deliveries -H 'Authorization: Bearer {}'\n\
         \x20   curl -s {base}/api/v1/endpoints -H 'Authorization: Bearer {}'\n\
         \x20   curl -s {base}/readyz ; curl -s {base}/metrics | grep bridge_\n\
         \n  Send one yourself, as 3Dolphins would:\n\
         \x20   curl -s '{base}/webhooks/3dolphins/incoming?token={}' -d @tests/fixtures/3dolphins/incoming-text.json\n",
        dolphins.address,
        TRAFFIC_EVERY.as_secs_f64(),
        third_party.address,
        keys.third_party,
        keys.read,
        keys.read,
        keys.read,
        keys.read,
        keys.read,
        keys.inbound,
    );
}
