//! Secret key files: written with mode 0600, refused when others can read them.

use std::io::Write;
use std::path::Path;

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {}", crate::os_error::reason(err))]
    Io { path: String, err: std::io::Error },
    #[error("{path}: permissions {mode:o} let other users read the key; run `chmod 600 {path}`")]
    Permissions { path: String, mode: u32 },
    #[error("{path}: {detail}")]
    Invalid { path: String, detail: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |err| KeyFileError::Io {
        path: path.display().to_string(),
        err,
    }
}

/// Writes `contents` to a new file readable by its owner only.
pub fn write_secret(path: &Path, contents: &str) -> Result<(), KeyFileError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io(path))?;
    f.write_all(contents.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))?;
    Ok(())
}

/// Reads a secret file, refusing it when group or others may read or write it.
pub fn read_secret(path: &Path) -> Result<String, KeyFileError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Permissions {
                path: path.display().to_string(),
                mode,
            });
        }
    }
    let _ = meta;
    std::fs::read_to_string(path).map_err(io(path))
}
