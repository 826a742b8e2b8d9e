//! Zellular operator sets: who signs finality, with what stake and key.
//!
//! Two sources, as in the `zellular` SDK: a static list (`StaticNetwork`) and the
//! EigenLayer subgraph (`EigenlayerNetwork`). Verification follows the SDK exactly,
//! quirks included (unknown non-signer ids ignored, duplicates counted twice,
//! stake-0 operators left out of the aggregate key).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ark_bn254::G2Projective;
use ark_ec::CurveGroup;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::crypto::bn254::{self, Bn254Error, PublicKey, Signature};

/// The SDK's default threshold: at most 33% of stake may be missing.
pub const DEFAULT_THRESHOLD_PERCENT: f64 = 67.0;

/// One sequencer operator.
#[derive(Debug, Clone)]
pub struct Operator {
    pub id: String,
    pub socket: String,
    /// Stake as the SDK sees it (a float: wei / 1e18 on EigenLayer).
    pub stake: f64,
    pub public_key: PublicKey,
}

/// The JSON shape of an operator (SDK `StaticNetwork` / subgraph): big integers may be
/// JSON numbers or decimal strings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorJson {
    pub id: String,
    #[serde(default)]
    pub socket: String,
    pub stake: Value,
    #[serde(rename = "pubkeyG2_X")]
    pub pubkey_g2_x: [Value; 2],
    #[serde(rename = "pubkeyG2_Y")]
    pub pubkey_g2_y: [Value; 2],
}

/// Why an operator set could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OperatorSetError {
    #[error("operator set is empty")]
    Empty,
    #[error("operator {id}: bad public key: {source}")]
    BadKey { id: String, source: Bn254Error },
    #[error("operator {id}: stake {stake} is not a non-negative number")]
    BadStake { id: String, stake: String },
    #[error("operator {id} is listed twice")]
    Duplicate { id: String },
    #[error("total stake is zero")]
    ZeroStake,
    #[error("threshold {0} is not a percentage in (0, 100]")]
    BadThreshold(f64),
    #[error("operators file: {0}")]
    Json(#[from] serde_json::Error),
}

/// Why a finality signature was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FinalityError {
    #[error("non-signers hold {nonsigner_percent:.2}% of stake, more than the allowed {allowed_percent:.2}%")]
    QuorumNotMet {
        nonsigner_percent: f64,
        allowed_percent: f64,
    },
    #[error("signature does not parse: {0}")]
    Unparsable(#[from] Bn254Error),
    #[error("signature does not verify against the signers' aggregate key")]
    Invalid,
}

fn value_to_decimal(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => {
            let s = s.trim();
            match s.strip_prefix("0x") {
                Some(hex) => {
                    num_bigint::BigUint::parse_bytes(hex.as_bytes(), 16).map(|b| b.to_str_radix(10))
                }
                None => Some(s.to_owned()),
            }
        }
        _ => None,
    }
}

fn value_to_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl OperatorJson {
    /// Converts with the `StaticNetwork` stake rule (`float(stake)`).
    pub fn to_operator(&self) -> Result<Operator, OperatorSetError> {
        let stake = value_to_f64(&self.stake)
            .filter(|s| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| OperatorSetError::BadStake {
                id: self.id.clone(),
                stake: self.stake.to_string(),
            })?;
        self.to_operator_with_stake(stake)
    }

    fn to_operator_with_stake(&self, stake: f64) -> Result<Operator, OperatorSetError> {
        let bad = |source| OperatorSetError::BadKey {
            id: self.id.clone(),
            source,
        };
        let dec = |v: &Value| value_to_decimal(v).ok_or(Bn254Error::NotDecimal(v.to_string()));
        let x = [
            dec(&self.pubkey_g2_x[0]).map_err(bad)?,
            dec(&self.pubkey_g2_x[1]).map_err(bad)?,
        ];
        let y = [
            dec(&self.pubkey_g2_y[0]).map_err(bad)?,
            dec(&self.pubkey_g2_y[1]).map_err(bad)?,
        ];
        let public_key = PublicKey::from_xy([&x[0], &x[1]], [&y[0], &y[1]]).map_err(bad)?;
        Ok(Operator {
            id: self.id.clone(),
            socket: self.socket.clone(),
            stake,
            public_key,
        })
    }

    /// The JSON form of an operator, keys as decimal strings.
    pub fn from_operator(op: &Operator) -> Self {
        let (x, y) = op.public_key.to_xy();
        let stake = if op.stake.fract() == 0.0 && op.stake < 9.0e15 {
            Value::from(op.stake as u64)
        } else {
            Value::from(op.stake)
        };
        OperatorJson {
            id: op.id.clone(),
            socket: op.socket.clone(),
            stake,
            pubkey_g2_x: [Value::String(x[0].clone()), Value::String(x[1].clone())],
            pubkey_g2_y: [Value::String(y[0].clone()), Value::String(y[1].clone())],
        }
    }
}

/// A versioned operator set with its aggregate key, ready to verify signatures.
#[derive(Debug)]
pub struct OperatorSet {
    operators: Vec<Operator>,
    by_id: HashMap<String, usize>,
    total_stake: f64,
    /// Σ keys of operators with stake > 0, computed once (as the SDK caches it).
    aggregate: G2Projective,
    threshold_percent: f64,
}

impl OperatorSet {
    pub fn new(operators: Vec<Operator>, threshold_percent: f64) -> Result<Self, OperatorSetError> {
        if operators.is_empty() {
            return Err(OperatorSetError::Empty);
        }
        if !(threshold_percent > 0.0 && threshold_percent <= 100.0) {
            return Err(OperatorSetError::BadThreshold(threshold_percent));
        }
        let mut by_id = HashMap::with_capacity(operators.len());
        for (i, op) in operators.iter().enumerate() {
            if by_id.insert(op.id.clone(), i).is_some() {
                return Err(OperatorSetError::Duplicate { id: op.id.clone() });
            }
        }
        let total_stake: f64 = operators.iter().map(|o| o.stake).sum();
        if total_stake <= 0.0 {
            return Err(OperatorSetError::ZeroStake);
        }
        let aggregate = bn254::sum_keys(
            operators
                .iter()
                .filter(|o| o.stake > 0.0)
                .map(|o| &o.public_key),
        );
        Ok(OperatorSet {
            operators,
            by_id,
            total_stake,
            aggregate,
            threshold_percent,
        })
    }

    /// Reads a JSON list, an id → operator map, or `{"operators": ...}`.
    pub fn from_json(text: &str, threshold_percent: f64) -> Result<Self, OperatorSetError> {
        let v: Value = serde_json::from_str(text)?;
        let v = match v {
            Value::Object(mut m)
                if m.get("operators")
                    .is_some_and(|o| o.is_array() || o.is_object()) =>
            {
                m.remove("operators").unwrap_or_default()
            }
            v => v,
        };
        let items: Vec<OperatorJson> = match v {
            Value::Object(m) => m
                .into_iter()
                .map(|(_, v)| serde_json::from_value(v))
                .collect::<Result<_, _>>()?,
            v => serde_json::from_value(v)?,
        };
        let ops = items
            .iter()
            .map(OperatorJson::to_operator)
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(ops, threshold_percent)
    }

    /// The `operators.json` form: a map id → `{id, socket, stake, pubkeyG2_X, pubkeyG2_Y}`.
    pub fn to_json_map(&self) -> serde_json::Map<String, Value> {
        self.operators
            .iter()
            .map(|op| {
                let j = OperatorJson::from_operator(op);
                (
                    op.id.clone(),
                    serde_json::to_value(j).unwrap_or(Value::Null),
                )
            })
            .collect()
    }

    pub fn operators(&self) -> &[Operator] {
        &self.operators
    }

    pub fn get(&self, id: &str) -> Option<&Operator> {
        self.by_id.get(id).map(|&i| &self.operators[i])
    }

    /// Σ keys of the operators with stake > 0 (the SDK's aggregated public key).
    pub fn aggregate_key(&self) -> PublicKey {
        PublicKey(self.aggregate.into_affine())
    }

    pub fn total_stake(&self) -> f64 {
        self.total_stake
    }

    pub fn threshold_percent(&self) -> f64 {
        self.threshold_percent
    }

    /// The stake rule alone: `100·stake(nonsigners)/total ≤ 100 − threshold`
    /// (listed ids that are not operators are ignored; duplicates count twice).
    pub fn check_quorum(&self, nonsigners: &[String]) -> Result<(), FinalityError> {
        let ns: f64 = nonsigners
            .iter()
            .filter_map(|id| self.get(id))
            .map(|o| o.stake)
            .sum();
        let pct = 100.0 * ns / self.total_stake;
        let allowed = 100.0 - self.threshold_percent;
        if pct > allowed {
            return Err(FinalityError::QuorumNotMet {
                nonsigner_percent: pct,
                allowed_percent: allowed,
            });
        }
        Ok(())
    }

    /// `zellular`'s `Network.verify_signature(message, signature, nonsigners)`.
    pub fn verify(
        &self,
        message_json: &str,
        signature: &str,
        nonsigners: &[String],
    ) -> Result<(), FinalityError> {
        self.check_quorum(nonsigners)?;
        let sig = Signature::parse(signature)?;
        let mut apk = self.aggregate;
        for op in nonsigners.iter().filter_map(|id| self.get(id)) {
            apk -= op.public_key.0;
        }
        let signed = super::chain::xxh128_hex(message_json.as_bytes());
        if bn254::verify(&apk.into_affine(), signed.as_bytes(), &sig) {
            Ok(())
        } else {
            Err(FinalityError::Invalid)
        }
    }
}

/// Where the operator set comes from.
#[derive(Clone)]
pub enum OperatorSource {
    /// A fixed set; the tag of a signature is ignored (SDK `StaticNetwork`).
    Static(Arc<OperatorSet>),
    /// The EigenLayer subgraph, one set per block tag (SDK `EigenlayerNetwork`).
    Subgraph(Arc<Subgraph>),
}

/// Errors while fetching an operator set.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("subgraph request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("subgraph answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("subgraph answer is malformed: {0}")]
    Malformed(String),
    #[error(transparent)]
    Set(#[from] OperatorSetError),
}

impl OperatorSource {
    /// The operator set a signature with `tag` was made against.
    pub async fn at_tag(&self, tag: &Value) -> Result<Arc<OperatorSet>, SourceError> {
        match self {
            OperatorSource::Static(s) => Ok(s.clone()),
            OperatorSource::Subgraph(g) => {
                g.operators(super::wire::tag_block(tag).filter(|&b| b > 0))
                    .await
            }
        }
    }
}

/// The EigenLayer subgraph as an operator source (GraphQL over HTTP).
pub struct Subgraph {
    url: String,
    http: reqwest::Client,
    threshold_percent: f64,
    /// Operators whose stake is not capped at 1 (the SDK's `DEFAULT_NODES`).
    uncapped: Vec<String>,
    /// One set per block: sets at a block never change, so they are kept.
    cache: Mutex<HashMap<u64, Arc<OperatorSet>>>,
}

/// The SDK's `EigenlayerNetwork.DEFAULT_NODES`: their stake is not capped at 1.
pub const SDK_DEFAULT_NODES: [&str; 4] = [
    "0x747b80a1c0b0e6031b389e3b7eaf9b5f759f34ed",
    "0x3eaa1c283dbf13357257e652649784a4cc08078c",
    "0x906585f83fa7d29b96642aa8f7b4267ab42b7b6c",
    "0x93d89ade53b8fcca53736be1a0d11d342d71118b",
];

/// Operator sets kept per subgraph source (one per block tag seen).
pub const MAX_CACHED_TAGS: usize = 64;

/// How many blocks behind the head the tag is taken (reorg margin, as the SDK does).
pub const TAG_LAG_BLOCKS: u64 = 5;

impl Subgraph {
    pub fn new(url: impl Into<String>, threshold_percent: f64) -> Self {
        Subgraph {
            url: url.into(),
            http: crate::http_client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            threshold_percent,
            uncapped: SDK_DEFAULT_NODES.iter().map(|s| s.to_string()).collect(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Trusts `roots` beside the platform's for an HTTPS subgraph.
    pub fn with_roots(mut self, roots: &crate::http_client::Roots) -> Self {
        self.http = crate::http_client::builder_with(roots)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        self
    }

    /// Replaces the list of operators whose stake is not capped at 1.
    pub fn with_uncapped(mut self, ids: Vec<String>) -> Self {
        self.uncapped = ids;
        self
    }

    async fn query(&self, query: &str) -> Result<Value, SourceError> {
        let resp = self
            .http
            .post(&self.url)
            .json(&serde_json::json!({ "query": query }))
            .send()
            .await?;
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            return Err(SourceError::Status {
                status: status.as_u16(),
                body: body.chars().take(200).collect(),
            });
        }
        let v: Value =
            serde_json::from_str(&body).map_err(|e| SourceError::Malformed(e.to_string()))?;
        if let Some(errs) = v.get("errors") {
            return Err(SourceError::Malformed(format!("GraphQL errors: {errs}")));
        }
        v.get("data")
            .cloned()
            .ok_or_else(|| SourceError::Malformed("no data".into()))
    }

    /// The current tag: the subgraph's head block minus [`TAG_LAG_BLOCKS`].
    pub async fn current_tag(&self) -> Result<u64, SourceError> {
        let data = self.query("{ _meta { block { number } } }").await?;
        let n = data
            .pointer("/_meta/block/number")
            .and_then(|n| {
                n.as_u64()
                    .or_else(|| n.as_str().and_then(|s| s.parse().ok()))
            })
            .ok_or_else(|| SourceError::Malformed("no _meta.block.number".into()))?;
        Ok(n.saturating_sub(TAG_LAG_BLOCKS))
    }

    /// The operator set at `block` (latest when `None`).
    pub async fn operators(&self, block: Option<u64>) -> Result<Arc<OperatorSet>, SourceError> {
        if let Some(b) = block {
            if let Some(s) = self.cache.lock().expect("cache lock").get(&b) {
                return Ok(s.clone());
            }
        }
        let filter = block
            .map(|b| format!("(block: {{ number: {b} }})"))
            .unwrap_or_default();
        let q = format!("{{ operators{filter} {{ id socket stake pubkeyG2_X pubkeyG2_Y }} }}");
        let data = self.query(&q).await?;
        let list: Vec<OperatorJson> =
            serde_json::from_value(data.get("operators").cloned().unwrap_or(Value::Null))
                .map_err(|e| SourceError::Malformed(format!("operators: {e}")))?;
        let ops = list
            .iter()
            .map(|o| {
                let wei = value_to_decimal(&o.stake).unwrap_or_default();
                let stake = wei_to_units(&wei).ok_or_else(|| OperatorSetError::BadStake {
                    id: o.id.clone(),
                    stake: wei.clone(),
                })?;
                let stake = if self.uncapped.iter().any(|u| u == &o.id) {
                    stake
                } else {
                    stake.min(1.0)
                };
                o.to_operator_with_stake(stake)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let set = Arc::new(OperatorSet::new(ops, self.threshold_percent)?);
        if let Some(b) = block {
            let mut cache = self.cache.lock().expect("cache lock");
            cache.insert(b, set.clone());
            // Keep the newest blocks only: tags move forward with the chain.
            while cache.len() > MAX_CACHED_TAGS {
                let Some(&oldest) = cache.keys().min() else {
                    break;
                };
                cache.remove(&oldest);
            }
        }
        Ok(set)
    }
}

/// `int(wei) / 10**18` as a float.
fn wei_to_units(wei: &str) -> Option<f64> {
    let w = num_bigint::BigUint::parse_bytes(wei.as_bytes(), 10)?;
    let scale = num_bigint::BigUint::from(10u64).pow(18);
    let (q, r) = (&w / &scale, &w % &scale);
    let q: f64 = q.to_string().parse().ok()?;
    let r: f64 = r.to_string().parse().ok()?;
    Some(q + r / 1e18)
}
