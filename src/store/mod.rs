//! SQLite persistence. The only module that issues SQL.

pub mod node;
pub mod sequencer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Sql(#[from] sqlx::Error),
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("{path}: {why}")]
    Open { path: String, why: String },
    #[error("{path} is in use by another livenessd process (its lock file {lock} is held); stop that process, or give this node its own database")]
    Locked { path: String, lock: String },
}

impl StoreError {
    /// A condition that retrying soon will not fix by itself (the disk is full, the
    /// file is read-only or unreadable): back off and report it until it clears.
    pub fn is_persistent(&self) -> bool {
        match self {
            StoreError::Sql(sqlx::Error::Database(e)) => {
                // SQLite primary result codes: FULL, READONLY, IOERR, CANTOPEN, CORRUPT, NOTADB.
                let code = e.code().and_then(|c| c.parse::<i64>().ok()).unwrap_or(0) & 0xff;
                matches!(code, 13 | 8 | 10 | 14 | 11 | 26)
            }
            StoreError::Sql(sqlx::Error::Io(_)) => true,
            StoreError::Corrupt(_) | StoreError::Open { .. } | StoreError::Locked { .. } => true,
            _ => false,
        }
    }
}

/// An exclusive advisory lock on `<database>.lock`, held while a process uses the
/// database: two nodes on one replica would interleave their writes.
#[derive(Debug)]
pub struct DbLock {
    _file: File,
    path: PathBuf,
}

impl DbLock {
    /// Takes the lock of the database at `db`, creating its directory if needed.
    /// Errors name the path and the reason in words.
    pub fn acquire(db: &Path) -> Result<DbLock, StoreError> {
        let open_err = |path: &Path, what: &str, e: std::io::Error| StoreError::Open {
            path: path.display().to_string(),
            why: format!("{what}: {}", crate::os_error::reason(&e)),
        };
        if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Some(file) = dir.ancestors().find(|a| a.exists() && !a.is_dir()) {
                return Err(StoreError::Open {
                    path: db.display().to_string(),
                    why: format!("{} is a file, not a directory", file.display()),
                });
            }
            std::fs::create_dir_all(dir)
                .map_err(|e| open_err(db, &format!("cannot create {}", dir.display()), e))?;
        }
        let mut lock_path = db.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| open_err(db, &format!("cannot open {}", lock_path.display()), e))?;
        match file.try_lock() {
            Ok(()) => Ok(DbLock {
                _file: file,
                path: lock_path,
            }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
                path: db.display().to_string(),
                lock: lock_path.display().to_string(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(open_err(
                db,
                &format!("cannot lock {}", lock_path.display()),
                e,
            )),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens (creating if needed) a SQLite file in WAL mode.
///
/// `synchronous = NORMAL` in WAL mode survives a process crash (the case a daemon
/// restart cares about); only an OS crash or power loss can lose the last commits.
/// The file is checked for access first, so a failure says why in words.
pub(crate) async fn open_pool(
    path: &Path,
    max_connections: u32,
    read_only: bool,
) -> Result<SqlitePool, StoreError> {
    let check = std::fs::OpenOptions::new()
        .read(true)
        .write(!read_only)
        .create(!read_only)
        .truncate(false)
        .open(path);
    if let Err(e) = check {
        return Err(StoreError::Open {
            path: path.display().to_string(),
            why: crate::os_error::reason(&e),
        });
    }
    let mut opts = SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(!read_only)
        .read_only(read_only)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    if !read_only {
        opts = opts
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections)
        .connect_with(opts)
        .await
        .map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
    Ok(pool)
}
