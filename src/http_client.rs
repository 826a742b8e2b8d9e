//! The one way outgoing HTTP clients are built (probes, peers, gateways, subgraphs,
//! webhooks): HTTPS with rustls on the `ring` provider, verifying certificates
//! against the platform's roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` are honoured) plus
//! any extra roots the configuration names (`tls.ca_files`), for private CAs.

use std::path::Path;
use std::sync::{Once, RwLock};

static PROVIDER: Once = Once::new();

/// Extra trusted roots, process-wide (like `SSL_CERT_FILE`).
static EXTRA_ROOTS: RwLock<Vec<reqwest::Certificate>> = RwLock::new(Vec::new());

/// Why a CA file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub struct CaFileError {
    pub path: String,
    pub why: String,
}

/// Installs rustls's `ring` provider as the process default (once).
pub fn install_crypto_provider() {
    PROVIDER.call_once(|| {
        // Fails only if another provider was installed first, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Trusts the certificates of a PEM file (one or more) from now on, in every
/// client built after this call.
pub fn add_ca_file(path: &Path) -> Result<usize, CaFileError> {
    let err = |why: String| CaFileError {
        path: path.display().to_string(),
        why,
    };
    let pem = std::fs::read(path).map_err(|e| err(crate::os_error::reason(&e)))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| err(format!("not a PEM certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(err("holds no PEM certificate".into()));
    }
    let n = certs.len();
    EXTRA_ROOTS.write().expect("roots lock").extend(certs);
    Ok(n)
}

/// A client builder with the TLS setup above; callers add timeouts.
pub fn builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    let extra = EXTRA_ROOTS.read().expect("roots lock").clone();
    let b = reqwest::Client::builder().user_agent(concat!("livenessd/", env!("CARGO_PKG_VERSION")));
    if extra.is_empty() {
        b
    } else {
        b.tls_certs_merge(extra)
    }
}
