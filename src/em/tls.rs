//! Certificate trust for the client's HTTPS connections: the rustls configuration (ring as the
//! crypto provider, chosen explicitly because reqwest is built without a default provider), with
//! the system roots, exactly the certificates of a PEM file, one certificate pinned by its
//! SHA-256 fingerprint, or no verification at all.
//!
//! A certificate refused is described in the error (its subject, issuer, validity and
//! fingerprint, and what was wrong with it), so that the message can say how to trust it: the
//! verifier carries the description inside the rustls error, where the client finds it again.

use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use sha2::{Digest as _, Sha256};

use super::{EmError, TlsOptions};

/// The SHA-256 digest of a certificate's DER form: what `openssl x509 -noout -fingerprint
/// -sha256` prints, and what `--ca-fingerprint` pins.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

/// Why a text is not a SHA-256 fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FingerprintError {
    /// Nothing was given.
    #[error("it is empty")]
    Empty,
    /// A label before `=` other than the one openssl prints.
    #[error("'{0}=' is not the label openssl prints (`sha256 Fingerprint=`)")]
    Label(String),
    /// A character that is neither a hex digit nor a colon between pairs.
    #[error("'{0}' is not a hex digit")]
    NotHex(char),
    /// Colons that do not separate pairs of hex digits.
    #[error("'{0}' is not a pair of hex digits between colons")]
    Group(String),
    /// Hex digits of another digest (SHA-1 has 40), or some missing.
    #[error(
        "it has {0} hex digits, and a SHA-256 fingerprint has 64 (SHA-1 fingerprints, with 40, are not accepted)"
    )]
    Length(usize),
}

impl Fingerprint {
    /// The fingerprint of a certificate's DER bytes.
    pub fn of(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }

    /// Reads a fingerprint as openssl prints it, and as people copy it: 64 hex digits in either
    /// case, bare or in colon-separated pairs, with or without openssl's `sha256 Fingerprint=`
    /// label (`SHA256 Fingerprint=` before OpenSSL 3).
    pub fn parse(text: &str) -> Result<Fingerprint, FingerprintError> {
        let mut hex_text = text.trim();
        if let Some((label, rest)) = hex_text.split_once('=') {
            if !label.trim().eq_ignore_ascii_case("sha256 fingerprint") {
                return Err(FingerprintError::Label(label.trim().to_owned()));
            }
            hex_text = rest.trim();
        }
        if hex_text.is_empty() {
            return Err(FingerprintError::Empty);
        }
        let digits: String = if hex_text.contains(':') {
            let mut digits = String::with_capacity(64);
            for group in hex_text.split(':') {
                if let Some(c) = group.chars().find(|c| !c.is_ascii_hexdigit()) {
                    return Err(FingerprintError::NotHex(c));
                }
                if group.len() != 2 {
                    return Err(FingerprintError::Group(group.to_owned()));
                }
                digits.push_str(group);
            }
            digits
        } else {
            if let Some(c) = hex_text.chars().find(|c| !c.is_ascii_hexdigit()) {
                return Err(FingerprintError::NotHex(c));
            }
            hex_text.to_owned()
        };
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&digits, &mut bytes)
            .map_err(|_| FingerprintError::Length(digits.len()))?;
        Ok(Fingerprint(bytes))
    }
}

/// Uppercase hex pairs joined by colons, as openssl prints it.
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// The end-entity certificate a server presented, as far as it could be read. Its texts came
/// from the server: stored raw, escaped when shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresentedCertificate {
    /// The SHA-256 fingerprint of its DER form.
    pub fingerprint: Fingerprint,
    /// Its subject, e.g. `CN=em.example.com`; or why it could not be read.
    pub subject: String,
    /// Its issuer.
    pub issuer: String,
    /// Whether it is its own issuer.
    pub self_signed: bool,
    /// The host names and addresses it is issued for (its subject alternative names).
    pub names: Vec<String>,
    /// The start of its validity, RFC 3339 in UTC.
    pub not_before: Option<String>,
    /// The end of its validity, RFC 3339 in UTC.
    pub not_after: Option<String>,
}

impl PresentedCertificate {
    /// Reads what a person needs to recognise the certificate. One that cannot be parsed still
    /// has its fingerprint, which is all a pin needs.
    fn read(der: &[u8]) -> PresentedCertificate {
        let fingerprint = Fingerprint::of(der);
        match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => {
                let name = |n: &x509_parser::x509::X509Name<'_>| {
                    let text = n.to_string();
                    if text.is_empty() {
                        "(empty)".to_owned()
                    } else {
                        text
                    }
                };
                let validity = cert.validity();
                PresentedCertificate {
                    fingerprint,
                    subject: name(cert.subject()),
                    issuer: name(cert.issuer()),
                    self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
                    names: alt_names(&cert),
                    not_before: Some(timestamp(validity.not_before.timestamp())),
                    not_after: Some(timestamp(validity.not_after.timestamp())),
                }
            }
            Err(e) => PresentedCertificate {
                fingerprint,
                subject: format!("(unreadable certificate: {e})"),
                issuer: "(unknown)".to_owned(),
                self_signed: false,
                names: Vec::new(),
                not_before: None,
                not_after: None,
            },
        }
    }
}

/// The DNS names and IP addresses among `cert`'s subject alternative names.
fn alt_names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes)
                    .ok()
                    .map(|b| std::net::IpAddr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(*bytes)
                    .ok()
                    .map(|b| std::net::IpAddr::from(b).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Seconds since the epoch as RFC 3339 in UTC, like every timestamp embatch shows; a time past
/// what RFC 3339 can write (years beyond 9999) as its seconds.
fn timestamp(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{seconds} s after 1970"))
}

/// What was wrong with a server's certificate, in terms a person can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertificateProblem {
    /// No trusted CA vouches for it: self-signed, or issued by a CA this machine does not trust.
    Untrusted,
    /// Its validity ended.
    Expired {
        /// The end of its validity, RFC 3339.
        not_after: String,
        /// The time it was checked at, RFC 3339.
        now: String,
    },
    /// Its validity has not begun.
    NotYetValid {
        /// The start of its validity, RFC 3339.
        not_before: String,
        /// The time it was checked at, RFC 3339.
        now: String,
    },
    /// It is not issued for the host name or address the URL names.
    WrongName {
        /// The host of the URL.
        expected: String,
    },
    /// It is not the certificate `--ca-fingerprint` pins.
    PinMismatch {
        /// The pinned fingerprint.
        expected: Fingerprint,
    },
    /// Its CA revoked it.
    Revoked,
    /// Anything else the verifier found.
    Other(String),
}

/// A server certificate the client refused, with what it presented: nothing was sent over that
/// connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateRefusal {
    /// What was wrong.
    pub problem: CertificateProblem,
    /// The certificate.
    pub presented: PresentedCertificate,
}

impl CertificateRefusal {
    /// The refusal with every text that came from the server passed through `outside` (the
    /// client's redaction and clipping).
    pub(crate) fn map_outside(mut self, outside: impl Fn(&str) -> String) -> CertificateRefusal {
        let p = &mut self.presented;
        p.subject = outside(&p.subject);
        p.issuer = outside(&p.issuer);
        for name in p.names.iter_mut() {
            *name = outside(name);
        }
        if let CertificateProblem::Other(text) = &mut self.problem {
            *text = outside(text);
        }
        self
    }

    /// What the server presented and what to do about the refusal, a line each, to print after
    /// the error. Their texts are raw: the printer escapes them.
    pub fn advice(&self) -> Vec<String> {
        let p = &self.presented;
        let fp = p.fingerprint;
        let mut lines = vec![
            "the server presented this certificate:".to_owned(),
            format!("  subject: {}", p.subject),
            if p.self_signed {
                format!("  issuer: {} (self-signed)", p.issuer)
            } else {
                format!("  issuer: {}", p.issuer)
            },
            format!(
                "  issued for: {}",
                if p.names.is_empty() {
                    "(no host names)".to_owned()
                } else {
                    p.names.join(", ")
                }
            ),
            format!(
                "  valid: from {} to {}",
                p.not_before.as_deref().unwrap_or("?"),
                p.not_after.as_deref().unwrap_or("?")
            ),
            format!("  SHA-256 fingerprint: {fp}"),
        ];
        let pin_line = format!(
            "  --ca-fingerprint SHA256 to trust this one certificate: first compare the \
             fingerprint above with the certificate on the server itself (`openssl x509 -noout \
             -fingerprint -sha256 -in CERT`), then pass --ca-fingerprint {fp}"
        );
        match &self.problem {
            CertificateProblem::Untrusted => {
                lines.push("to trust it, either:".to_owned());
                lines.push(
                    "  --ca-cert FILE with the certificate of the CA that issued it (PEM; for a \
                     self-signed certificate, the certificate itself), or"
                        .to_owned(),
                );
                lines.push(pin_line);
            }
            CertificateProblem::Expired { .. } => {
                lines.push(
                    "the server's certificate must be renewed (or, if this machine's clock is \
                     wrong, the clock set right); until then:"
                        .to_owned(),
                );
                lines.push(pin_line);
            }
            CertificateProblem::NotYetValid { .. } => {
                lines.push(
                    "check the clocks of this machine and of the server; a certificate issued \
                     for the future is refused until its time comes"
                        .to_owned(),
                );
            }
            CertificateProblem::WrongName { .. } => {
                lines.push(
                    "connect with a name the certificate holds (--url https://NAME:PORT/api), \
                     have it reissued for this name, or:"
                        .to_owned(),
                );
                lines.push(pin_line);
            }
            CertificateProblem::PinMismatch { .. } => lines.push(
                "if the server's certificate was replaced on purpose, check the new fingerprint \
                 with the server's administrator and pass it to --ca-fingerprint; otherwise \
                 something other than the server answers at this address"
                    .to_owned(),
            ),
            CertificateProblem::Revoked => lines.push(
                "its CA has withdrawn it: the server's administrator must replace it".to_owned(),
            ),
            CertificateProblem::Other(_) => {}
        }
        lines
    }
}

/// One line: what is wrong, in plain words.
impl fmt::Display for CertificateRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.presented;
        match &self.problem {
            CertificateProblem::Untrusted if p.self_signed => write!(
                f,
                "the server's certificate is self-signed, and not trusted here (subject {}, \
                 SHA-256 {})",
                p.subject, p.fingerprint
            ),
            CertificateProblem::Untrusted => write!(
                f,
                "the server's certificate is issued by {}, which is not a CA trusted here \
                 (subject {}, SHA-256 {})",
                p.issuer, p.subject, p.fingerprint
            ),
            CertificateProblem::Expired { not_after, now } => write!(
                f,
                "the server's certificate expired at {not_after} (it is now {now}; subject {}, \
                 SHA-256 {})",
                p.subject, p.fingerprint
            ),
            CertificateProblem::NotYetValid { not_before, now } => write!(
                f,
                "the server's certificate is not valid before {not_before} (it is now {now}; \
                 subject {}, SHA-256 {})",
                p.subject, p.fingerprint
            ),
            CertificateProblem::WrongName { expected } => write!(
                f,
                "the server's certificate is issued for {}, not for {expected} (subject {}, \
                 SHA-256 {})",
                if p.names.is_empty() {
                    "no host name".to_owned()
                } else {
                    p.names.join(", ")
                },
                p.subject,
                p.fingerprint
            ),
            CertificateProblem::PinMismatch { expected } => write!(
                f,
                "the server's certificate is not the one --ca-fingerprint pins: expected SHA-256 \
                 {expected}, presented {} (subject {})",
                p.fingerprint, p.subject
            ),
            CertificateProblem::Revoked => write!(
                f,
                "the server's certificate has been revoked (subject {}, SHA-256 {})",
                p.subject, p.fingerprint
            ),
            CertificateProblem::Other(what) => write!(
                f,
                "the server's certificate was refused: {what} (subject {}, SHA-256 {})",
                p.subject, p.fingerprint
            ),
        }
    }
}

impl std::error::Error for CertificateRefusal {}

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

    fn fixed_der() -> CertificateDer<'static> {
        rustls_pemfile::certs(&mut FIXED_CERT.as_bytes())
            .next()
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_fingerprint_is_written_as_openssl_writes_it() {
        let fp = Fingerprint::of(fixed_der().as_ref());
        assert_eq!(format!("sha256 Fingerprint={fp}"), FIXED_OPENSSL);
        assert_eq!(format!("{fp:?}"), format!("Fingerprint({fp})"));
    }

    #[test]
    fn fingerprints_are_read_as_people_copy_them() {
        let fp = Fingerprint::of(fixed_der().as_ref());
        let colons = fp.to_string();
        let bare: String = colons.replace(':', "");
        let openssl1 = format!("SHA256 Fingerprint={colons}");
        for text in [
            colons.clone(),
            colons.to_lowercase(),
            bare.clone(),
            bare.to_lowercase(),
            FIXED_OPENSSL.to_owned(),
            openssl1,
            format!("  {colons}\n"),
            format!("sha256 fingerprint = {bare}"),
        ] {
            assert_eq!(Fingerprint::parse(&text), Ok(fp), "{text}");
        }
    }

    #[test]
    fn what_is_no_sha256_fingerprint_is_refused_with_the_reason() {
        use FingerprintError::*;
        let cases: [(&str, FingerprintError); 9] = [
            ("", Empty),
            ("sha256 Fingerprint=", Empty),
            (&"ab".repeat(31), Length(62)),
            (&"ab".repeat(33), Length(66)),
            // A SHA-1 fingerprint, which is what Windows shows as the thumbprint.
            (&format!("{}AB", "AB:".repeat(19)), Length(40)),
            (&"zz".repeat(32), NotHex('z')),
            (&format!("{}AB:C", "AB:".repeat(30)), Group("C".into())),
            (&format!("{}ABC", "AB:".repeat(31)), Group("ABC".into())),
            (
                &format!("md5 Fingerprint={}", "ab".repeat(32)),
                Label("md5 Fingerprint".into()),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(Fingerprint::parse(text), Err(expected), "{text}");
        }
        assert_eq!(
            Fingerprint::parse(&format!("{} ", "AB:".repeat(31) + "A-")),
            Err(NotHex('-'))
        );
        // The message says what a fingerprint is.
        assert!(Length(40).to_string().contains("64"));
    }

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

    #[test]
    fn an_unreadable_certificate_still_has_its_fingerprint() {
        let p = PresentedCertificate::read(b"not DER");
        assert_eq!(p.fingerprint, Fingerprint::of(b"not DER"));
        assert!(
            p.subject.starts_with("(unreadable certificate"),
            "{}",
            p.subject
        );
        assert_eq!((p.not_before, p.not_after), (None, None));
    }
}
