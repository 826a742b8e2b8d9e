//! A monitoring node's replica: applied events with their running totals, current
//! states, the Zellular cursor and the replica's clock (`log_time`).

use std::collections::HashMap;
use std::path::Path;

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use super::{open_pool, DbLock, StoreError};
use crate::events::{Event, NodeState};
use crate::zellular::chain::xxh128_hex;

/// The replica's position: how far it has applied, and a digest of what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Position {
    /// Last Zellular index applied in full.
    pub index: u64,
    pub chaining_hash: String,
    /// Items of batch `index + 1` already applied (a large batch spans transactions).
    pub partial_items: u32,
    /// The newest sync-point timestamp applied: the replica's clock.
    pub log_time: i64,
    /// `d_n = xxh128(d_{n-1} ‖ line(event_n))` over every applied event.
    pub events_digest: String,
    pub events_count: u64,
}

/// A target's replicated state with its running totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetState {
    pub state: NodeState,
    /// Timestamp of the transition into `state` (0 for the initial `up`).
    pub since: i64,
    /// Seconds down in `[0, since]`.
    pub down_total: i64,
    /// Down transitions up to and including the one at `since`.
    pub outages: i64,
}

impl TargetState {
    /// Every address starts `up` since 0 (the reference node's rule).
    pub const INITIAL: TargetState = TargetState {
        state: NodeState::Up,
        since: 0,
        down_total: 0,
        outages: 0,
    };

    /// The state after a transition to `state` at `t` (`t ≥ since`).
    pub fn after(&self, state: NodeState, t: i64) -> TargetState {
        TargetState {
            state,
            since: t,
            down_total: self.down_total_at(t),
            outages: self.outages + i64::from(state == NodeState::Down),
        }
    }

    /// Seconds down in `[0, t]`, for `t ≥ since`.
    pub fn down_total_at(&self, t: i64) -> i64 {
        match self.state {
            NodeState::Down => self.down_total + (t - self.since),
            NodeState::Up => self.down_total,
        }
    }
}

/// An event accepted for application, with where it came from and the totals
/// after it.
#[derive(Debug, Clone)]
pub struct Applied {
    pub zellular_index: u64,
    pub position: u32,
    pub event: Event,
    /// The sync time the event was checked against.
    pub log_time: i64,
    /// The address's state after this event.
    pub after: TargetState,
    /// The network version it was verified under.
    pub network_version: u64,
}

/// A network change accepted for application.
#[derive(Debug, Clone)]
pub struct AppliedChange {
    /// The version it makes.
    pub version: u64,
    pub zellular_index: u64,
    pub position: u32,
    pub log_time: i64,
    /// The signed change, canonical JSON (chained into the digest as it is).
    pub change: String,
    /// Targets it adds (monitored from `log_time`) and removes (until `log_time`).
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// A stored change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChange {
    pub version: u64,
    pub zellular_index: u64,
    pub position: u32,
    pub log_time: i64,
    pub change: String,
    pub digest: String,
}

/// An epoch certificate accepted for application (the first of its epoch).
#[derive(Debug, Clone)]
pub struct AppliedCertificate {
    pub epoch: i64,
    pub network_version: u64,
    pub start: i64,
    pub end: i64,
    pub root: String,
    pub row_count: u64,
    /// The certificate as sequenced (JSON).
    pub certificate: String,
    /// The rows (JSON array, sorted by address).
    pub rows: String,
    pub zellular_index: u64,
    pub position: u32,
    pub log_time: i64,
}

/// A stored certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCertificate {
    pub epoch: i64,
    /// The certificate as sequenced (JSON).
    pub certificate: String,
    /// Its rows (JSON array), when asked for.
    pub rows: Option<String>,
    pub zellular_index: u64,
    pub position: u32,
    pub log_time: i64,
}

fn stored_certificate(r: &sqlx::sqlite::SqliteRow, with_rows: bool) -> StoredCertificate {
    StoredCertificate {
        epoch: r.get(0),
        certificate: r.get(1),
        rows: with_rows.then(|| r.get(2)),
        zellular_index: r.get::<i64, _>(3) as u64,
        position: r.get::<i64, _>(4) as u32,
        log_time: r.get(5),
    }
}

/// Where the cursor moves with a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorUpdate {
    pub index: u64,
    pub chaining_hash: String,
    pub partial_items: u32,
    pub log_time: i64,
    /// Targets whose monitoring starts with this transaction, and when.
    pub monitoring_starts: Vec<(String, i64)>,
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: i64,
    pub zellular_index: u64,
    pub position: u32,
    pub event: Event,
    pub log_time: i64,
    pub after: TargetState,
    pub digest: String,
    pub network_version: u64,
}

/// What a start-up integrity check found wrong, naming the first bad row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntegrityError {
    #[error("events row seq {seq} ({address}): {field} is {stored}, but the rows before it give {expected}")]
    Row {
        seq: i64,
        address: String,
        field: &'static str,
        stored: String,
        expected: String,
    },
    #[error("states row of {address}: stored {stored}, but its events give {expected}")]
    State {
        address: String,
        stored: String,
        expected: String,
    },
    #[error("network change to version {version}: digest is {stored}, but the rows before it give {expected}")]
    Change {
        version: u64,
        stored: String,
        expected: String,
    },
    #[error("cursor: {field} is {stored}, but the events give {expected}")]
    Cursor {
        field: &'static str,
        stored: String,
        expected: String,
    },
}

/// Rows per multi-row INSERT (13 bound values each, well under SQLite's limit).
const ROWS_PER_INSERT: usize = 500;

/// Rows read per query while checking the whole log (bounded memory).
const CHECK_PAGE: i64 = 10_000;

/// The canonical line of an event in the digest.
fn digest_line(zellular_index: u64, position: u32, e: &Event) -> String {
    format!(
        "{}|{}|{}|{}|{}|{}|{}",
        zellular_index,
        position,
        e.address,
        e.state,
        e.timestamp,
        e.aggregated_signature,
        e.non_signing_nodes.join(",")
    )
}

/// The digest after appending one event to `prev`.
pub fn next_digest(prev: &str, zellular_index: u64, position: u32, e: &Event) -> String {
    xxh128_hex(format!("{prev}{}", digest_line(zellular_index, position, e)).as_bytes())
}

/// The digest after appending one network change to `prev`.
pub fn next_change_digest(prev: &str, c: &AppliedChangeRef<'_>) -> String {
    xxh128_hex(
        format!(
            "{prev}change|{}|{}|{}|{}",
            c.zellular_index, c.position, c.version, c.change
        )
        .as_bytes(),
    )
}

/// What of a change the digest covers.
pub struct AppliedChangeRef<'a> {
    pub version: u64,
    pub zellular_index: u64,
    pub position: u32,
    pub change: &'a str,
}

impl AppliedChange {
    fn as_ref(&self) -> AppliedChangeRef<'_> {
        AppliedChangeRef {
            version: self.version,
            zellular_index: self.zellular_index,
            position: self.position,
            change: &self.change,
        }
    }
}

impl StoredChange {
    fn as_ref(&self) -> AppliedChangeRef<'_> {
        AppliedChangeRef {
            version: self.version,
            zellular_index: self.zellular_index,
            position: self.position,
            change: &self.change,
        }
    }
}

/// Why the replica cannot serve this node's network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this database belongs to network {stored}, but the node's genesis is network {configured}: \
         the monitoring nodes, targets, threshold, epochs or settlement differ from the ones it was \
         made with. Change a running network with `livenessd network propose`, not by editing its \
         configuration; or give this node a new database")]
pub struct NetworkMismatch {
    pub stored: String,
    pub configured: String,
}

/// The columns [`stored_event`] reads, in order.
macro_rules! event_columns {
    () => {
        "seq, zellular_index, position, address, state, timestamp, \
         aggregated_signature, non_signing_nodes, log_time, down_total, outages, digest, network_version"
    };
}

fn stored_event(r: &SqliteRow) -> Result<StoredEvent, StoreError> {
    let state = parse_state(r.get(4))?;
    let ns: String = r.get(7);
    let timestamp: i64 = r.get(5);
    Ok(StoredEvent {
        seq: r.get(0),
        zellular_index: r.get::<i64, _>(1) as u64,
        position: r.get::<i64, _>(2) as u32,
        event: Event {
            address: r.get(3),
            state,
            timestamp,
            aggregated_signature: r.get(6),
            non_signing_nodes: serde_json::from_str(&ns)
                .map_err(|e| StoreError::Corrupt(format!("non_signing_nodes {ns:?}: {e}")))?,
        },
        log_time: r.get(8),
        after: TargetState {
            state,
            since: timestamp,
            down_total: r.get(9),
            outages: r.get(10),
        },
        digest: r.get(11),
        network_version: r.get::<i64, _>(12) as u64,
    })
}

/// The replica database.
#[derive(Clone)]
pub struct ReplicaStore {
    pool: SqlitePool,
    /// Held while the store is open: a second process on the same file is refused.
    _lock: Option<std::sync::Arc<DbLock>>,
}

impl ReplicaStore {
    /// Opens (creating if needed) the replica, locked against other processes.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let lock = DbLock::acquire(path)?;
        let pool = open_pool(path, 8, false).await?;
        sqlx::migrate!("migrations/node").run(&pool).await?;
        Ok(ReplicaStore {
            pool,
            _lock: Some(std::sync::Arc::new(lock)),
        })
    }

    /// Opens an existing replica read-only, without the lock (an audit may run
    /// beside the node). Refuses a file that does not exist or needs migrating.
    pub async fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Open {
                path: path.display().to_string(),
                why: "no such file".into(),
            });
        }
        let pool = open_pool(path, 2, true).await?;
        let store = ReplicaStore { pool, _lock: None };
        let migrated: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_one(&store.pool)
        .await?;
        if migrated == 0 {
            return Err(StoreError::Corrupt("not a livenessd replica".into()));
        }
        Ok(store)
    }

    /// Gives every configured address a state row (`up` since 0) if it has none.
    pub async fn init_targets(&self, addresses: &[String]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for a in addresses {
            sqlx::query(
                "INSERT OR IGNORE INTO states (address, state, since, down_total, outages) VALUES (?, 'up', 0, 0, 0)",
            )
            .bind(a)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Binds the replica to network `id` (a new or pre-network replica), or checks
    /// that it is bound to it.
    pub async fn bind_network(
        &self,
        id: &str,
        genesis: &str,
    ) -> Result<Result<(), NetworkMismatch>, StoreError> {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT network_id FROM network WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        match stored {
            Some(s) if s == id => Ok(Ok(())),
            Some(s) => Ok(Err(NetworkMismatch {
                stored: s,
                configured: id.to_owned(),
            })),
            None => {
                sqlx::query("INSERT INTO network (id, network_id, genesis) VALUES (1, ?, ?)")
                    .bind(id)
                    .bind(genesis)
                    .execute(&self.pool)
                    .await?;
                Ok(Ok(()))
            }
        }
    }

    /// The network id the replica is bound to, and its genesis (canonical JSON).
    pub async fn network(&self) -> Result<Option<(String, String)>, StoreError> {
        let r = sqlx::query("SELECT network_id, genesis FROM network WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.map(|r| (r.get(0), r.get(1))))
    }

    /// Every applied network change, in version order.
    pub async fn changes(&self) -> Result<Vec<StoredChange>, StoreError> {
        self.changes_after(0, u32::MAX).await
    }

    /// At most `limit` applied network changes making versions after `after`, in
    /// version order.
    pub async fn changes_after(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredChange>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, zellular_index, position, log_time, change, digest
             FROM network_changes WHERE version > ? ORDER BY version LIMIT ?",
        )
        .bind(after.min(i64::MAX as u64) as i64)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| StoredChange {
                version: r.get::<i64, _>(0) as u64,
                zellular_index: r.get::<i64, _>(1) as u64,
                position: r.get::<i64, _>(2) as u32,
                log_time: r.get(3),
                change: r.get(4),
                digest: r.get(5),
            })
            .collect())
    }

    /// Whether epoch `n` has a certificate.
    pub async fn has_certificate(&self, epoch: i64) -> Result<bool, StoreError> {
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT epoch FROM certificates WHERE epoch = ?")
                .bind(epoch)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    /// The certificate of epoch `n`: the certificate (JSON) and its rows (JSON).
    pub async fn certificate(&self, epoch: i64) -> Result<Option<StoredCertificate>, StoreError> {
        let r = sqlx::query(
            "SELECT epoch, certificate, rows, zellular_index, position, log_time
             FROM certificates WHERE epoch = ?",
        )
        .bind(epoch)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.map(|r| stored_certificate(&r, true)))
    }

    /// Certificates after epoch `after` (ascending), without their rows.
    pub async fn certificates(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredCertificate>, StoreError> {
        let rows = sqlx::query(
            "SELECT epoch, certificate, '', zellular_index, position, log_time
             FROM certificates WHERE epoch > ? ORDER BY epoch LIMIT ?",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| stored_certificate(r, false)).collect())
    }

    /// The newest certified epoch.
    pub async fn last_certified(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar("SELECT MAX(epoch) FROM certificates")
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn position(&self) -> Result<Position, StoreError> {
        let r = sqlx::query(
            "SELECT zellular_index, chaining_hash, partial_items, log_time, events_digest, events_count
             FROM cursor WHERE id = 1",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Position {
            index: r.get::<i64, _>(0) as u64,
            chaining_hash: r.get(1),
            partial_items: r.get::<i64, _>(2) as u32,
            log_time: r.get(3),
            events_digest: r.get(4),
            events_count: r.get::<i64, _>(5) as u64,
        })
    }

    /// Current state and totals of every address.
    pub async fn states(&self) -> Result<HashMap<String, TargetState>, StoreError> {
        let rows = sqlx::query("SELECT address, state, since, down_total, outages FROM states")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.get::<String, _>(0),
                    TargetState {
                        state: parse_state(r.get(1))?,
                        since: r.get(2),
                        down_total: r.get(3),
                        outages: r.get(4),
                    },
                ))
            })
            .collect()
    }

    /// When the network began monitoring each address (`None`: not yet).
    pub async fn monitoring(&self) -> Result<HashMap<String, Option<i64>>, StoreError> {
        let rows = sqlx::query("SELECT address, monitored_since FROM states")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<Option<i64>, _>(1)))
            .collect())
    }

    /// When the network began monitoring `address`, and when it stopped (a
    /// removed target); `None`: not yet, or unknown.
    pub async fn monitored_span(
        &self,
        address: &str,
    ) -> Result<Option<(i64, Option<i64>)>, StoreError> {
        let r =
            sqlx::query("SELECT monitored_since, monitored_until FROM states WHERE address = ?")
                .bind(address)
                .fetch_optional(&self.pool)
                .await?;
        Ok(r.and_then(|r| {
            r.get::<Option<i64>, _>(0)
                .map(|since| (since, r.get::<Option<i64>, _>(1)))
        }))
    }

    /// When the network began monitoring `address` (`None`: not yet, or unknown).
    pub async fn monitored_since(&self, address: &str) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT monitored_since FROM states WHERE address = ?")
                .bind(address)
                .fetch_optional(&self.pool)
                .await?
                .flatten(),
        )
    }

    /// The current state of one address (`up` since 0 when it has none).
    pub async fn state_of(&self, address: &str) -> Result<TargetState, StoreError> {
        let r =
            sqlx::query("SELECT state, since, down_total, outages FROM states WHERE address = ?")
                .bind(address)
                .fetch_optional(&self.pool)
                .await?;
        match r {
            None => Ok(TargetState::INITIAL),
            Some(r) => Ok(TargetState {
                state: parse_state(r.get(0))?,
                since: r.get(1),
                down_total: r.get(2),
                outages: r.get(3),
            }),
        }
    }

    /// Applies accepted events and moves the cursor, in one transaction: a crash
    /// leaves either all of it or none.
    ///
    /// A connection whose write failed (a full disk, say) is closed, not returned
    /// to the pool: its rollback may not have run, and a connection left inside a
    /// transaction would serve later reads from an old snapshot.
    pub async fn apply(
        &self,
        events: &[Applied],
        change: Option<&AppliedChange>,
        cursor: &CursorUpdate,
    ) -> Result<Position, StoreError> {
        self.apply_all(events, change, None, cursor).await
    }

    /// Stores an epoch certificate and moves the cursor, in one transaction.
    pub async fn apply_certificate(
        &self,
        certificate: &AppliedCertificate,
        cursor: &CursorUpdate,
    ) -> Result<Position, StoreError> {
        self.apply_all(&[], None, Some(certificate), cursor).await
    }

    async fn apply_all(
        &self,
        events: &[Applied],
        change: Option<&AppliedChange>,
        certificate: Option<&AppliedCertificate>,
        cursor: &CursorUpdate,
    ) -> Result<Position, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let result = Self::apply_on(&mut conn, events, change, certificate, cursor).await;
        if result.is_err() {
            let _ = conn.close().await;
        }
        result
    }

    /// Events come before the change (a change ends its transaction).
    async fn apply_on(
        conn: &mut sqlx::pool::PoolConnection<sqlx::Sqlite>,
        events: &[Applied],
        change: Option<&AppliedChange>,
        certificate: Option<&AppliedCertificate>,
        cursor: &CursorUpdate,
    ) -> Result<Position, StoreError> {
        use sqlx::Connection;
        let mut tx = conn.begin().await?;
        let r = sqlx::query("SELECT events_digest, events_count FROM cursor WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let mut digest: String = r.get(0);
        let mut count = r.get::<i64, _>(1) as u64;
        let mut rows = Vec::with_capacity(events.len());
        for a in events {
            digest = next_digest(&digest, a.zellular_index, a.position, &a.event);
            count += 1;
            let nonsigners = serde_json::to_string(&a.event.non_signing_nodes)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            rows.push((a, nonsigners, digest.clone()));
        }
        // Multi-row inserts: one statement per ROWS_PER_INSERT events, not one each.
        for part in rows.chunks(ROWS_PER_INSERT) {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO events (zellular_index, position, address, state, timestamp, aggregated_signature,
                                     non_signing_nodes, log_time, down_total, outages, digest, network_version) ",
            );
            q.push_values(part, |mut b, (a, nonsigners, digest)| {
                let e = &a.event;
                b.push_bind(a.zellular_index as i64)
                    .push_bind(a.position as i64)
                    .push_bind(&e.address)
                    .push_bind(e.state.as_str())
                    .push_bind(e.timestamp)
                    .push_bind(&e.aggregated_signature)
                    .push_bind(nonsigners)
                    .push_bind(a.log_time)
                    .push_bind(a.after.down_total)
                    .push_bind(a.after.outages)
                    .push_bind(digest)
                    .push_bind(a.network_version as i64);
            });
            q.build().execute(&mut *tx).await?;
        }
        // Only the last transition of each address sets its state.
        let mut last: HashMap<&str, &Applied> = HashMap::new();
        for a in events {
            last.insert(&a.event.address, a);
        }
        let last: Vec<&Applied> = last.into_values().collect();
        for part in last.chunks(ROWS_PER_INSERT) {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO states (address, state, since, down_total, outages) ",
            );
            q.push_values(part, |mut b, a| {
                b.push_bind(&a.event.address)
                    .push_bind(a.after.state.as_str())
                    .push_bind(a.after.since)
                    .push_bind(a.after.down_total)
                    .push_bind(a.after.outages);
            });
            q.push(
                " ON CONFLICT (address) DO UPDATE SET state = excluded.state, since = excluded.since,
                  down_total = excluded.down_total, outages = excluded.outages",
            );
            q.build().execute(&mut *tx).await?;
        }
        if let Some(c) = change {
            digest = next_change_digest(&digest, &c.as_ref());
            sqlx::query(
                "INSERT INTO network_changes (version, zellular_index, position, log_time, change, digest)
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(c.version as i64)
            .bind(c.zellular_index as i64)
            .bind(c.position as i64)
            .bind(c.log_time)
            .bind(&c.change)
            .bind(&digest)
            .execute(&mut *tx)
            .await?;
            for a in &c.added {
                sqlx::query(
                    "INSERT INTO states (address, state, since, down_total, outages, monitored_since)
                     VALUES (?, 'up', 0, 0, 0, ?)",
                )
                .bind(a)
                .bind(c.log_time)
                .execute(&mut *tx)
                .await?;
            }
            for a in &c.removed {
                sqlx::query("UPDATE states SET monitored_until = ? WHERE address = ?")
                    .bind(c.log_time)
                    .bind(a)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for (address, t) in &cursor.monitoring_starts {
            sqlx::query(
                "UPDATE states SET monitored_since = ? WHERE address = ? AND monitored_since IS NULL",
            )
            .bind(t)
            .bind(address)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(c) = certificate {
            sqlx::query(
                "INSERT INTO certificates (epoch, network_version, start, end, root, row_count,
                                           certificate, rows, zellular_index, position, log_time)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(c.epoch)
            .bind(c.network_version as i64)
            .bind(c.start)
            .bind(c.end)
            .bind(&c.root)
            .bind(c.row_count as i64)
            .bind(&c.certificate)
            .bind(&c.rows)
            .bind(c.zellular_index as i64)
            .bind(c.position as i64)
            .bind(c.log_time)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE cursor SET zellular_index = ?, chaining_hash = ?, partial_items = ?, log_time = ?,
                               events_digest = ?, events_count = ? WHERE id = 1",
        )
        .bind(cursor.index as i64)
        .bind(&cursor.chaining_hash)
        .bind(cursor.partial_items as i64)
        .bind(cursor.log_time)
        .bind(&digest)
        .bind(count as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Position {
            index: cursor.index,
            chaining_hash: cursor.chaining_hash.clone(),
            partial_items: cursor.partial_items,
            log_time: cursor.log_time,
            events_digest: digest,
            events_count: count,
        })
    }

    /// The last event of `address` with `timestamp ≤ t` (`strict`: `< t`), as the
    /// state it left the address in: one index look-up.
    /// Seconds `address` was down in `[from, to]`, both cut at the target's removal
    /// if it was removed: the running totals at the two ends, in one statement (one
    /// round trip to the database, two index look-ups).
    pub async fn downtime_between(
        &self,
        address: &str,
        from: i64,
        to: i64,
    ) -> Result<i64, StoreError> {
        let r = sqlx::query(
            "WITH b AS (
                SELECT min(?2, coalesce(u.until, 9223372036854775807)) AS f,
                       min(?3, coalesce(u.until, 9223372036854775807)) AS t
                FROM (SELECT 1)
                LEFT JOIN (SELECT CASE WHEN monitored_since IS NULL THEN NULL
                                       ELSE monitored_until END AS until
                           FROM states WHERE address = ?1) u
             )
             SELECT
               (SELECT down_total + CASE WHEN state = 'down' THEN b.t - timestamp ELSE 0 END
                  FROM events WHERE address = ?1 AND timestamp <= b.t
                  ORDER BY timestamp DESC, seq DESC LIMIT 1),
               (SELECT down_total + CASE WHEN state = 'down' THEN b.f - timestamp ELSE 0 END
                  FROM events WHERE address = ?1 AND timestamp <= b.f
                  ORDER BY timestamp DESC, seq DESC LIMIT 1)
             FROM b",
        )
        .bind(address)
        .bind(from)
        .bind(to)
        .fetch_one(&self.pool)
        .await?;
        let at_to: Option<i64> = r.get(0);
        let at_from: Option<i64> = r.get(1);
        Ok(at_to.unwrap_or(0) - at_from.unwrap_or(0))
    }

    pub async fn state_at(
        &self,
        address: &str,
        t: i64,
        strict: bool,
    ) -> Result<Option<TargetState>, StoreError> {
        let sql = if strict {
            "SELECT state, timestamp, down_total, outages FROM events
             WHERE address = ? AND timestamp < ? ORDER BY timestamp DESC, seq DESC LIMIT 1"
        } else {
            "SELECT state, timestamp, down_total, outages FROM events
             WHERE address = ? AND timestamp <= ? ORDER BY timestamp DESC, seq DESC LIMIT 1"
        };
        let r = sqlx::query(sql)
            .bind(address)
            .bind(t)
            .fetch_optional(&self.pool)
            .await?;
        r.map(|r| {
            Ok(TargetState {
                state: parse_state(r.get(0))?,
                since: r.get(1),
                down_total: r.get(2),
                outages: r.get(3),
            })
        })
        .transpose()
    }

    /// The last `limit` transitions of `address`, newest first.
    pub async fn recent_events(
        &self,
        address: &str,
        limit: u32,
    ) -> Result<Vec<(NodeState, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT state, timestamp FROM events WHERE address = ?
             ORDER BY timestamp DESC, seq DESC LIMIT ?",
        )
        .bind(address)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| Ok((parse_state(r.get(0))?, r.get(1))))
            .collect()
    }

    /// Events of `address` with `from ≤ timestamp ≤ to`, in application order,
    /// after the `(timestamp, seq)` key `after` (exclusive), at most `limit`.
    pub async fn events_in(
        &self,
        address: &str,
        from: i64,
        to: i64,
        after: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let (ats, aseq) = after.unwrap_or((i64::MIN, i64::MIN));
        let rows = sqlx::query(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events
             WHERE address = ? AND timestamp >= ? AND timestamp <= ? AND (timestamp, seq) > (?, ?)
             ORDER BY timestamp, seq LIMIT ?"
        ))
        .bind(address)
        .bind(from)
        .bind(to)
        .bind(ats)
        .bind(aseq)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored_event).collect()
    }

    /// The first event of `address` strictly after `t`, if any.
    pub async fn next_after(&self, address: &str, t: i64) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT timestamp FROM events WHERE address = ? AND timestamp > ?
             ORDER BY timestamp, seq LIMIT 1",
        )
        .bind(address)
        .bind(t)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Applied events in order, `after_seq` exclusive, at most `limit`, optionally of
    /// one address.
    pub async fn events(
        &self,
        address: Option<&str>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE seq > ? AND (? IS NULL OR address = ?) ORDER BY seq LIMIT ?"
        ))
        .bind(after_seq)
        .bind(address)
        .bind(address)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored_event).collect()
    }

    /// Recomputes every derived value from the events themselves — the digest chain,
    /// each row's running totals, the states, the cursor's digest and count — and
    /// names the first that differs from what is stored. Reads in pages.
    pub async fn check_integrity(&self) -> Result<Result<u64, IntegrityError>, StoreError> {
        let mut digest = String::new();
        let mut count = 0u64;
        let mut states: HashMap<String, TargetState> = HashMap::new();
        let mut after = 0i64;
        let changes = self.changes().await?;
        let mut pending = changes.iter().peekable();
        // Folds in the changes sequenced before `(index, position)`.
        let fold_changes =
            |digest: &mut String,
             pending: &mut std::iter::Peekable<std::slice::Iter<'_, StoredChange>>,
             upto: (u64, u32)|
             -> Result<(), IntegrityError> {
                while let Some(c) = pending.next_if(|c| (c.zellular_index, c.position) < upto) {
                    *digest = next_change_digest(digest, &c.as_ref());
                    if c.digest != *digest {
                        return Err(IntegrityError::Change {
                            version: c.version,
                            stored: c.digest.clone(),
                            expected: digest.clone(),
                        });
                    }
                }
                Ok(())
            };
        loop {
            let page = self.events(None, after, CHECK_PAGE as u32).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for row in &page {
                if let Err(e) = fold_changes(
                    &mut digest,
                    &mut pending,
                    (row.zellular_index, row.position),
                ) {
                    return Ok(Err(e));
                }
                let e = &row.event;
                let prev = states
                    .get(&e.address)
                    .copied()
                    .unwrap_or(TargetState::INITIAL);
                let expected = prev.after(e.state, e.timestamp);
                digest = next_digest(&digest, row.zellular_index, row.position, e);
                count += 1;
                let bad =
                    |field: &'static str, stored: String, expected: String| IntegrityError::Row {
                        seq: row.seq,
                        address: e.address.clone(),
                        field,
                        stored,
                        expected,
                    };
                if row.digest != digest {
                    return Ok(Err(bad("digest", row.digest.clone(), digest)));
                }
                if row.after.down_total != expected.down_total {
                    return Ok(Err(bad(
                        "down_total",
                        row.after.down_total.to_string(),
                        expected.down_total.to_string(),
                    )));
                }
                if row.after.outages != expected.outages {
                    return Ok(Err(bad(
                        "outages",
                        row.after.outages.to_string(),
                        expected.outages.to_string(),
                    )));
                }
                states.insert(e.address.clone(), expected);
            }
        }
        if let Err(e) = fold_changes(&mut digest, &mut pending, (u64::MAX, u32::MAX)) {
            return Ok(Err(e));
        }
        for (address, stored) in self.states().await? {
            let expected = states.remove(&address).unwrap_or(TargetState::INITIAL);
            if stored != expected {
                return Ok(Err(IntegrityError::State {
                    address,
                    stored: format!("{stored:?}"),
                    expected: format!("{expected:?}"),
                }));
            }
        }
        if let Some((address, expected)) = states.into_iter().next() {
            return Ok(Err(IntegrityError::State {
                address,
                stored: "no row".into(),
                expected: format!("{expected:?}"),
            }));
        }
        let pos = self.position().await?;
        if pos.events_digest != digest {
            return Ok(Err(IntegrityError::Cursor {
                field: "events_digest",
                stored: pos.events_digest,
                expected: digest,
            }));
        }
        if pos.events_count != count {
            return Ok(Err(IntegrityError::Cursor {
                field: "events_count",
                stored: pos.events_count.to_string(),
                expected: count.to_string(),
            }));
        }
        Ok(Ok(count))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn parse_state(state: String) -> Result<NodeState, StoreError> {
    NodeState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("state {state:?}")))
}
