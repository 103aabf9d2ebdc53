//! TLS for `--tls`: a self-signed certificate made at start, and the rustls acceptor (ring
//! provider) that serves it. HTTP/1.1 only is offered, so a dropped connection means the same
//! thing to every client.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::{EmulatorError, TlsMaterial};

fn tls_error(e: impl std::fmt::Display) -> EmulatorError {
    EmulatorError::Tls(e.to_string())
}

/// A self-signed certificate for `names` plus `localhost` and `127.0.0.1`.
pub(crate) fn self_signed(names: &[String]) -> Result<TlsMaterial, EmulatorError> {
    let mut sans: Vec<String> = Vec::new();
    for name in names
        .iter()
        .map(|n| n.trim())
        .chain(["localhost", "127.0.0.1"])
    {
        // An IPv6 address may arrive in URL brackets; the certificate wants it bare.
        let name = name.trim_start_matches('[').trim_end_matches(']');
        if !name.is_empty() && !sans.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            sans.push(name.to_owned());
        }
    }
    let mut params = rcgen::CertificateParams::new(sans).map_err(tls_error)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "embatch EM emulator");
    let key = rcgen::KeyPair::generate().map_err(tls_error)?;
    let cert = params.self_signed(&key).map_err(tls_error)?;
    Ok(TlsMaterial {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The acceptor serving `material`.
pub(crate) fn acceptor(material: &TlsMaterial) -> Result<TlsAcceptor, EmulatorError> {
    let certs = CertificateDer::pem_slice_iter(material.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(format!("certificate: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error("the certificate PEM holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(material.key_pem.as_bytes())
        .map_err(|e| tls_error(format!("private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(tls_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_serves() {
        let m = self_signed(&["10.0.0.5".into(), "em.tech.local".into(), "[::1]".into()]).unwrap();
        assert!(m.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(m.key_pem.contains("PRIVATE KEY"));
        acceptor(&m).unwrap();
        assert!(!format!("{m:?}").contains("PRIVATE"));
    }

    #[test]
    fn garbage_material_is_refused() {
        let bad = TlsMaterial {
            cert_pem: "nope".into(),
            key_pem: "nope".into(),
        };
        assert!(matches!(acceptor(&bad), Err(EmulatorError::Tls(_))));
    }
}
