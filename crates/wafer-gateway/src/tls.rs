//! HTTPS: the server's certificate and key (PEM files), TLS by rustls with ALPN `h2` and
//! `http/1.1` (so gRPC works over TLS on the same port), and reloading the files in place
//! (the CLI does on SIGHUP) without dropping a connection.
//!
//! A client that speaks plain HTTP to the TLS port gets a plain `400` saying so, and the
//! connection is closed, as nginx does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct TlsError {
    path: PathBuf,
    reason: String,
}

/// The certificate the server presents, reloadable.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<Current>,
    acceptor: TlsAcceptor,
}

/// The certificate now in use, swapped whole on reload.
#[derive(Debug)]
struct Current(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

impl Tls {
    /// The certificate chain in `cert` and the private key in `key` (PEM files).
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let current = Arc::new(Current(ArcSwap::new(Arc::new(certified_key(cert, key)?))));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError {
            path: cert.to_owned(),
            reason: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        }))
    }

    /// Reads the certificate and key files again; new connections get the new certificate.
    /// On an error the old one stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = certified_key(&self.cert, &self.key)?;
        self.current.0.store(Arc::new(key));
        Ok(())
    }

    /// Completes the TLS handshake on `stream`; `None` if it fails, or if the client spoke
    /// plain HTTP (answered with a `400` first).
    pub(crate) async fn accept(&self, stream: TcpStream) -> Option<TlsStream<TcpStream>> {
        let mut first = [0u8; 1];
        // A TLS connection opens with a handshake record (content type 22).
        match stream.peek(&mut first).await {
            Ok(1) if first[0] == 0x16 => {}
            Ok(1) => {
                refuse_plain_http(stream).await;
                return None;
            }
            _ => return None,
        }
        match self.acceptor.accept(stream).await {
            Ok(tls) => Some(tls),
            Err(e) => {
                tracing::debug!("TLS handshake failed: {e}");
                None
            }
        }
    }
}

/// Answers a plain-HTTP request on the TLS port, then closes.
async fn refuse_plain_http(mut stream: TcpStream) {
    const BODY: &str = "this port speaks HTTPS: use https://\n";
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let bad = |path: &Path| {
        let path = path.to_owned();
        move |reason: String| TlsError { path, reason }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert)(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert)(e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(cert)(
            "no certificate in the file (expected PEM `CERTIFICATE` blocks)".into(),
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        bad(key)(match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no private key in the file (expected a PEM `PRIVATE KEY` block)".into()
            }
            e => e.to_string(),
        })
    })?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, private, &provider).map_err(|e| bad(key)(e.to_string()))
}
