//! Certificate trust for the client's HTTPS connections: the rustls configuration (ring as the
//! crypto provider, chosen explicitly rather than left to a process-wide default), with
//! the system roots, exactly the certificates of a PEM file, one certificate pinned by its
//! SHA-256 fingerprint, or no verification at all.
//!
//! A certificate refused is described in the error (its subject, issuer, validity and
//! fingerprint, and what was wrong with it: a `CertificateRefusal`, from `certificate`), so that
//! the message can say how to trust it: the verifier carries the description inside the rustls
//! error, where the client finds it again.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};

use super::certificate::{
    CertificateProblem, CertificateRefusal, Fingerprint, PresentedCertificate, timestamp,
};
use super::{EmError, TlsOptions};

/// The refusal carried by an error of `chain`, the errors below a failed request: rustls keeps
/// the verifier's error in the `io::Error` that the connection fails with.
pub(crate) fn refusal_in(
    chain: &[&(dyn std::error::Error + 'static)],
) -> Option<CertificateRefusal> {
    chain.iter().find_map(|e| {
        if let Some(refusal) = e.downcast_ref::<CertificateRefusal>() {
            return Some(refusal.clone());
        }
        match e.downcast_ref::<rustls::Error>()? {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
                inner.downcast_ref::<CertificateRefusal>().cloned()
            }
            _ => None,
        }
    })
}

/// Builds the rustls client configuration `options` asks for.
pub(crate) fn client_config(options: &TlsOptions) -> Result<rustls::ClientConfig, EmError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| EmError::Setup(format!("tls protocol versions: {e}")))?;
    // The command line refuses these together already; a library caller gets the same answer.
    if options.ca_fingerprint.is_some() && (options.insecure || options.ca_cert.is_some()) {
        return Err(EmError::Setup(
            "a pinned certificate fingerprint excludes both accepting any certificate and a CA \
             file"
                .into(),
        ));
    }
    let trust = if options.insecure {
        tracing::warn!(
            "TLS certificate verification is disabled: any server certificate is accepted"
        );
        Trust::Any
    } else if let Some(pin) = options.ca_fingerprint {
        Trust::Pinned(pin)
    } else {
        let roots = match &options.ca_cert {
            Some(path) => roots_from_pem(path)?,
            None => system_roots(),
        };
        if roots.is_empty() {
            Trust::Nothing
        } else {
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| EmError::Setup(format!("certificate verifier: {e}")))?;
            Trust::Roots(webpki)
        }
    };
    let verifier = Verifier {
        trust,
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
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

/// Which server certificates are accepted.
#[derive(Debug)]
enum Trust {
    /// Any (`insecure`).
    Any,
    /// Exactly the one with this fingerprint, whatever its issuer, names and dates: the pin is
    /// the user's decision to trust that certificate, as an ssh host key is.
    Pinned(Fingerprint),
    /// Those the roots vouch for, for the host the URL names, within their validity.
    Roots(Arc<WebPkiServerVerifier>),
    /// None: there are no roots to vouch for any.
    Nothing,
}

/// The client's verifier. A certificate it refuses is described in the error
/// ([`CertificateRefusal`]). Handshake signatures are checked whatever the trust, so the peer
/// must at least hold the key of the certificate it shows.
#[derive(Debug)]
struct Verifier {
    trust: Trust,
    algorithms: WebPkiSupportedAlgorithms,
}

/// The rustls error that refuses `end_entity` for `problem`, carrying its description.
fn refuse(problem: CertificateProblem, end_entity: &CertificateDer<'_>) -> rustls::Error {
    let refusal = CertificateRefusal {
        problem,
        presented: PresentedCertificate::read(end_entity.as_ref()),
    };
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(refusal))))
}

/// The problem a rustls certificate error names, with the presented certificate's dates where
/// the error has none.
fn problem_of(error: CertificateError, end_entity: &CertificateDer<'_>) -> CertificateProblem {
    let time = |t: UnixTime| timestamp(i64::try_from(t.as_secs()).unwrap_or(i64::MAX));
    let presented = || PresentedCertificate::read(end_entity.as_ref());
    let now = || time(UnixTime::now());
    match error {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            CertificateProblem::Untrusted
        }
        CertificateError::ExpiredContext {
            time: at,
            not_after,
        } => CertificateProblem::Expired {
            not_after: time(not_after),
            now: time(at),
        },
        CertificateError::Expired => CertificateProblem::Expired {
            not_after: presented().not_after.unwrap_or_else(|| "?".into()),
            now: now(),
        },
        CertificateError::NotValidYetContext {
            time: at,
            not_before,
        } => CertificateProblem::NotYetValid {
            not_before: time(not_before),
            now: time(at),
        },
        CertificateError::NotValidYet => CertificateProblem::NotYetValid {
            not_before: presented().not_before.unwrap_or_else(|| "?".into()),
            now: now(),
        },
        CertificateError::NotValidForNameContext { expected, .. } => {
            CertificateProblem::WrongName {
                expected: server_name_text(&expected),
            }
        }
        CertificateError::NotValidForName => CertificateProblem::WrongName {
            expected: "the URL's host".into(),
        },
        CertificateError::Revoked => CertificateProblem::Revoked,
        other => CertificateProblem::Other(other.to_string()),
    }
}

/// A server name as the URL wrote it.
fn server_name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(dns) => dns.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.trust {
            Trust::Any => Ok(ServerCertVerified::assertion()),
            Trust::Pinned(pin) => {
                if Fingerprint::of(end_entity.as_ref()) == *pin {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(refuse(
                        CertificateProblem::PinMismatch { expected: *pin },
                        end_entity,
                    ))
                }
            }
            Trust::Roots(webpki) => webpki
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map_err(|e| match e {
                    rustls::Error::InvalidCertificate(error) => {
                        refuse(problem_of(error, end_entity), end_entity)
                    }
                    other => other,
                }),
            Trust::Nothing => Err(refuse(CertificateProblem::Untrusted, end_entity)),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::em::certificate::tests::fixed_der;

    fn verifier(trust: Trust) -> Verifier {
        Verifier {
            trust,
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }

    fn roots(ca: &CertificateDer<'static>) -> Trust {
        let mut store = RootCertStore::empty();
        store.add(ca.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Trust::Roots(
            WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider)
                .build()
                .unwrap(),
        )
    }

    /// What `verifier` makes of `cert` for `host`: accepted, or the refusal it describes.
    fn verdict(
        verifier: &Verifier,
        cert: &CertificateDer<'_>,
        host: &str,
    ) -> Result<(), Box<CertificateRefusal>> {
        let name = ServerName::try_from(host.to_owned()).unwrap();
        match verifier.verify_server_cert(cert, &[], &name, &[], UnixTime::now()) {
            Ok(_) => Ok(()),
            Err(e) => Err(Box::new(
                refusal_in(&[&e]).expect("a refusal describes the certificate"),
            )),
        }
    }

    /// A CA, and a leaf for `names` it signed, valid from `from` to `until` (years).
    fn issued(
        names: &[&str],
        from: i32,
        until: i32,
    ) -> (CertificateDer<'static>, CertificateDer<'static>) {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "Test Root CA");
        let ca =
            rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();
        let mut leaf =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        leaf.not_before = rcgen::date_time_ymd(from, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(until, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = leaf.signed_by(&key, &ca).unwrap();
        (ca.der().clone(), leaf.der().clone())
    }

    #[test]
    fn a_self_signed_certificate_is_described_with_how_to_trust_it() {
        let made = rcgen::generate_simple_self_signed(vec!["em.example".to_owned()]).unwrap();
        let cert = made.cert.der().clone();
        let (ca, _) = issued(&["other.example"], 2000, 3000);
        for trust in [roots(&ca), Trust::Nothing] {
            let refusal = verdict(&verifier(trust), &cert, "em.example").unwrap_err();
            assert_eq!(refusal.problem, CertificateProblem::Untrusted);
            let p = &refusal.presented;
            assert_eq!(p.fingerprint, Fingerprint::of(cert.as_ref()));
            assert_eq!(p.subject, "CN=rcgen self signed cert");
            assert!(p.self_signed);
            assert_eq!(p.not_before.as_deref(), Some("1975-01-01T00:00:00Z"));
            assert_eq!(p.not_after.as_deref(), Some("4096-01-01T00:00:00Z"));
            let line = refusal.to_string();
            assert!(line.contains("self-signed") && line.contains(&p.fingerprint.to_string()));
            let advice = refusal.advice().join("\n");
            for part in [
                "subject: CN=rcgen self signed cert",
                "(self-signed)",
                "valid: from 1975-01-01T00:00:00Z to 4096-01-01T00:00:00Z",
                &format!("SHA-256 fingerprint: {}", p.fingerprint),
                "--ca-cert FILE",
                "--ca-fingerprint SHA256",
                &format!("--ca-fingerprint {}", p.fingerprint),
            ] {
                assert!(advice.contains(part), "{part}:\n{advice}");
            }
        }
    }

    #[test]
    fn expired_and_misnamed_certificates_say_what_is_wrong() {
        let (ca, old) = issued(&["em.example"], 2000, 2001);
        let verifier = verifier(roots(&ca));
        let refusal = verdict(&verifier, &old, "em.example").unwrap_err();
        let CertificateProblem::Expired { not_after, .. } = &refusal.problem else {
            panic!("{refusal}");
        };
        assert_eq!(not_after, "2001-01-01T00:00:00Z");
        assert!(
            refusal
                .to_string()
                .contains("expired at 2001-01-01T00:00:00Z")
        );
        assert!(refusal.advice().join("\n").contains("renewed"));

        let (ca, later) = issued(&["em.example"], 2999, 3000);
        let refusal = verdict(&self::verifier(roots(&ca)), &later, "em.example").unwrap_err();
        assert!(
            matches!(refusal.problem, CertificateProblem::NotYetValid { .. }),
            "{refusal}"
        );
        assert!(refusal.advice().join("\n").contains("clocks"));

        let (ca, good) = issued(&["em.example", "10.0.0.5"], 2000, 3000);
        let verifier = self::verifier(roots(&ca));
        assert_eq!(verdict(&verifier, &good, "em.example"), Ok(()));
        let refusal = verdict(&verifier, &good, "em.other.example").unwrap_err();
        assert_eq!(
            refusal.problem,
            CertificateProblem::WrongName {
                expected: "em.other.example".into(),
            }
        );
        assert_eq!(refusal.presented.names, ["em.example", "10.0.0.5"]);
        assert!(
            refusal
                .to_string()
                .contains("issued for em.example, 10.0.0.5, not for em.other.example"),
            "{refusal}"
        );
        assert!(!refusal.presented.self_signed);
        assert!(
            refusal
                .advice()
                .join("\n")
                .contains("issuer: CN=Test Root CA")
        );
    }

    #[test]
    fn a_pin_accepts_its_certificate_alone_whatever_its_issuer_name_and_dates() {
        let (_, old) = issued(&["em.example"], 2000, 2001);
        let pin = Fingerprint::of(old.as_ref());
        let pinned = verifier(Trust::Pinned(pin));
        assert_eq!(verdict(&pinned, &old, "another.example"), Ok(()));
        let other = fixed_der();
        let refusal = verdict(&pinned, &other, "another.example").unwrap_err();
        assert_eq!(
            refusal.problem,
            CertificateProblem::PinMismatch { expected: pin }
        );
        let line = refusal.to_string();
        assert!(
            line.contains(&pin.to_string())
                && line.contains(&Fingerprint::of(other.as_ref()).to_string()),
            "{line}"
        );
        assert_eq!(refusal.presented.subject, "CN=fixed.example");
        assert!(refusal.advice().join("\n").contains("replaced on purpose"));
    }

    #[test]
    fn server_text_in_a_refusal_can_be_redacted_and_clipped() {
        let made = rcgen::generate_simple_self_signed(vec!["em.example".to_owned()]).unwrap();
        let refusal =
            verdict(&verifier(Trust::Nothing), made.cert.der(), "em.example").unwrap_err();
        let mapped = (*refusal).map_outside(|t| t.replace("rcgen", "***"));
        assert_eq!(mapped.presented.subject, "CN=*** self signed cert");
        assert_eq!(mapped.presented.issuer, "CN=*** self signed cert");
    }
}
