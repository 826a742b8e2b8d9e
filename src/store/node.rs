//! A monitoring node's replica: applied events, current states, the Zellular cursor.

use std::collections::HashMap;
use std::path::Path;

use sqlx::{Row, SqlitePool};

use super::{open_pool, StoreError};
use crate::events::{Event, NodeState};
use crate::zellular::chain::xxh128_hex;

/// The replica's position: how far it has applied, and a digest of what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Position {
    /// Last applied Zellular index.
    pub index: u64,
    pub chaining_hash: String,
    /// `d_n = xxh128(d_{n-1} ‖ line(event_n))` over every applied event.
    pub events_digest: String,
    pub events_count: u64,
}

/// An event accepted for application, with where it came from.
#[derive(Debug, Clone)]
pub struct Applied {
    pub zellular_index: u64,
    pub position: u32,
    pub event: Event,
    pub finalized_at: i64,
}

/// A recorded transition of one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub state: NodeState,
    pub timestamp: i64,
}

/// Rows per multi-row INSERT (8 bound values each, well under SQLite's limit).
const ROWS_PER_INSERT: usize = 500;

/// The canonical line of an event in the digest.
fn digest_line(a: &Applied) -> String {
    format!(
        "{}|{}|{}|{}|{}|{}|{}",
        a.zellular_index,
        a.position,
        a.event.address,
        a.event.state,
        a.event.timestamp,
        a.event.aggregated_signature,
        a.event.non_signing_nodes.join(",")
    )
}

/// The replica database.
#[derive(Clone)]
pub struct ReplicaStore {
    pool: SqlitePool,
}

impl ReplicaStore {
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let pool = open_pool(path, 8).await?;
        sqlx::migrate!("migrations/node").run(&pool).await?;
        Ok(ReplicaStore { pool })
    }

    /// Gives every configured address a state row (`up` since 0) if it has none.
    pub async fn init_addresses(&self, addresses: &[String]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for a in addresses {
            sqlx::query("INSERT OR IGNORE INTO states (address, state, since) VALUES (?, 'up', 0)")
                .bind(a)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn position(&self) -> Result<Position, StoreError> {
        let r = sqlx::query("SELECT zellular_index, chaining_hash, events_digest, events_count FROM cursor WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(Position {
            index: r.get::<i64, _>(0) as u64,
            chaining_hash: r.get(1),
            events_digest: r.get(2),
            events_count: r.get::<i64, _>(3) as u64,
        })
    }

    /// Current state and since-timestamp of every address.
    pub async fn states(&self) -> Result<HashMap<String, Transition>, StoreError> {
        let rows = sqlx::query("SELECT address, state, since FROM states")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                let state: String = r.get(1);
                let state = NodeState::parse(&state)
                    .ok_or_else(|| StoreError::Corrupt(format!("state {state:?}")))?;
                Ok((
                    r.get::<String, _>(0),
                    Transition {
                        state,
                        timestamp: r.get(2),
                    },
                ))
            })
            .collect()
    }

    /// The current state of one address (`up` since 0 when it has none).
    pub async fn state_of(&self, address: &str) -> Result<Transition, StoreError> {
        let r = sqlx::query("SELECT state, since FROM states WHERE address = ?")
            .bind(address)
            .fetch_optional(&self.pool)
            .await?;
        match r {
            None => Ok(Transition {
                state: NodeState::Up,
                timestamp: 0,
            }),
            Some(r) => transition(r.get(0), r.get(1)),
        }
    }

    /// Applies accepted events and moves the cursor, in one transaction: a crash
    /// leaves either all of it or none.
    pub async fn apply(
        &self,
        events: &[Applied],
        index: u64,
        chaining_hash: &str,
    ) -> Result<Position, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query("SELECT events_digest, events_count FROM cursor WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let mut digest: String = r.get(0);
        let mut count = r.get::<i64, _>(1) as u64;
        // Multi-row inserts: one statement per ROWS_PER_INSERT events, not one each.
        for part in events.chunks(ROWS_PER_INSERT) {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO events (zellular_index, position, address, state, timestamp, aggregated_signature,
                                     non_signing_nodes, finalized_at) ",
            );
            let mut err = None;
            q.push_values(part, |mut b, a| {
                let e = &a.event;
                let nonsigners = serde_json::to_string(&e.non_signing_nodes).unwrap_or_else(|x| {
                    err = Some(x.to_string());
                    String::new()
                });
                b.push_bind(a.zellular_index as i64)
                    .push_bind(a.position as i64)
                    .push_bind(&e.address)
                    .push_bind(e.state.as_str())
                    .push_bind(e.timestamp)
                    .push_bind(&e.aggregated_signature)
                    .push_bind(nonsigners)
                    .push_bind(a.finalized_at);
            });
            if let Some(e) = err {
                return Err(StoreError::Corrupt(e));
            }
            q.build().execute(&mut *tx).await?;
        }
        // Only the last transition of each address in the chunk sets its state.
        let mut last: HashMap<&str, &Event> = HashMap::new();
        for a in events {
            last.insert(&a.event.address, &a.event);
            digest = xxh128_hex(format!("{digest}{}", digest_line(a)).as_bytes());
            count += 1;
        }
        let last: Vec<&Event> = last.into_values().collect();
        for part in last.chunks(ROWS_PER_INSERT) {
            let mut q = sqlx::QueryBuilder::new("INSERT INTO states (address, state, since) ");
            q.push_values(part, |mut b, e| {
                b.push_bind(&e.address)
                    .push_bind(e.state.as_str())
                    .push_bind(e.timestamp);
            });
            q.push(" ON CONFLICT (address) DO UPDATE SET state = excluded.state, since = excluded.since");
            q.build().execute(&mut *tx).await?;
        }
        sqlx::query(
            "UPDATE cursor SET zellular_index = ?, chaining_hash = ?, events_digest = ?, events_count = ? WHERE id = 1",
        )
        .bind(index as i64)
        .bind(chaining_hash)
        .bind(&digest)
        .bind(count as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Position {
            index,
            chaining_hash: chaining_hash.to_owned(),
            events_digest: digest,
            events_count: count,
        })
    }

    /// The last transition of `address` strictly before `t` (`up` at 0 if none).
    pub async fn state_before(&self, address: &str, t: i64) -> Result<Transition, StoreError> {
        let r = sqlx::query(
            "SELECT state, timestamp FROM events WHERE address = ? AND timestamp < ?
             ORDER BY timestamp DESC, seq DESC LIMIT 1",
        )
        .bind(address)
        .bind(t)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match r {
            None => Transition {
                state: NodeState::Up,
                timestamp: 0,
            },
            Some(r) => transition(r.get(0), r.get(1))?,
        })
    }

    /// Transitions of `address` with `from ≤ timestamp ≤ to`, in application order.
    pub async fn transitions(
        &self,
        address: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<Transition>, StoreError> {
        let rows = sqlx::query(
            "SELECT state, timestamp FROM events WHERE address = ? AND timestamp >= ? AND timestamp <= ?
             ORDER BY timestamp, seq",
        )
        .bind(address)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| transition(r.get(0), r.get(1)))
            .collect()
    }

    /// The first transition of `address` strictly after `t`, if any.
    pub async fn next_after(
        &self,
        address: &str,
        t: i64,
    ) -> Result<Option<Transition>, StoreError> {
        let r = sqlx::query(
            "SELECT state, timestamp FROM events WHERE address = ? AND timestamp > ?
             ORDER BY timestamp, seq LIMIT 1",
        )
        .bind(address)
        .bind(t)
        .fetch_optional(&self.pool)
        .await?;
        r.map(|r| transition(r.get(0), r.get(1))).transpose()
    }

    /// Applied events in order, `after_seq` exclusive, at most `limit`, optionally of
    /// one address: `(seq, zellular index, event)`.
    pub async fn events(
        &self,
        address: Option<&str>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<(i64, u64, Event)>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, zellular_index, address, state, timestamp, aggregated_signature, non_signing_nodes
             FROM events WHERE seq > ? AND (? IS NULL OR address = ?) ORDER BY seq LIMIT ?",
        )
        .bind(after_seq)
        .bind(address)
        .bind(address)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let t = transition(r.get(3), r.get(4))?;
                let ns: String = r.get(6);
                Ok((
                    r.get::<i64, _>(0),
                    r.get::<i64, _>(1) as u64,
                    Event {
                        address: r.get(2),
                        state: t.state,
                        timestamp: t.timestamp,
                        aggregated_signature: r.get(5),
                        non_signing_nodes: serde_json::from_str(&ns)
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    },
                ))
            })
            .collect()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn transition(state: String, timestamp: i64) -> Result<Transition, StoreError> {
    let state =
        NodeState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("state {state:?}")))?;
    Ok(Transition { state, timestamp })
}
