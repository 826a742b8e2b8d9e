//! The command line: `livenessd <command>`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::devseq::{DevSeqConfig, DevSequencer};

/// livenessd: verifiable liveness records for an EigenLayer AVS, ordered by Zellular.
///
/// Without a command, runs a node: `livenessd --config node.toml --role operator`.
#[derive(Debug, Parser)]
#[command(
    name = "livenessd",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Log as JSON lines instead of text (also LIVENESSD_LOG_JSON=1/true/yes).
    #[arg(long, global = true, env = "LIVENESSD_LOG_JSON", action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", default_value = "false",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub log_json: bool,
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What a node does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Probe, attest, replicate, answer.
    Operator,
    /// All of that, and gather quorum proofs of state changes and post them.
    Aggregator,
}

/// Running a node.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node's configuration file (see node.toml.example).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// operator, or aggregator (operator + aggregator task).
    #[arg(long, value_enum)]
    pub role: Option<Role>,
    /// Same as --role aggregator.
    #[arg(long)]
    pub aggregator: bool,
    /// Overrides node_id.
    #[arg(long)]
    pub node_id: Option<String>,
    /// Overrides listen.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Overrides database.
    #[arg(long)]
    pub database: Option<PathBuf>,
    /// Overrides bls_key_file.
    #[arg(long)]
    pub bls_key_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the embedded, Zellular-compatible dev sequencer.
    Sequencer(SequencerArgs),
    /// Create a BLS key file (mode 0600); print its public key and proof of possession.
    Keygen(KeygenArgs),
    /// A whole local network: dev sequencer, N nodes, demo targets (Ctrl-C stops it).
    Devnet(crate::devnet::DevnetArgs),
    /// Check a proof offline — an /aggregate_downtime answer, an event, a network
    /// change, an epoch certificate (with its rows, or one row and its inclusion
    /// proof): exit 0 valid, 1 invalid (with the reason), 2 unreadable input.
    Verify(VerifyArgs),
    /// What rewards and SLAs are paid from: certified epochs, verified, exported.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Replay this node's replica offline: re-verify every event's proof under the
    /// apply rules, recompute every derived value. Exit 0 consistent, 1 not,
    /// 2 unreadable.
    Audit(AuditArgs),
    /// Create and change networks.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Copy a secret key to a private file (0600, owned by this user), as a
    /// Kubernetes init container does from a mounted Secret.
    KeyInstall(KeyInstallArgs),
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// An EigenLayer OperatorDirectedRewardsSubmission (ELIP-001) for whole,
    /// certified days: operators ascending, amounts from a curve of their uptime
    /// summing to --total, the certificate roots in the description.
    Rewards(RewardsArgs),
    /// One row per target over certified epochs: CSV, or Markdown with --markdown.
    Sla(SlaArgs),
}

#[derive(Debug, Args)]
pub struct EpochRangeArgs {
    /// The node to read certificates from (they are verified before use).
    #[arg(long, default_value = "http://127.0.0.1:7001")]
    pub node: String,
    /// First epoch of the range.
    #[arg(long)]
    pub from_epoch: i64,
    /// Last epoch of the range (default: the first).
    #[arg(long)]
    pub to_epoch: Option<i64>,
    /// A network history you trust (`GET /v1/network/history`, checked from its
    /// genesis); default: the node's own.
    #[arg(long)]
    pub network: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RewardsArgs {
    #[command(flatten)]
    pub range: EpochRangeArgs,
    /// The reward token's address.
    #[arg(long)]
    pub token: String,
    /// A strategy, as ADDRESS or ADDRESS=MULTIPLIER (default multiplier 1e18); repeatable.
    #[arg(long = "strategy", required = true)]
    pub strategies: Vec<String>,
    /// The amount to distribute, in the token's smallest unit (an integer).
    #[arg(long)]
    pub total: u128,
    /// The curve's floor: uptime at or below it earns nothing (parts per million).
    #[arg(long, default_value_t = 0)]
    pub floor_ppm: u64,
    /// The curve's exponent: weight = (uptime_ppm − floor_ppm) ^ exponent (1 to 4).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4))]
    pub exponent: u32,
}

#[derive(Debug, Args)]
pub struct SlaArgs {
    #[command(flatten)]
    pub range: EpochRangeArgs,
    /// A Markdown table instead of CSV.
    #[arg(long)]
    pub markdown: bool,
}

#[derive(Debug, Args)]
pub struct KeyInstallArgs {
    /// The key as mounted (a Secret's file; its permissions are not checked).
    #[arg(long)]
    pub from: PathBuf,
    /// Where livenessd will read it (written 0600; must not exist).
    #[arg(long)]
    pub to: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// A new network's files: per-node keys (0600) and configurations, and the
    /// shared nodes file with every key's proof of possession.
    Init(NetworkInitArgs),
    /// Approve a network change on this node (its operator's consent): the node
    /// then signs exactly this change when a proposer asks.
    Approve(ChangeArgs),
    /// Gather the approving nodes' signatures for a change (a stake quorum of the
    /// set in force), post it to Zellular and wait until this node applied it.
    Propose(ProposeArgs),
}

#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// The node's configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
    /// The change: {"network": ID, "version": N, "changes": [...]} (`-`: stdin).
    pub change: PathBuf,
}

#[derive(Debug, Args)]
pub struct ProposeArgs {
    #[command(flatten)]
    pub change: ChangeArgs,
    /// How long to wait for this node to apply the change, seconds.
    #[arg(long, default_value_t = 60)]
    pub wait: u64,
}

#[derive(Debug, Args)]
pub struct NetworkInitArgs {
    /// Number of monitoring nodes (ids node-0, node-1, ...).
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    /// Where to write the files (existing keys there are kept).
    #[arg(long)]
    pub dir: PathBuf,
    /// Each node's URL as its peers reach it; {i} is its index, {port} the base
    /// port + i. For a Kubernetes StatefulSet: http://livenessd-{i}.livenessd:7001
    #[arg(long, default_value = "http://127.0.0.1:{port}")]
    pub url_template: String,
    /// {port} of node i is this + i.
    #[arg(long, default_value_t = 7001)]
    pub base_port: u16,
    /// Each node's listen address; {i} and {port} as above.
    #[arg(long, default_value = "127.0.0.1:{port}")]
    pub listen_template: String,
    /// A target, as ADDRESS=HEALTH_URL (repeatable). Default: every node's /health.
    #[arg(long = "target", value_parser = crate::network::init::parse_target)]
    pub targets: Vec<(String, String)>,
    /// The Zellular network's operator set (SDK StaticNetwork JSON), copied beside
    /// the nodes file.
    #[arg(long, required_unless_present = "subgraph_url")]
    pub operators_file: Option<PathBuf>,
    /// Or the EigenLayer subgraph to read the operator set from (needs --gateway).
    #[arg(long)]
    pub subgraph_url: Option<String>,
    /// Zellular gateways (repeatable; default: the operator set's sockets).
    #[arg(long = "gateway")]
    pub gateways: Vec<String>,
    /// The Zellular app.
    #[arg(long, default_value = "livenessd")]
    pub app: String,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The node's configuration file (the network and the database).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Audit this database instead of the configuration's.
    #[arg(long)]
    pub database: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The proof: an /aggregate_downtime answer, an event, or a JSON list of them.
    pub file: PathBuf,
    /// The monitoring nodes, in the reference monitoring_nodes.json format
    /// (with proofs of possession; a devnet writes DIR/nodes.json): for a network
    /// that never changed.
    #[arg(long, required_unless_present = "network", conflicts_with = "network")]
    pub nodes: Option<PathBuf>,
    /// Or the network's history (`GET /v1/network/history`): checked from its
    /// genesis, then the proof under the network version it names.
    #[arg(long)]
    pub network: Option<PathBuf>,
    /// Fraction of stake that must have signed.
    #[arg(long, default_value = "2/3")]
    pub threshold: String,
    /// Accept keys that come without a proof of possession (unsafe).
    #[arg(long)]
    pub allow_without_pop: bool,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the secret key (must not exist).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct SequencerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6001")]
    pub listen: SocketAddr,
    /// Directory for the log (SQLite), the operator keys and operators.json.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// URL clients use to reach this server (written to operators.json);
    /// default http://<listen address>.
    #[arg(long)]
    pub public_url: Option<String>,
    /// Serve only these apps (repeatable); by default any app name is served.
    #[arg(long = "app")]
    pub apps: Vec<String>,
    /// Number of BN254 operator keys that finalize batches (kept in the data dir).
    #[arg(long, default_value_t = 3)]
    pub operators: usize,
    /// How many operators (the last ones) do not sign, to exercise non-signers.
    #[arg(long, default_value_t = 0)]
    pub nonsigners: usize,
    /// Stake of each operator.
    #[arg(long, default_value_t = 10)]
    pub stake: u64,
    /// Milliseconds between finalizations; 0 finalizes each batch on arrival.
    #[arg(long, default_value_t = 100)]
    pub finalize_interval_ms: u64,
    /// Largest batch accepted, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_batch_bytes: usize,
}

/// Parses the command line and runs it; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::http_client::install_crypto_provider();
    crate::telemetry::init(cli.log_json);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Sequencer(a)) => run_sequencer(a).await,
        Some(Command::Keygen(a)) => keygen(a),
        Some(Command::Devnet(a)) => crate::devnet::run(a, shutdown_token()).await,
        Some(Command::Verify(a)) => Ok(verify(a)),
        Some(Command::Audit(a)) => Ok(audit(a).await),
        Some(Command::Export(ExportCommand::Rewards(a))) => export_rewards(a).await,
        Some(Command::Export(ExportCommand::Sla(a))) => export_sla(a).await,
        Some(Command::Network(NetworkCommand::Init(a))) => network_init(a),
        Some(Command::Network(NetworkCommand::Approve(a))) => network_approve(a),
        Some(Command::Network(NetworkCommand::Propose(a))) => network_propose(a).await,
        Some(Command::KeyInstall(a)) => key_install(a),
        None if cli.node.config.is_none() && !node_env_present() => Ok(usage_hint()),
        None => run_node(cli.node).await,
    }
}

fn verify(a: VerifyArgs) -> ExitCode {
    use crate::verify::{verify_file, Verdict};
    let Some(threshold) = crate::config::Threshold::parse(&a.threshold) else {
        eprintln!(
            "unreadable: --threshold {:?} is not a fraction such as 2/3",
            a.threshold
        );
        return ExitCode::from(2);
    };
    let verdict = match (&a.network, &a.nodes) {
        (Some(h), _) => crate::verify::verify_file_with_history(&a.file, h),
        (None, Some(n)) => verify_file(&a.file, n, threshold, a.allow_without_pop),
        (None, None) => unreachable!("clap requires one"),
    };
    match verdict {
        Ok(Verdict::Valid(s)) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Ok(Verdict::Invalid(why)) => {
            println!("invalid: {why}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("unreadable: {e}");
            ExitCode::from(2)
        }
    }
}

async fn fetch_range(
    r: &EpochRangeArgs,
) -> anyhow::Result<(String, Vec<crate::export::Certified>)> {
    crate::http_client::install_crypto_provider();
    crate::export::fetch(
        &r.node,
        r.from_epoch,
        r.to_epoch.unwrap_or(r.from_epoch),
        r.network.as_deref(),
    )
    .await
}

async fn export_rewards(a: RewardsArgs) -> anyhow::Result<ExitCode> {
    use crate::export::{evm_address, Curve, RewardsSpec, StrategyAndMultiplier};
    let token = evm_address(&a.token).ok_or_else(|| {
        anyhow::anyhow!(
            "--token {:?} is not an address (0x + 40 hex digits)",
            a.token
        )
    })?;
    let mut strategies = Vec::new();
    for s in &a.strategies {
        let (addr, mult) = s.split_once('=').unwrap_or((s, "1000000000000000000"));
        let strategy = evm_address(addr)
            .ok_or_else(|| anyhow::anyhow!("--strategy {s:?}: {addr:?} is not an address"))?;
        let multiplier: u128 = mult
            .parse()
            .map_err(|_| anyhow::anyhow!("--strategy {s:?}: the multiplier must be an integer"))?;
        strategies.push(StrategyAndMultiplier {
            strategy,
            multiplier: multiplier.to_string(),
        });
    }
    let (network, epochs) = fetch_range(&a.range).await?;
    let spec = RewardsSpec {
        token,
        strategies,
        total: a.total,
        curve: Curve {
            floor_ppm: a.floor_ppm,
            exponent: a.exponent,
        },
        now: crate::clock::Clock::system().now(),
    };
    let (submission, notes) = crate::export::rewards(&network, &epochs, &spec)?;
    for n in notes {
        eprintln!("note: {n}");
    }
    eprintln!(
        "{} certified epochs of network {network} verified; {} operators paid",
        epochs.len(),
        submission.operator_rewards.len()
    );
    println!("{}", serde_json::to_string_pretty(&submission)?);
    Ok(ExitCode::SUCCESS)
}

async fn export_sla(a: SlaArgs) -> anyhow::Result<ExitCode> {
    let (network, epochs) = fetch_range(&a.range).await?;
    print!("{}", crate::export::sla(&network, &epochs, a.markdown)?);
    Ok(ExitCode::SUCCESS)
}

fn network_init(a: NetworkInitArgs) -> anyhow::Result<ExitCode> {
    let mut z = format!("[zellular]\napp = {:?}\n", a.app);
    if let Some(ops) = &a.operators_file {
        std::fs::create_dir_all(&a.dir)?;
        let dest = a.dir.join("operators.json");
        std::fs::copy(ops, &dest).map_err(|e| {
            anyhow::anyhow!(
                "--operators-file {}: {}",
                ops.display(),
                crate::os_error::reason(&e)
            )
        })?;
        z += "operators_file = \"../operators.json\"\n";
    }
    if let Some(url) = &a.subgraph_url {
        if a.gateways.is_empty() {
            anyhow::bail!("--subgraph-url needs at least one --gateway");
        }
        z += &format!("subgraph_url = {url:?}\n");
    }
    if !a.gateways.is_empty() {
        z += &format!("gateways = {:?}\n", a.gateways);
    }
    let monitors = crate::network::init::init_cli(&crate::network::init::CliSpec {
        dir: &a.dir,
        nodes: a.nodes,
        url_template: &a.url_template,
        listen_template: &a.listen_template,
        base_port: a.base_port,
        targets: &a.targets,
        tables: &z,
    })?;
    println!(
        "network of {} nodes in {}:",
        monitors.len(),
        a.dir.display()
    );
    println!(
        "  {}/nodes.json  (shared: every node reads the same file)",
        a.dir.display()
    );
    for m in &monitors {
        println!(
            "  {}/{}/  bls.key (0600), node.toml; {}  {}",
            a.dir.display(),
            m.id,
            m.url,
            &m.pubkey[..16]
        );
    }
    println!(
        "start a node: livenessd --config {}/node-0/node.toml",
        a.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Whether node settings come from the environment (a container without flags).
fn node_env_present() -> bool {
    std::env::vars_os().any(|(k, _)| {
        let k = k.to_string_lossy();
        k.starts_with("LIVENESSD_") && k != "LIVENESSD_LOG_JSON"
    })
}

/// `livenessd` alone: what to do, not a configuration error.
fn usage_hint() -> ExitCode {
    eprintln!(
        "livenessd: verifiable liveness records for an EigenLayer AVS, ordered by Zellular.

  livenessd devnet --demo                  a whole local network, with a scripted outage
  livenessd devnet                         ... kept running until Ctrl-C
  livenessd --config node.toml             run a node (node.toml.example documents every key)
  livenessd --config node.toml --role aggregator
  livenessd keygen --out bls.key           a BLS key for a new node
  livenessd --help                         every command and flag"
    );
    ExitCode::from(2)
}

fn load_for_change(
    a: &ChangeArgs,
) -> anyhow::Result<(crate::config::NodeConfig, crate::network::Proposal)> {
    let mut cfg = crate::config::NodeConfig::load(Some(&a.config), &Default::default())
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    crate::network::Genesis::resolve(&mut cfg).map_err(|e| anyhow::anyhow!("genesis: {e}"))?;
    let p = crate::network::read_proposal(&a.change)?;
    Ok((cfg, p))
}

fn network_approve(a: ChangeArgs) -> anyhow::Result<ExitCode> {
    let (cfg, p) = load_for_change(&a)?;
    if p.changes.is_empty() {
        anyhow::bail!("{}: the change changes nothing", a.change.display());
    }
    let path = crate::network::approve(&crate::network::approvals_dir(&cfg.database), &p)?;
    println!(
        "approved change {} (network version {}, {} operations) on {}: {}",
        p.hash(),
        p.version,
        p.changes.len(),
        cfg.node_id,
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn network_propose(a: ProposeArgs) -> anyhow::Result<ExitCode> {
    let (cfg, p) = load_for_change(&a.change)?;
    let signed = crate::propose::propose(&cfg, &p, std::time::Duration::from_secs(a.wait)).await?;
    println!("{}", serde_json::to_string_pretty(&signed)?);
    eprintln!("network version {} in force", p.version);
    Ok(ExitCode::SUCCESS)
}

async fn audit(a: AuditArgs) -> ExitCode {
    let cfg = match crate::config::NodeConfig::load(Some(&a.config), &Default::default()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("unreadable: configuration: {e}");
            return ExitCode::from(2);
        }
    };
    match crate::audit::audit(&cfg, a.database.as_deref()).await {
        Ok(crate::audit::Verdict::Consistent { events, digest }) => {
            println!("consistent: {events} events, each proof verified and each rule held; events digest {digest}");
            ExitCode::SUCCESS
        }
        Ok(crate::audit::Verdict::Inconsistent(why)) => {
            println!("inconsistent: {why}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("unreadable: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn key_install(a: KeyInstallArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&a.from)
        .map_err(|e| anyhow::anyhow!("{}: {}", a.from.display(), crate::os_error::reason(&e)))?;
    // Refuse to install something that is not a key.
    crate::crypto::bls::SecretKey::from_hex(text.trim()).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a 32-byte hex BLS secret key: {e}",
            a.from.display()
        )
    })?;
    crate::keyfile::write_secret(&a.to, &(text.trim().to_owned() + "\n"))?;
    Ok(ExitCode::SUCCESS)
}

fn keygen(a: KeygenArgs) -> anyhow::Result<ExitCode> {
    let sk = crate::crypto::bls::SecretKey::generate();
    crate::keyfile::write_secret(&a.out, &(sk.to_hex() + "\n"))?;
    let out = serde_json::json!({
        "key_file": a.out.display().to_string(),
        "pubkey": sk.public_key().to_hex(),
        "pop": sk.prove_possession().to_hex(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

async fn run_node(a: NodeArgs) -> anyhow::Result<ExitCode> {
    let overrides = crate::config::CliOverrides {
        node_id: a.node_id,
        listen: a.listen,
        database: a.database,
        bls_key_file: a.bls_key_file,
        aggregator: (a.aggregator || a.role == Some(Role::Aggregator)).then_some(true),
    };
    let cfg = crate::config::NodeConfig::load(a.config.as_deref(), &overrides)
        .context("configuration")?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("listen {}: {}", cfg.listen, crate::os_error::reason(&e)))?;
    let node = crate::node::Node::open(cfg).await?;
    node.run(listener, shutdown_token()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Cancelled on SIGINT or SIGTERM.
pub fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        t.cancel();
    });
    token
}

async fn run_sequencer(a: SequencerArgs) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .map_err(|e| anyhow::anyhow!("--listen {}: {}", a.listen, crate::os_error::reason(&e)))?;
    let addr = listener.local_addr()?;
    let mut cfg = DevSeqConfig::new(
        &a.data_dir,
        a.public_url.unwrap_or_else(|| format!("http://{addr}")),
    );
    cfg.apps = a.apps;
    cfg.operators = a.operators;
    cfg.nonsigners = a.nonsigners;
    cfg.stake = a.stake;
    cfg.finalize_interval = Duration::from_millis(a.finalize_interval_ms);
    cfg.max_batch_bytes = a.max_batch_bytes;
    let seq = DevSequencer::open(cfg)
        .await
        .context("cannot start the dev sequencer")?;
    tracing::info!(
        listen = %addr,
        operators = %seq.operators_file().display(),
        "dev sequencer ready"
    );
    seq.serve(listener, shutdown_token()).await?;
    Ok(ExitCode::SUCCESS)
}
