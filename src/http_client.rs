//! The one way outgoing HTTP clients are built (probes, peers, gateways, subgraphs,
//! webhooks): HTTPS with rustls on the `ring` provider, verifying certificates
//! against the platform's roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` are honoured) plus
//! any extra roots the configuration names (`tls.ca_files`), for private CAs.

use std::path::PathBuf;
use std::sync::{Arc, Once};

static PROVIDER: Once = Once::new();

/// Extra trusted roots (a private CA), on top of the platform's: one value per
/// node, handed to each client it builds. Cheap to clone.
#[derive(Clone, Default)]
pub struct Roots(Arc<Vec<reqwest::Certificate>>);

impl std::fmt::Debug for Roots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Roots({} extra)", self.0.len())
    }
}

impl Roots {
    /// The certificates of every PEM file (one or more each).
    pub fn from_files(paths: &[PathBuf]) -> Result<Roots, CaFileError> {
        let mut all = Vec::new();
        for path in paths {
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
            all.extend(certs);
        }
        Ok(Roots(Arc::new(all)))
    }
}

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

/// A client builder trusting the platform's roots; callers add timeouts.
pub fn builder() -> reqwest::ClientBuilder {
    builder_with(&Roots::default())
}

/// A client builder trusting the platform's roots and `roots`.
pub fn builder_with(roots: &Roots) -> reqwest::ClientBuilder {
    install_crypto_provider();
    let b = reqwest::Client::builder().user_agent(concat!("livenessd/", env!("CARGO_PKG_VERSION")));
    if roots.0.is_empty() {
        b
    } else {
        b.tls_certs_merge(roots.0.iter().cloned())
    }
}
