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
    // The name leaves out the default password (`emulator`): a client redacts every echo of
    // its password in what a server shows, the certificate it refuses included.
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "embatch local EM");
    let key = rcgen::KeyPair::generate().map_err(tls_error)?;
    let cert = params.self_signed(&key).map_err(tls_error)?;
    Ok(TlsMaterial {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The SHA-256 fingerprint of the certificate in `cert_pem` (of its DER form), as `openssl x509
/// -noout -fingerprint -sha256` prints it: uppercase hex pairs joined by colons. Clients pin it
/// to trust the self-signed certificate.
pub(crate) fn fingerprint(cert_pem: &str) -> Result<String, EmulatorError> {
    use sha2::Digest as _;
    let cert = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .next()
        .ok_or_else(|| tls_error("the certificate PEM holds no certificate"))?
        .map_err(|e| tls_error(format!("certificate: {e}")))?;
    let digest = sha2::Sha256::digest(cert.as_ref());
    Ok(digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
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

    /// A certificate made by `openssl req -x509` (P-256, CN=fixed.example).
    const FIXED_CERT: &str = "\
-----BEGIN CERTIFICATE-----
MIIBhDCCASugAwIBAgIUI8uMB0IOOUiHIax3qrD/4e67LbUwCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNZml4ZWQuZXhhbXBsZTAeFw0yNjEyMDMwOTM4NThaFw0zNjEx
MzAwOTM4NThaMBgxFjAUBgNVBAMMDWZpeGVkLmV4YW1wbGUwWTATBgcqhkjOPQIB
BggqhkjOPQMBBwNCAARXwPnnjVAMdjK2ENs4+jE8EqhYbfo5ja03/HuPRg4KWPeD
l7Ab3oGNfsTTRiYzO8BDB5BLbXvBcdntvEFLtfuRo1MwUTAdBgNVHQ4EFgQUJLnX
jJTUXkjJeR/kyPUywTkV7eAwHwYDVR0jBBgwFoAUJLnXjJTUXkjJeR/kyPUywTkV
7eAwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiBn+Wj7yIbeWRhi
d03uRe4GozKcW2apjWewPfKvbFkFRAIgSbwZSqyzISEGrsEWbWIQS4Nv629ZasEQ
ewlDOsCzfs0=
-----END CERTIFICATE-----
";
    /// What `openssl x509 -noout -fingerprint -sha256` (OpenSSL 3) printed for it.
    const FIXED_OPENSSL: &str = "sha256 Fingerprint=36:6F:72:3C:F7:E1:62:3B:B6:2A:CF:EA:6F:7C:37:58:25:84:75:E6:4C:E2:32:AD:AD:20:6A:80:05:42:0C:C2";

    #[test]
    fn a_generated_certificate_serves() {
        let m = self_signed(&["10.0.0.5".into(), "em.tech.local".into(), "[::1]".into()]).unwrap();
        assert!(m.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(m.key_pem.contains("PRIVATE KEY"));
        acceptor(&m).unwrap();
        assert!(!format!("{m:?}").contains("PRIVATE"));
    }

    #[test]
    fn the_fingerprint_is_written_as_openssl_writes_it() {
        // A fixed certificate and the line `openssl x509 -noout -fingerprint -sha256` printed
        // for it.
        let fp = fingerprint(FIXED_CERT).unwrap();
        assert_eq!(format!("sha256 Fingerprint={fp}"), FIXED_OPENSSL);
        let made = self_signed(&[]).unwrap();
        let fp = made.fingerprint().unwrap();
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(fp.split(':').all(|pair| {
            pair.len() == 2
                && pair
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        }));
        assert!(fingerprint("nope").is_err());
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
