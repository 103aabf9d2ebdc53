//! The certificate a server presented, as a person needs to see it: its SHA-256 fingerprint
//! (written and read as openssl prints it, and as `--ca-fingerprint` pins it), its subject,
//! issuer, names and validity, and, when the client refused it, what was wrong and how to trust
//! it if it should be trusted. The verifier that refuses it is in `tls`.

use std::fmt;

use sha2::{Digest as _, Sha256};

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
    pub(super) fn read(der: &[u8]) -> PresentedCertificate {
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
pub(super) fn timestamp(seconds: i64) -> String {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use rustls::pki_types::CertificateDer;

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

    pub(in crate::em) fn fixed_der() -> CertificateDer<'static> {
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
