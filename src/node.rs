//! Wires a node: key, monitoring-node set (PoPs checked), replica, sequencer client,
//! prober, replicator and HTTP API, under one cancellation token. A critical task
//! that ends on its own stops the node with a reason.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use axum::http::StatusCode;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::aggregator::Aggregator;
use crate::answers::Answers;
use crate::config::NodeConfig;
use crate::events::MonitorSet;
use crate::http::{self, AppState};
use crate::prober::Prober;
use crate::replicator::Replicator;
use crate::signer::Signer;
use crate::store::node::ReplicaStore;
use crate::zellular::operators::Subgraph;
use crate::zellular::{Client, ClientConfig, OperatorSet, OperatorSource};

/// A node ready to run (everything opened and checked).
pub struct Node {
    cfg: NodeConfig,
    state: AppState,
    replicator: Replicator,
    client: Client,
}

/// The sequencer's operator set and the gateways to use, from the config.
pub fn zellular_client(cfg: &NodeConfig) -> anyhow::Result<(Client, OperatorSource)> {
    let z = &cfg.zellular;
    let (source, sockets) = match (&z.operators_file, &z.subgraph_url) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("zellular.operators_file {}", path.display()))?;
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
            OperatorSource::Subgraph(Arc::new(Subgraph::new(url.clone(), z.threshold_percent))),
            Vec::new(),
        ),
        (None, None) => bail!("zellular: no operator set configured"),
    };
    let mut gateways = if z.gateways.is_empty() {
        sockets
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
    Ok((Client::new(cc), source))
}

impl Node {
    /// Opens and checks everything; fails with a message naming what is wrong.
    pub async fn open(cfg: NodeConfig) -> anyhow::Result<Node> {
        let signer = Signer::from_file(&cfg.bls_key_file).context("bls_key_file")?;
        let monitors = MonitorSet::new(
            &cfg.monitoring_nodes,
            &cfg.allow_without_pop,
            cfg.threshold(),
        )
        .context("monitoring_nodes")?;
        let me = monitors
            .get(&cfg.node_id)
            .ok_or_else(|| anyhow!("node_id {} is not a monitoring node", cfg.node_id))?;
        if me.public_key != *signer.public_key() {
            bail!(
                "bls_key_file {} holds the key {}, but monitoring node {} is configured with {}",
                cfg.bls_key_file.display(),
                signer.public_key(),
                cfg.node_id,
                me.public_key
            );
        }
        if let Some(dir) = cfg.database.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("database directory {}", dir.display()))?;
        }
        let store = ReplicaStore::open(&cfg.database)
            .await
            .with_context(|| format!("database {}", cfg.database.display()))?;
        let addresses: Vec<String> = cfg.targets.iter().map(|t| t.address.clone()).collect();
        let (client, operators) = zellular_client(&cfg)?;
        let monitors = Arc::new(monitors);
        let caught_up = Arc::new(AtomicBool::new(false));
        let replicator = Replicator::new(
            store.clone(),
            monitors.clone(),
            &addresses,
            client.clone(),
            operators,
            caught_up.clone(),
        )
        .await?;
        let state = AppState {
            node_id: cfg.node_id.as_str().into(),
            monitors,
            prober: Prober::new(&cfg.targets, cfg.probe.clone()),
            signer: Arc::new(signer),
            answers: Answers::new(store.clone(), addresses, cfg.epoch.clone()),
            store,
            caught_up,
            peers: reqwest::Client::new(),
            peer_timeout: Duration::from_millis(cfg.http.peer_timeout_ms),
            state_probes: Arc::new(tokio::sync::Semaphore::new(
                http::MAX_CONCURRENT_STATE_PROBES,
            )),
        };
        Ok(Node {
            cfg,
            state,
            replicator,
            client,
        })
    }

    /// The HTTP state (for tests and the aggregator).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Runs until `stop` is cancelled or a critical task fails.
    pub async fn run(self, listener: TcpListener, stop: CancellationToken) -> anyhow::Result<()> {
        let Node {
            cfg,
            state,
            replicator,
            client,
        } = self;
        let mut tasks: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();
        let router = http::app(state.clone(), cfg.http.max_body_bytes)
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                Duration::from_millis(cfg.http.request_timeout_ms),
            ))
            // A bug in a handler answers 500; it never takes the connection or the node down.
            .layer(tower_http::catch_panic::CatchPanicLayer::new());

        let s = stop.clone();
        tasks.spawn(async move {
            let r = axum::serve(listener, router)
                .with_graceful_shutdown(s.cancelled_owned())
                .await;
            ("http", r.map_err(Into::into))
        });
        let s = stop.clone();
        tasks.spawn(async move {
            replicator.run(s).await;
            ("replicator", Ok(()))
        });
        let s = stop.clone();
        let prober = state.prober.clone();
        tasks.spawn(async move {
            prober.run(s).await;
            ("prober", Ok(()))
        });
        if cfg.aggregator {
            let agg = Aggregator::new(&state, client, cfg.aggregation.to_runtime());
            let s = stop.clone();
            tasks.spawn(async move {
                agg.run(s).await;
                ("aggregator", Ok(()))
            });
        }
        tracing::info!(node = %cfg.node_id, listen = %cfg.listen, targets = cfg.targets.len(),
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
        state.store.close().await;
        result
    }
}
