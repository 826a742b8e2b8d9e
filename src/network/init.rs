//! A new network's files: for each node a BLS key (0600) and a `node.toml`, and
//! the shared `nodes.json` (the reference `monitoring_nodes.json` format, with each
//! key's proof of possession and stake) that every node reads.
//!
//! ```text
//! DIR/nodes.json              shared by every node (a Kubernetes ConfigMap)
//! DIR/genesis.json            the network's genesis (what its nodes' configs
//!                             describe; a node joining later starts from it)
//! DIR/<node>/bls.key          this node's secret key, 0600 (a Secret)
//! DIR/<node>/node.toml        this node's configuration
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::{reference_nodes_json, MonitoringNode};
use crate::crypto::bls::SecretKey;

/// One node of a new network.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub id: String,
    /// Where its peers reach it.
    pub url: String,
    /// Where it listens.
    pub listen: String,
    /// Its directory under the network's directory.
    pub dir_name: String,
    pub aggregator: bool,
}

/// What to write.
#[derive(Debug, Clone)]
pub struct InitSpec {
    pub dir: PathBuf,
    pub nodes: Vec<NodeSpec>,
    /// `(address, health URL)` of every target.
    pub targets: Vec<(String, String)>,
    /// TOML appended to every node's configuration (the `[zellular]` section and
    /// any other table).
    pub tables: String,
    /// Stake of each node.
    pub stake: f64,
}

/// Writes the files; a key that already exists is kept (so a network can be
/// re-initialised with new settings). Returns the monitoring nodes.
pub fn init(spec: &InitSpec) -> anyhow::Result<Vec<MonitoringNode>> {
    std::fs::create_dir_all(&spec.dir)
        .with_context(|| format!("creating {}", spec.dir.display()))?;
    let mut monitors = Vec::new();
    for n in &spec.nodes {
        let ndir = spec.dir.join(&n.dir_name);
        std::fs::create_dir_all(&ndir).with_context(|| format!("creating {}", ndir.display()))?;
        let key_path = ndir.join("bls.key");
        let sk = if key_path.exists() {
            SecretKey::from_hex(crate::keyfile::read_secret(&key_path)?.trim())
                .map_err(|e| anyhow::anyhow!("{}: {e}", key_path.display()))?
        } else {
            let sk = SecretKey::generate();
            crate::keyfile::write_secret(&key_path, &(sk.to_hex() + "\n"))?;
            sk
        };
        monitors.push(MonitoringNode {
            id: n.id.clone(),
            url: n.url.clone(),
            pubkey: sk.public_key().to_hex(),
            pop: Some(sk.prove_possession().to_hex()),
            stake: spec.stake,
        });
    }
    let nodes_file = spec.dir.join("nodes.json");
    std::fs::write(&nodes_file, reference_nodes_json(&monitors) + "\n")
        .with_context(|| format!("writing {}", nodes_file.display()))?;
    for n in &spec.nodes {
        let path = spec.dir.join(&n.dir_name).join("node.toml");
        std::fs::write(&path, node_toml(n, spec))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    // The genesis the configs describe (the first one read back, as a node reads it).
    if let Some(first) = spec.nodes.first() {
        let path = spec.dir.join(&first.dir_name).join("node.toml");
        let cfg = crate::config::NodeConfig::load(Some(&path), &Default::default())
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let g = super::Genesis::from_config(&cfg)?;
        let gpath = spec.dir.join("genesis.json");
        std::fs::write(&gpath, g.to_pretty())
            .with_context(|| format!("writing {}", gpath.display()))?;
    }
    Ok(monitors)
}

fn node_toml(n: &NodeSpec, spec: &InitSpec) -> String {
    let mut s = format!(
        r#"# {id} of a livenessd network (written by `livenessd network init`).
# Every node of the network reads the same ../nodes.json; keep it identical
# everywhere. node.toml.example documents every key.
node_id = "{id}"
listen = "{listen}"
database = "replica.sqlite"
bls_key_file = "bls.key"
monitoring_nodes_file = "../nodes.json"
aggregator = {agg}
"#,
        id = n.id,
        listen = n.listen,
        agg = n.aggregator,
    );
    for (address, url) in &spec.targets {
        s.push_str(&format!(
            "\n[[targets]]\naddress = \"{address}\"\nhttp = \"{url}\"\n"
        ));
    }
    s.push('\n');
    s.push_str(&spec.tables);
    s
}

/// `ADDRESS=URL`.
pub fn parse_target(s: &str) -> Result<(String, String), String> {
    let (a, u) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected ADDRESS=HEALTH_URL"))?;
    if a.is_empty() || !(u.starts_with("http://") || u.starts_with("https://")) {
        return Err(format!(
            "{s:?}: expected ADDRESS=HEALTH_URL (http or https)"
        ));
    }
    Ok((a.to_owned(), u.to_owned()))
}

/// The options of `livenessd network init`.
#[derive(Debug, Clone)]
pub struct CliSpec<'a> {
    pub dir: &'a Path,
    pub nodes: usize,
    /// `{i}`: the node's index; `{port}`: `base_port + i`.
    pub url_template: &'a str,
    pub listen_template: &'a str,
    pub base_port: u16,
    pub targets: &'a [(String, String)],
    /// The `[zellular]` table (and any other) for every node.
    pub tables: &'a str,
}

/// `livenessd network init`: ids `node-0`…, URLs and listen addresses from the
/// templates, targets given or, by default, every node's `/health` (the nodes
/// monitor each other).
pub fn init_cli(c: &CliSpec<'_>) -> anyhow::Result<Vec<MonitoringNode>> {
    if c.nodes == 0 {
        anyhow::bail!("--nodes must be at least 1");
    }
    let fill = |t: &str, i: usize| {
        t.replace("{i}", &i.to_string())
            .replace("{port}", &(usize::from(c.base_port) + i).to_string())
    };
    let nodes: Vec<NodeSpec> = (0..c.nodes)
        .map(|i| NodeSpec {
            id: format!("node-{i}"),
            url: fill(c.url_template, i),
            listen: fill(c.listen_template, i),
            dir_name: format!("node-{i}"),
            aggregator: true,
        })
        .collect();
    let (dir, targets, zellular_toml) = (c.dir, c.targets, c.tables);
    let targets: Vec<(String, String)> = if targets.is_empty() {
        nodes
            .iter()
            .map(|n| (n.id.clone(), format!("{}/health", n.url)))
            .collect()
    } else {
        targets.to_vec()
    };
    init(&InitSpec {
        dir: dir.to_owned(),
        nodes,
        targets,
        tables: zellular_toml.to_owned(),
        stake: 1.0,
    })
}

/// The configuration of a node that joins a running network later: it starts from
/// `../genesis.json`, replays the log, and signs once a change adds it.
pub fn joining_node_toml(n: &NodeSpec, tables: &str) -> String {
    format!(
        r#"# {id}: joins the network after its genesis (written by the devnet).
# It replicates from index 0 and signs once a network change adds it.
node_id = "{id}"
listen = "{listen}"
database = "replica.sqlite"
bls_key_file = "bls.key"
genesis_file = "../genesis.json"
aggregator = {agg}

{tables}"#,
        id = n.id,
        listen = n.listen,
        agg = n.aggregator,
    )
}

/// A new key for a node joining later, in `dir/bls.key` (0600); its monitoring
/// node entry (with its proof of possession).
pub fn new_member(dir: &Path, n: &NodeSpec, stake: f64) -> anyhow::Result<MonitoringNode> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let sk = SecretKey::generate();
    crate::keyfile::write_secret(&dir.join("bls.key"), &(sk.to_hex() + "\n"))?;
    Ok(MonitoringNode {
        id: n.id.clone(),
        url: n.url.clone(),
        pubkey: sk.public_key().to_hex(),
        pop: Some(sk.prove_possession().to_hex()),
        stake,
    })
}
