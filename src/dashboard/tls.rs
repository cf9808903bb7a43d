//! TLS for the dashboard (rustls, with the aws-lc-rs provider curl's TLS
//! already builds): a certificate chain and key from PEM files, and with
//! `--client-ca` a client certificate signed by that CA required of every
//! connection.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The PEM files `fleet serve` is given.
#[derive(Clone, Debug)]
pub(crate) struct TlsFiles<'a> {
    /// The server's certificate chain.
    pub cert: &'a Path,
    /// Its key.
    pub key: &'a Path,
    /// The CA whose client certificates are let in, if clients must show
    /// one.
    pub client_ca: Option<&'a Path>,
}

/// Certificates of a PEM file, at least one.
fn certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .with_context(|| format!("failed to read the {what} {}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("the {what} {} holds no certificate", path.display());
    }
    Ok(certs)
}

/// The server's TLS configuration.
pub(crate) fn server_config(files: &TlsFiles<'_>) -> Result<Arc<rustls::ServerConfig>> {
    let chain = certs(files.cert, "certificate file (--tls-cert)")?;
    let key = PrivateKeyDer::from_pem_file(files.key).with_context(|| {
        format!(
            "failed to read the key file (--tls-key) {}",
            files.key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("failed to set up TLS")?;
    let builder = match files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca, "client CA file (--client-ca)")? {
                roots.add(c).with_context(|| {
                    format!(
                        "the client CA file {} holds a bad certificate",
                        ca.display()
                    )
                })?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .with_context(|| {
                        format!("cannot verify clients with the CA of {}", ca.display())
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(chain, key).with_context(|| {
        format!(
            "the key {} does not go with the certificate {}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    Ok(Arc::new(config))
}
