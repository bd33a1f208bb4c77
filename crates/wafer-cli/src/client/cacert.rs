//! `--cacert`: trusting a user's own certificate for an `https://` server.
//!
//! Each certificate given is trusted two ways: as a root, for a server whose certificate it
//! signed, and as the server's own certificate when the server presents exactly it. The
//! second is what a self-signed certificate made the common way needs: `openssl req -x509`
//! marks it a CA (`basicConstraints CA:TRUE`), which WebPKI refuses as a server's own
//! certificate (`CaUsedAsEndEntity`), while curl and Python accept it when told to trust it.
//! Such a certificate must still name the server, be within its validity period, and the
//! server must prove it holds its key (the handshake signature); everything else is checked
//! by WebPKI as for any server, against the built-in roots and the given certificates.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};

/// A TLS client configuration trusting the built-in roots and the PEM certificates in
/// `pem` (read from `path`, named in errors).
pub(super) fn tls_config(path: &Path, pem: &[u8]) -> anyhow::Result<ClientConfig> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not a PEM certificate", path.display()))?;
    anyhow::ensure!(
        !certificates.is_empty(),
        "{}: no PEM certificate in it",
        path.display()
    );
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for certificate in &certificates {
        roots
            .add(certificate.clone())
            .with_context(|| format!("{}: not a usable certificate", path.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("cannot set up certificate verification")?;
    let verifier = GivenOrWebPki {
        given: certificates,
        webpki,
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("cannot set up TLS")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    // reqwest speaks HTTP/1.1 here (it is built without HTTP/2), and says so as it does with
    // its own TLS set-up.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// WebPKI, and besides it a server certificate byte for byte one of those given.
#[derive(Debug)]
struct GivenOrWebPki {
    given: Vec<CertificateDer<'static>>,
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for GivenOrWebPki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let refused = match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => return Ok(verified),
            Err(refused) => refused,
        };
        let given = self
            .given
            .iter()
            .any(|certificate| certificate.as_ref() == end_entity.as_ref());
        // Only what trusting the certificate itself answers: who issued it, and whether it
        // may stand for a server (WebPKI checks its validity period before either, so a
        // certificate refused for these is within it). A wrong name, an expired or
        // malformed certificate stay refused.
        let overridden = matches!(
            refused,
            rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::Other(_)
            )
        );
        if !(given && overridden) {
            return Err(refused);
        }
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
