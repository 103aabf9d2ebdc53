//! Certificate trust for the client's HTTPS connections: the rustls configuration (ring as the
//! crypto provider, chosen explicitly because reqwest is built without a default provider), with
//! the system roots, exactly the certificates of a PEM file, or no verification at all.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{EmError, TlsOptions};

/// Builds the rustls client configuration `options` asks for.
pub(crate) fn client_config(options: &TlsOptions) -> Result<rustls::ClientConfig, EmError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| EmError::Setup(format!("tls protocol versions: {e}")))?;
    let mut config = if options.insecure {
        tracing::warn!(
            "TLS certificate verification is disabled: any server certificate is accepted"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth()
    } else {
        let roots = match &options.ca_cert {
            Some(path) => roots_from_pem(path)?,
            None => system_roots(),
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    // EM (HTTP.sys) speaks HTTP/1.1; offering only that keeps connection behaviour the same
    // over TLS and plain HTTP.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Exactly the certificates in the PEM file at `path`.
fn roots_from_pem(path: &Path) -> Result<RootCertStore, EmError> {
    let shown = path.display();
    let file = File::open(path)
        .map_err(|e| EmError::Setup(format!("read CA certificate {shown}: {e}")))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<_, _>>()
        .map_err(|e| EmError::Setup(format!("read CA certificate {shown}: {e}")))?;
    if certs.is_empty() {
        return Err(EmError::Setup(format!("no PEM certificate in {shown}")));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| EmError::Setup(format!("CA certificate {shown}: {e}")))?;
    }
    Ok(roots)
}

/// The operating system's trusted roots. A store that cannot be read fully is used as far as
/// it goes: a server it cannot vouch for is refused at connect time, with a clear error.
fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!("skipping part of the system certificate store: {error}");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!("trusting {added} system root certificates ({ignored} unparsable)");
    if added == 0 {
        tracing::warn!(
            "no system root certificates found; HTTPS servers cannot be verified without --ca-cert"
        );
    }
    roots
}

/// A verifier that accepts any server certificate (for `insecure`). Handshake signatures are
/// still checked, so the peer must at least hold the key of the certificate it shows.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
