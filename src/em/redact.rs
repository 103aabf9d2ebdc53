//! Redaction of the logon's secrets from text the server sent, before any of it is printed,
//! logged or stored.
//!
//! The client sends the password only in the logon's `Authorization: Basic` header and the
//! session token only in `X-RestSvcSessionId`, but a server (or a proxy before it) may quote
//! either back: in an error body, a header, or an answer the decoder refuses. Such text reaches
//! stderr, the log output and the audit log, so every string from the server passes through a
//! [`Redactor`] first.
//!
//! The password is looked for in every form an echo could take: as it is, escaped as JSON or
//! XML would write it, percent-encoded, and inside base64 (the Basic credentials, whatever the
//! alphabet, the padding, the user's case or whatever precedes the password), which is found by
//! decoding every run of base64 letters long enough to hold it.

use std::collections::VecDeque;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};

/// What a secret is replaced with.
const MASK: &str = "***";

/// Session tokens remembered: a run logs on again whenever its session expires, and an echo may
/// quote a token of a session that has since ended; a bound keeps a server that hands out a
/// new token for every request from making each redaction slower.
const KEPT_TOKENS: usize = 16;

/// Base64 decoders that accept what an echo may have done to the padding and the last bits.
const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

/// Removes the password and the session tokens from text. Never shows either in `Debug`.
pub(crate) struct Redactor {
    /// The password, as bytes to look for in decoded base64.
    password: Vec<u8>,
    /// The password's literal forms, and the Basic credentials' base64 forms, longest first.
    literals: Vec<String>,
    /// The session tokens handed out, newest last.
    tokens: Mutex<VecDeque<String>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactor(***)")
    }
}

impl Redactor {
    /// A redactor of `password`, sent as the Basic credentials of `user`.
    pub(crate) fn new(user: &str, password: &str) -> Redactor {
        let mut literals = Vec::new();
        if !password.is_empty() {
            literals.push(password.to_string());
            let json = serde_json::to_string(password).expect("a string always serializes");
            literals.push(json[1..json.len() - 1].to_string());
            literals.push(quick_xml::escape::escape(password).into_owned());
            literals.push(url::form_urlencoded::byte_serialize(password.as_bytes()).collect());
            let basic = format!("{user}:{password}");
            for engine in [
                general_purpose::STANDARD,
                general_purpose::STANDARD_NO_PAD,
                general_purpose::URL_SAFE,
                general_purpose::URL_SAFE_NO_PAD,
            ] {
                literals.push(engine.encode(&basic));
            }
        }
        // A longer form first, so that a shorter one inside it cannot break it up unseen.
        literals.sort_by_key(|l| std::cmp::Reverse(l.len()));
        literals.dedup();
        Redactor {
            password: password.as_bytes().to_vec(),
            literals,
            tokens: Mutex::new(VecDeque::new()),
        }
    }

    /// Remembers a session token, so that it is redacted from now on.
    pub(crate) fn add_token(&self, token: &str) {
        if token.is_empty() {
            return;
        }
        let mut tokens = self.tokens();
        if tokens.iter().any(|t| t == token) {
            return;
        }
        if tokens.len() == KEPT_TOKENS {
            tokens.pop_front();
        }
        tokens.push_back(token.to_string());
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, VecDeque<String>> {
        self.tokens
            .lock()
            .expect("the token list is never held across a panic")
    }

    /// `text` with every form of the password and every remembered token replaced by `***`.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        for literal in &self.literals {
            if text.contains(literal.as_str()) {
                text = text.replace(literal.as_str(), MASK);
            }
        }
        let mut tokens: Vec<String> = self.tokens().iter().cloned().collect();
        // Longest first, as the literals, should one token begin another.
        tokens.sort_by_key(|t| std::cmp::Reverse(t.len()));
        for token in &tokens {
            if text.contains(token.as_str()) {
                text = text.replace(token.as_str(), MASK);
            }
        }
        self.redact_base64(&text)
    }

    /// `text` with every run of base64 letters that decodes to something holding the password
    /// replaced by `***`.
    fn redact_base64(&self, text: &str) -> String {
        if self.password.is_empty() {
            return text.to_string();
        }
        // The fewest letters that can encode the password, after up to two bytes before it.
        let shortest = (self.password.len() * 4).div_ceil(3);
        let bytes = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        let mut i = 0;
        while i < bytes.len() {
            if !is_base64_letter(bytes[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && is_base64_letter(bytes[i]) {
                i += 1;
            }
            let letters = i;
            while i < bytes.len() && bytes[i] == b'=' {
                i += 1;
            }
            // Runs are ASCII, so their ends are character boundaries.
            if letters - start >= shortest && self.holds_password(&text[start..letters]) {
                out.push_str(&text[copied..start]);
                out.push_str(MASK);
                copied = i;
            }
        }
        out.push_str(&text[copied..]);
        out
    }

    /// Whether the base64 `run` decodes, in either alphabet, to bytes holding the password. The
    /// run may begin with letters that belong to the text before the encoding, so each of the
    /// four ways to align it is tried.
    fn holds_password(&self, run: &str) -> bool {
        (0..4).filter(|skip| *skip < run.len()).any(|skip| {
            let mut letters = &run[skip..];
            // A single letter left over encodes no whole byte; it cannot be decoded.
            if letters.len() % 4 == 1 {
                letters = &letters[..letters.len() - 1];
            }
            [STANDARD, URL_SAFE].iter().any(|engine| {
                engine.decode(letters).is_ok_and(|decoded| {
                    decoded
                        .windows(self.password.len())
                        .any(|w| w == self.password)
                })
            })
        })
    }
}

/// A letter of either base64 alphabet.
fn is_base64_letter(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "emu\"lat<or>&%";

    fn redactor() -> Redactor {
        Redactor::new("TECH\\admin", PASSWORD)
    }

    fn basic(engine: GeneralPurpose, text: &str) -> String {
        engine.encode(text)
    }

    #[test]
    fn every_echo_of_the_password_is_redacted() {
        let r = redactor();
        let forms = [
            PASSWORD.to_string(),
            r#"emu\"lat<or>&%"#.to_string(),
            "emu&quot;lat&lt;or&gt;&amp;%".to_string(),
            "emu%22lat%3Cor%3E%26%25".to_string(),
            basic(
                general_purpose::STANDARD,
                &format!("TECH\\admin:{PASSWORD}"),
            ),
            basic(
                general_purpose::STANDARD_NO_PAD,
                &format!("TECH\\admin:{PASSWORD}"),
            ),
            basic(
                general_purpose::URL_SAFE,
                &format!("TECH\\admin:{PASSWORD}"),
            ),
            basic(
                general_purpose::URL_SAFE_NO_PAD,
                &format!("TECH\\admin:{PASSWORD}"),
            ),
            // The user in another case, the password alone, or after other bytes.
            basic(
                general_purpose::STANDARD,
                &format!("tech\\ADMIN:{PASSWORD}"),
            ),
            basic(general_purpose::STANDARD, PASSWORD),
            basic(general_purpose::URL_SAFE_NO_PAD, &format!("x{PASSWORD}")),
            basic(general_purpose::STANDARD, &format!("ab{PASSWORD}yz")),
        ];
        for form in forms {
            for text in [
                format!("Authorization: Basic {form}"),
                format!("<Error Message=\"{form}\"/>"),
                // Glued to letters that are no part of the encoding.
                format!("header=Basic{form}"),
            ] {
                let redacted = r.redact(&text);
                assert!(redacted.contains(MASK), "{text} -> {redacted}");
                for leak in [PASSWORD, "emu", &form[..form.len().min(12)]] {
                    assert!(!redacted.contains(leak), "{text} -> {redacted}");
                }
            }
        }
    }

    #[test]
    fn tokens_are_redacted_once_known() {
        let r = redactor();
        let text = "X-RestSvcSessionId: O9Msj3rq7EGUhtSMBQx+mw==";
        assert_eq!(r.redact(text), text);
        r.add_token("O9Msj3rq7EGUhtSMBQx+mw==");
        assert_eq!(r.redact(text), "X-RestSvcSessionId: ***");
        for n in 0..KEPT_TOKENS {
            r.add_token(&format!("token-{n}"));
        }
        // The oldest token is forgotten once more than the bound have been handed out.
        assert_eq!(r.redact(text), text);
        assert_eq!(r.redact("token-3 and token-15"), "*** and ***");
    }

    #[test]
    fn other_text_and_other_base64_are_left_alone() {
        let r = redactor();
        let text = "GET /api/security/accounts/d6701c3d-15f4-421d-b376-c0e2634bc1f4: HTTP 401: \
                    Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ== refused";
        assert_eq!(r.redact(text), text);
        assert_eq!(Redactor::new("u", "").redact(text), text);
        assert_eq!(format!("{r:?}"), "Redactor(***)");
    }
}
