//! The dev sequencer's log: batches and finalizations per app.

use std::path::Path;

use sqlx::{Row, SqlitePool};

use super::{open_pool, DbLock, StoreError};
use crate::zellular::wire::SigInfo;

/// The tip of one app's log, as loaded at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppHead {
    pub app: String,
    pub last_index: u64,
    pub last_chain: String,
    pub last_finalized_index: u64,
    pub last_finalized_timestamp: i64,
}

/// A stored batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    pub index: u64,
    pub body: String,
    pub chaining_hash: String,
}

/// A finalization as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finalization {
    pub index: u64,
    pub parent_index: u64,
    pub chaining_hash: String,
    pub timestamp: i64,
    pub signature: String,
    pub nonsigners: Vec<String>,
    pub tag: u64,
}

impl Finalization {
    pub fn to_sig_info(&self) -> SigInfo {
        SigInfo {
            state: "locked".into(),
            index: self.index,
            parent_index: self.parent_index,
            chaining_hash: self.chaining_hash.clone(),
            signature: self.signature.clone(),
            nonsigners: self.nonsigners.clone(),
            tag: self.tag.into(),
            timestamp: self.timestamp,
        }
    }
}

/// The dev sequencer's SQLite log.
#[derive(Clone)]
pub struct SequencerStore {
    pool: SqlitePool,
    /// Held while open: two sequencers on one log would fork it.
    _lock: std::sync::Arc<DbLock>,
}

fn idx(v: u64) -> i64 {
    v as i64
}

impl SequencerStore {
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let lock = DbLock::acquire(path)?;
        let pool = open_pool(path, 4, false).await?;
        sqlx::migrate!("migrations/sequencer").run(&pool).await?;
        Ok(SequencerStore {
            pool,
            _lock: std::sync::Arc::new(lock),
        })
    }

    /// Every app's head, to resume after a restart.
    pub async fn heads(&self) -> Result<Vec<AppHead>, StoreError> {
        let rows = sqlx::query(
            "SELECT b.app, b.idx, b.chaining_hash,
                    COALESCE((SELECT MAX(f.idx) FROM finalizations f WHERE f.app = b.app), 0),
                    COALESCE((SELECT f.timestamp FROM finalizations f WHERE f.app = b.app
                              ORDER BY f.idx DESC LIMIT 1), 0)
             FROM batches b
             WHERE b.idx = (SELECT MAX(idx) FROM batches WHERE app = b.app)",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| AppHead {
                app: r.get(0),
                last_index: r.get::<i64, _>(1) as u64,
                last_chain: r.get(2),
                last_finalized_index: r.get::<i64, _>(3) as u64,
                last_finalized_timestamp: r.get(4),
            })
            .collect())
    }

    /// Appends one batch (the caller serialises appends per app).
    pub async fn append(
        &self,
        app: &str,
        index: u64,
        body: &str,
        chain: &str,
        received_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO batches (app, idx, body, chaining_hash, received_at) VALUES (?, ?, ?, ?, ?)")
            .bind(app)
            .bind(idx(index))
            .bind(body)
            .bind(chain)
            .bind(received_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn finalize(&self, app: &str, f: &Finalization) -> Result<(), StoreError> {
        let nonsigners =
            serde_json::to_string(&f.nonsigners).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO finalizations (app, idx, parent_index, chaining_hash, timestamp, signature, nonsigners, tag)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(app)
        .bind(idx(f.index))
        .bind(idx(f.parent_index))
        .bind(&f.chaining_hash)
        .bind(f.timestamp)
        .bind(&f.signature)
        .bind(nonsigners)
        .bind(idx(f.tag))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Batches `after+1 ..= upto`, at most `max_count` and about `max_bytes` of bodies
    /// (always at least one when any is in range).
    pub async fn range(
        &self,
        app: &str,
        after: u64,
        upto: u64,
        max_count: u32,
        max_bytes: usize,
    ) -> Result<Vec<StoredBatch>, StoreError> {
        use futures_util::TryStreamExt;
        // Row by row, stopping at the byte cap: never more than one row past it in
        // memory, however large the batches.
        let mut rows = sqlx::query(
            "SELECT idx, body, chaining_hash FROM batches
             WHERE app = ? AND idx > ? AND idx <= ? ORDER BY idx LIMIT ?",
        )
        .bind(app)
        .bind(idx(after))
        .bind(idx(upto))
        .bind(max_count as i64)
        .fetch(&self.pool);
        let mut out = Vec::new();
        let mut bytes = 0;
        while let Some(r) = rows.try_next().await? {
            let body: String = r.get(1);
            bytes += body.len();
            if bytes > max_bytes && !out.is_empty() {
                break;
            }
            out.push(StoredBatch {
                index: r.get::<i64, _>(0) as u64,
                body,
                chaining_hash: r.get(2),
            });
        }
        Ok(out)
    }

    /// One batch.
    pub async fn batch(&self, app: &str, index: u64) -> Result<Option<StoredBatch>, StoreError> {
        Ok(self
            .range(app, index.saturating_sub(1), index, 1, usize::MAX)
            .await?
            .pop())
    }

    /// Finalizations with `lo <= idx <= hi`, ascending.
    pub async fn finalizations(
        &self,
        app: &str,
        lo: u64,
        hi: u64,
    ) -> Result<Vec<Finalization>, StoreError> {
        let rows = sqlx::query(
            "SELECT idx, parent_index, chaining_hash, timestamp, signature, nonsigners, tag
             FROM finalizations WHERE app = ? AND idx >= ? AND idx <= ? ORDER BY idx",
        )
        .bind(app)
        .bind(idx(lo))
        .bind(idx(hi))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let ns: String = r.get(5);
                Ok(Finalization {
                    index: r.get::<i64, _>(0) as u64,
                    parent_index: r.get::<i64, _>(1) as u64,
                    chaining_hash: r.get(2),
                    timestamp: r.get(3),
                    signature: r.get(4),
                    nonsigners: serde_json::from_str(&ns)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    tag: r.get::<i64, _>(6) as u64,
                })
            })
            .collect()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
