//! `dolphin-bridge sim dolphins|third-party`: each simulator alone, against any bridge, for
//! integrators who test their own side (their contact centre against a real bridge fed by a
//! simulated 3Dolphins, or their 3Dolphins setup against a simulated contact centre). Each
//! prints one line per thing it does until Ctrl-C or SIGTERM; a delivery whose signature does
//! not verify is refused with 401 and logged as a warning.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::dolphins::{self, DolphinsSim};
use super::third_party::{self, AgentPlan, ThirdPartySim};

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Run the 3Dolphins simulator: it sends customers' Incoming Events to a bridge and
    /// serves the 3Dolphins APIs the bridge calls (auth, conversation history, contacts).
    #[command(after_help = DOLPHINS_EXAMPLE)]
    Dolphins(DolphinsArgs),
    /// Run the contact-centre simulator: it receives the bridge's deliveries, checks their
    /// Standard Webhooks signatures, and (given --bridge and --key) answers as an agent and
    /// closes tickets.
    #[command(name = "third-party", after_help = THIRD_PARTY_EXAMPLE)]
    ThirdParty(ThirdPartyArgs),
}

const DOLPHINS_EXAMPLE: &str = "Example (a bridge on :8080 with a tenant whose dolphins URLs point here):
  dolphin-bridge sim dolphins --bridge http://127.0.0.1:8080 --token dbin_… --owner my-tenant \\
      --rate 2 --listen 127.0.0.1:9001
  # tenant: dolphins.sendMessageUrl=http://127.0.0.1:9001/send, dolphins.commandUrl=http://127.0.0.1:9001/command,
  #         dolphins.apiBaseUrl=http://127.0.0.1:9001/dolphin/apiv1 (any username and password)";

const THIRD_PARTY_EXAMPLE: &str = "Example (a tenant whose thirdParty.incomingUrl is http://127.0.0.1:9002/incoming):
  dolphin-bridge sim third-party --listen 127.0.0.1:9002 --secret whsec_… \\
      --bridge http://127.0.0.1:8080 --key dbtp_…
  # --secret: the tenant's signing secret; without --bridge and --key it only receives and checks";

#[derive(Debug, Args)]
pub struct DolphinsArgs {
    /// The bridge's base URL.
    #[arg(long, value_name = "URL")]
    bridge: String,
    /// The tenant's inbound token (sent as `?token=`, as 3Dolphins does).
    #[arg(long, value_name = "T")]
    token: String,
    /// The tenant's owner id (the events' `owner`).
    #[arg(long, value_name = "ID")]
    owner: String,
    /// Incoming Events per second.
    #[arg(long, value_name = "R", default_value_t = 1.0)]
    rate: f64,
    /// Where the simulated 3Dolphins listens for replies, closes and API calls.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Simulated customers writing in.
    #[arg(long, default_value_t = 8)]
    customers: usize,
}

#[derive(Debug, Args)]
pub struct ThirdPartyArgs {
    /// Where the simulated contact centre listens for deliveries.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// The tenant's signing secret: deliveries whose signature does not verify get 401.
    #[arg(long, value_name = "whsec_…")]
    secret: String,
    /// The bridge's base URL, to answer as an agent (with --key).
    #[arg(long, value_name = "URL", requires = "key")]
    bridge: Option<String>,
    /// The tenant's third-party key (with --bridge).
    #[arg(long, value_name = "K", requires = "bridge")]
    key: Option<String>,
}

pub async fn run(command: SimCommand) -> anyhow::Result<()> {
    match command {
        SimCommand::Dolphins(args) => run_dolphins(args).await,
        SimCommand::ThirdParty(args) => run_third_party(args).await,
    }
}

async fn run_dolphins(args: DolphinsArgs) -> anyhow::Result<()> {
    if !(args.rate > 0.0 && args.rate <= 1000.0) {
        anyhow::bail!("--rate must be more than 0 and at most 1000 events per second");
    }
    let sim = DolphinsSim::start_on(args.customers.max(1), args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    println!(
        "3Dolphins simulator on http://{}: {} Incoming Events/s to {} for owner {}",
        sim.address, args.rate, args.bridge, args.owner
    );
    println!(
        "  point the tenant here: dolphins.sendMessageUrl={} dolphins.commandUrl={} dolphins.apiBaseUrl={}",
        sim.url("/send"),
        sim.url("/command"),
        sim.api_base_url()
    );
    let bridge = dolphins::BridgeAccess {
        base_url: args.bridge.trim_end_matches('/').to_string(),
        inbound_token: args.token,
        owner: args.owner,
    };
    let mut seen = 0;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    let mut stop = std::pin::pin!(crate::startup::wait_for_signal());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => return Ok(()),
        }
        match sim.emit_incoming(&bridge).await {
            Ok((event, status)) => println!(
                "sent Incoming Event ticket={} type={} → {status}",
                event["ticketNumber"].as_str().unwrap_or(""),
                event["messageType"].as_str().unwrap_or("")
            ),
            Err(e) => println!("could not reach the bridge: {e}"),
        }
        let got = sim.got();
        for (path, body) in got.iter().skip(seen) {
            println!("received {path} ticket={}", body["ticketNumber"].as_str().unwrap_or(""));
        }
        seen = got.len();
    }
}

async fn run_third_party(args: ThirdPartyArgs) -> anyhow::Result<()> {
    let answers = args.bridge.is_some();
    let plan = if answers { AgentPlan::default() } else { AgentPlan { reply_chance: 0.0, ..AgentPlan::default() } };
    let sim =
        ThirdPartySim::start_on(plan, args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    sim.connect(third_party::BridgeAccess {
        base_url: args.bridge.as_deref().unwrap_or("").trim_end_matches('/').to_string(),
        third_party_key: args.key.unwrap_or_default(),
        signing_secret: args.secret,
    });
    println!(
        "contact-centre simulator on http://{}: checks signatures{}",
        sim.address,
        if answers { ", answers as an agent and closes tickets after three replies" } else { "" }
    );
    println!(
        "  point the tenant here: thirdParty.incomingUrl={} thirdParty.outgoingUrl={} thirdParty.commandUrl={}",
        sim.url("/incoming"),
        sim.url("/outgoing"),
        sim.url("/command")
    );
    let mut seen = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut stop = std::pin::pin!(crate::startup::wait_for_signal());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => return Ok(()),
        }
        let got = sim.got();
        for g in got.iter().skip(seen) {
            println!("received {} ticket={} (signature ok)", g.path, g.body["ticketNumber"].as_str().unwrap_or(""));
        }
        seen = got.len();
    }
}
