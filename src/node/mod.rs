//! A node: its shared context, and the wiring of its tasks — prober, replicator,
//! HTTP API and (optionally) aggregator — under one cancellation token. A critical
//! task that ends on its own stops the node with a reason.
//!
//! Data flows one way: probe → attest → sequence → replicate → answer. Every
//! service takes the [`NodeContext`] (in [`context`], which depends on no service);
//! `http` is a thin adapter over it that nothing else imports.

pub mod context;

pub use context::{NodeContext, Settings};

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::aggregator::Aggregator;
use crate::answers::Answers;
use crate::clock::Clock;
use crate::config::NodeConfig;
use crate::freshness::ReplicaStatus;
use crate::network::{canonical, Genesis, NetworkHandle, NetworkState, SignedChange};
use crate::peers::Peers;
use crate::prober::Prober;
use crate::replicator::{ApplyWindow, Replicator};
use crate::signer::Signer;
use crate::store::node::ReplicaStore;
use crate::zellular::operators::Subgraph;
use crate::zellular::{Client, ClientConfig, OperatorSet, OperatorSource};

/// A node ready to run (everything opened and checked).
pub struct Node {
    cfg: NodeConfig,
    ctx: NodeContext,
    replicator: Replicator,
    client: Client,
    /// Applied events, announced to the stats and the webhooks.
    applied: tokio::sync::broadcast::Sender<crate::stats::AppliedEvent>,
    roots: crate::http_client::Roots,
}

/// How often every target's figures are recomputed (a target's own are after each
/// of its changes): uptime ratios move slowly.
const STATS_EVERY: Duration = Duration::from_secs(60);

/// The sequencer's operator set and the gateways to use, from the config. Without
/// configured gateways, the operators' sockets are used, the sequencer's last (as
/// the SDK does, it is asked to order batches, not to serve them).
pub async fn zellular_client(cfg: &NodeConfig) -> anyhow::Result<(Client, OperatorSource)> {
    let z = &cfg.zellular;
    let roots = crate::http_client::Roots::from_files(&cfg.tls.ca_files).context("tls.ca_files")?;
    let (source, sockets) = match (&z.operators_file, &z.subgraph_url) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                anyhow!(
                    "zellular.operators_file {}: {}",
                    path.display(),
                    crate::os_error::reason(&e)
                )
            })?;
            let set = OperatorSet::from_json(&text, z.threshold_percent)
                .with_context(|| format!("zellular.operators_file {}", path.display()))?;
            let sockets: Vec<String> = set
                .operators()
                .iter()
                .map(|o| o.socket.clone())
                .filter(|s| !s.is_empty())
                .collect();
            (OperatorSource::Static(Arc::new(set)), sockets)
        }
        (None, Some(url)) => (
            OperatorSource::Subgraph(Arc::new(
                Subgraph::new(url.clone(), z.threshold_percent).with_roots(&roots),
            )),
            Vec::new(),
        ),
        (None, None) => bail!("zellular: no operator set configured"),
    };
    let mut gateways = if z.gateways.is_empty() {
        sequencer_last(sockets, &roots).await
    } else {
        z.gateways.clone()
    };
    gateways.dedup();
    if gateways.is_empty() {
        bail!("zellular.gateways: none configured and the operator set lists no sockets");
    }
    let mut cc = ClientConfig::new(z.app.clone(), gateways);
    cc.request_timeout = Duration::from_millis(z.request_timeout_ms);
    cc.poll_max = Duration::from_millis(z.poll_max_ms);
    cc.roots = roots;
    Ok((Client::new(cc), source))
}

impl Node {
    /// Opens and checks everything with the system clock.
    pub async fn open(cfg: NodeConfig) -> anyhow::Result<Node> {
        Self::open_with_clock(cfg, Clock::system()).await
    }

    /// Opens and checks everything; fails with one message naming what is wrong.
    pub async fn open_with_clock(mut cfg: NodeConfig, clock: Clock) -> anyhow::Result<Node> {
        let signer = Signer::from_file(&cfg.bls_key_file).context("bls_key_file")?;
        let genesis = Genesis::resolve(&mut cfg).map_err(|e| match &cfg.genesis_file {
            Some(p) => anyhow!("genesis_file {}: {e}", p.display()),
            None => anyhow!("monitoring_nodes: {e}"),
        })?;
        let genesis_state =
            NetworkState::genesis(&genesis).map_err(|e| match &cfg.genesis_file {
                Some(p) => anyhow!("genesis_file {}: {e}", p.display()),
                None => anyhow!("monitoring_nodes: {e}"),
            })?;
        if cfg.genesis_file.is_none() && genesis_state.monitors.get(&cfg.node_id).is_none() {
            bail!("node_id {} is not a monitoring node", cfg.node_id);
        }
        // (Its errors name the file.)
        let store = ReplicaStore::open(&cfg.database)
            .await
            .map_err(|e| anyhow!("database: {e}"))?;
        // A replica edited behind the node's back is refused, naming the first bad row.
        let started = Instant::now();
        match store.check_integrity().await {
            Ok(Ok(n)) => tracing::info!(
                events = n,
                took_ms = started.elapsed().as_millis() as u64,
                "replica integrity checked"
            ),
            Ok(Err(bad)) => bail!(
                "database {}: the replica fails its integrity check: {bad}. Run `livenessd audit` \
                 for a full report; to rebuild it from the sequencer, move the file away",
                cfg.database.display()
            ),
            Err(e) => bail!("database {}: {e}", cfg.database.display()),
        }
        // The replica belongs to one network; its changes are replayed (and their
        // proofs checked again) to find the version in force.
        let network_id = genesis_state.id.clone();
        if let Err(m) = store
            .bind_network(&network_id, &canonical(&genesis))
            .await
            .map_err(|e| anyhow!("database {}: {e}", cfg.database.display()))?
        {
            bail!("database {}: {m}", cfg.database.display());
        }
        let mut net = genesis_state;
        for c in store
            .changes()
            .await
            .map_err(|e| anyhow!("database {}: {e}", cfg.database.display()))?
        {
            let change: SignedChange = serde_json::from_str(&c.change).map_err(|e| {
                anyhow!(
                    "database {}: network change {}: {e}",
                    cfg.database.display(),
                    c.version
                )
            })?;
            net = net.next(&change).map_err(|e| {
                anyhow!(
                    "database {}: the stored change to version {} does not apply: {e}; \
                     move the file away to rebuild the replica from the sequencer",
                    cfg.database.display(),
                    c.version
                )
            })?;
        }
        if let Some(me) = net.monitors.get(&cfg.node_id) {
            if me.public_key != *signer.public_key() {
                bail!(
                    "bls_key_file {} holds the key {}, but monitoring node {} is configured with {}",
                    cfg.bls_key_file.display(),
                    signer.public_key(),
                    cfg.node_id,
                    me.public_key
                );
            }
        } else {
            tracing::warn!(node = %cfg.node_id, version = net.version,
                "this node is not a monitoring node of the network in force: it replicates and \
                 answers, and signs nothing until a network change adds it");
        }
        let url = net
            .monitors
            .get(&cfg.node_id)
            .map(|m| m.url.clone())
            .unwrap_or_else(|| format!("http://{}", cfg.listen));
        tracing::info!(network = %net.id, name = %net.name, version = net.version,
            nodes = net.monitors.nodes().len(), targets = net.definition.targets.len(), "network");
        crate::metrics::network_version(net.version);
        let last_certified = store
            .last_certified()
            .await
            .map_err(|e| anyhow!("database {}: {e}", cfg.database.display()))?;
        crate::metrics::last_certified_epoch(last_certified);
        if let Some(n) = last_certified {
            if let Ok(Some(c)) = store.certificate(n).await {
                crate::replicator::publish_scores(c.rows.as_deref().unwrap_or("[]"));
            }
        }
        let targets = net.definition.targets.clone();
        let network = NetworkHandle::new(net);
        let roots =
            crate::http_client::Roots::from_files(&cfg.tls.ca_files).context("tls.ca_files")?;
        let (client, operators) = zellular_client(&cfg).await?;
        check_app(&client, &operators).await?;
        let status = ReplicaStatus::new(
            clock.clone(),
            cfg.freshness.bound_secs(),
            cfg.settlement.max_event_age_secs as i64,
        );
        let window = ApplyWindow {
            max_event_age: cfg.settlement.max_event_age_secs as i64,
            max_clock_drift: cfg.settlement.max_clock_drift_secs as i64,
        };
        let (applied, _) = tokio::sync::broadcast::channel(4_096);
        let replicator = Replicator::new(
            store.clone(),
            network.clone(),
            window,
            client.clone(),
            operators,
            status.clone(),
        )
        .await
        .with_context(|| format!("database {}", cfg.database.display()))?
        .with_epochs(cfg.epoch.clone())
        .announce_to(applied.clone());
        let ctx = NodeContext {
            node_id: cfg.node_id.as_str().into(),
            prober: Prober::new(&targets, cfg.probe.clone(), clock.clone(), &roots),
            signer: Arc::new(signer),
            answers: Answers::new(store.clone(), network.clone(), cfg.epoch.clone()),
            network,
            store,
            status,
            peers: Peers::new(Duration::from_millis(cfg.http.peer_timeout_ms), &roots),
            clock,
            settings: Settings {
                max_event_age: window.max_event_age,
                max_clock_drift: window.max_clock_drift,
                heartbeat_interval_ms: cfg.freshness.heartbeat_interval_ms,
                aggregator: cfg.aggregator,
                url,
                approvals: crate::network::approvals_dir(&cfg.database),
            },
            stats: Default::default(),
            pursuits: Default::default(),
        };
        Ok(Node {
            cfg,
            ctx,
            replicator,
            client,
            applied,
            roots,
        })
    }

    /// The shared context (for tests).
    pub fn context(&self) -> &NodeContext {
        &self.ctx
    }

    /// Runs until `stop` is cancelled or a critical task fails.
    pub async fn run(self, listener: TcpListener, stop: CancellationToken) -> anyhow::Result<()> {
        let Node {
            cfg,
            ctx,
            replicator,
            client,
            applied,
            roots,
        } = self;
        let mut tasks: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();
        let s = stop.clone();
        let server = crate::http::serve(
            listener,
            ctx.clone(),
            cfg.http.clone(),
            cfg.rate_limit.clone(),
            s,
        );
        tasks.spawn(async move { ("http", server.await.map_err(Into::into)) });
        let s = stop.clone();
        tasks.spawn(async move {
            replicator.run(s).await;
            ("replicator", Ok(()))
        });
        let s = stop.clone();
        let prober = ctx.prober.clone();
        tasks.spawn(async move {
            prober.run(s).await;
            ("prober", Ok(()))
        });
        let stats = ctx.stats.clone().run(
            crate::stats::Sources {
                answers: ctx.answers.clone(),
                store: ctx.store.clone(),
                prober: ctx.prober.clone(),
                clock: ctx.clock.clone(),
            },
            applied.subscribe(),
            STATS_EVERY,
            stop.clone(),
        );
        tasks.spawn(async move {
            stats.await;
            ("stats", Ok(()))
        });
        // The targets follow the network: probing starts and stops with changes.
        let mut versions = ctx.network.subscribe();
        let prober = ctx.prober.clone();
        let s = stop.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = s.cancelled() => return ("targets", Ok(())),
                    changed = versions.changed() => {
                        if changed.is_err() {
                            return ("targets", Ok(()));
                        }
                    }
                }
                let net = versions.borrow_and_update().clone();
                prober.set_targets(&net.definition.targets);
            }
        });
        if !cfg.notify.webhooks.is_empty() {
            let notify = crate::notify::run(
                cfg.notify.webhooks.clone(),
                cfg.notify.queue,
                cfg.node_id.clone(),
                ctx.settings.url.clone(),
                roots,
                applied.subscribe(),
                stop.clone(),
            );
            tasks.spawn(async move { ("notify", notify.await) });
        }
        if cfg.aggregator {
            let agg = Aggregator::new(&ctx, client, &cfg.aggregation);
            let s = stop.clone();
            tasks.spawn(async move {
                agg.run(s).await;
                ("aggregator", Ok(()))
            });
        }
        tracing::info!(node = %cfg.node_id, listen = %cfg.listen,
            targets = ctx.net().definition.targets.len(),
            aggregator = cfg.aggregator, "node running");
        let mut result = Ok(());
        while let Some(joined) = tasks.join_next().await {
            let (name, r) = match joined {
                Ok(x) => x,
                Err(e) => ("task", Err(anyhow!("panicked: {e}"))),
            };
            if !stop.is_cancelled() {
                // A critical task ended on its own: stop the node, with the reason.
                let reason = match r {
                    Err(e) => anyhow!("{name} failed: {e:#}"),
                    Ok(()) => anyhow!("{name} stopped unexpectedly"),
                };
                tracing::error!(error = %reason, "stopping the node");
                if result.is_ok() {
                    result = Err(reason);
                }
                stop.cancel();
            }
        }
        ctx.store.close().await;
        result
    }
}

/// Orders operator sockets so the ones that say `"sequencer": true` at
/// `/node/state` come last (unreachable ones keep their place).
async fn sequencer_last(sockets: Vec<String>, roots: &crate::http_client::Roots) -> Vec<String> {
    if sockets.len() < 2 {
        return sockets;
    }
    let http = crate::http_client::builder_with(roots)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    let mut asks = JoinSet::new();
    for (i, s) in sockets.iter().enumerate() {
        let (http, url) = (
            http.clone(),
            format!("{}/node/state", s.trim_end_matches('/')),
        );
        asks.spawn(async move {
            let is_seq = match http.get(url).send().await {
                Ok(r) => r
                    .json::<serde_json::Value>()
                    .await
                    .is_ok_and(|v| v["data"]["sequencer"] == true),
                Err(_) => false,
            };
            (i, is_seq)
        });
    }
    let mut sequencer = vec![false; sockets.len()];
    while let Some(Ok((i, s))) = asks.join_next().await {
        sequencer[i] = s;
    }
    let (mut first, mut last) = (Vec::new(), Vec::new());
    for (s, is_seq) in sockets.into_iter().zip(sequencer) {
        if is_seq {
            last.push(s);
        } else {
            first.push(s);
        }
    }
    first.extend(last);
    first
}

/// Asks the gateway once whether it knows the app: an unknown app is a
/// configuration error and stops the node now. An unreachable sequencer is not
/// (the replica reports it, and turns unready with the reason if it later answers
/// that the app is unknown).
async fn check_app(client: &Client, operators: &OperatorSource) -> anyhow::Result<()> {
    match tokio::time::timeout(
        Duration::from_secs(5),
        client.last_finalized_at(client.current_index(), operators),
    )
    .await
    {
        Ok(Err(e)) => {
            if let Some(why) = e.unknown_app() {
                bail!(
                    "zellular.app {:?}: the sequencer at {} does not know this app ({why})",
                    client.config().app,
                    client.current_gateway()
                );
            }
            tracing::warn!(error = %e, "the sequencer did not answer at start; the replica will keep trying");
            Ok(())
        }
        Ok(Ok(_)) => Ok(()),
        Err(_) => {
            tracing::warn!(gateway = %client.current_gateway(), "the sequencer did not answer within 5 s at start; the replica will keep trying");
            Ok(())
        }
    }
}
