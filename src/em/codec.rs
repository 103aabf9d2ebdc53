//! The seam between the client and the two wire formats: one [`Codec`] per format, picked once
//! when the client is built, plus the rules both formats share (ids from `Href` and `UID`,
//! lenient booleans, the deepest nesting read, the account) and the reading of `Error` bodies,
//! whatever format they came in. The documents both formats carry alike are read once for both
//! in `fields.rs`.

use uuid::Uuid;

use super::{
    Account, AccountCreateSpec, AccountRole, EntityRef, EntryPoint, LogonSession, RebuildMode,
    Scope, ScopeItem, Task, json, uid, xml,
};

/// Why a body could not be read; becomes [`super::EmError::Decode`].
pub(crate) type DecodeError = String;

/// The deepest nesting either decoder reads: elements in XML, arrays and objects in JSON.
/// EM's answers are five levels deep at most (`EnterpriseManager/SupportedVersions/
/// SupportedVersion/Links/Link`); a deeper document is no EM answer, and one nested tens of
/// thousands deep would overflow the stack of the code that walks or drops its tree.
pub(crate) const MAX_DEPTH: usize = 64;

/// The refusal of a document nested deeper than [`MAX_DEPTH`] `units` (`levels`, `elements`),
/// in `format`.
pub(crate) fn too_deep(format: &str, units: &str) -> DecodeError {
    format!("{format} nested deeper than {MAX_DEPTH} {units}, which no EM answer is")
}

/// Reads and writes the bodies of one wire format.
pub(crate) trait Codec: Send + Sync {
    /// The format's media type, which the client both asks for (`Accept`) and sends its
    /// bodies in (`Content-Type`).
    fn media_type(&self) -> &'static str;

    /// `EnterpriseManager`.
    fn entry_point(&self, body: &str) -> Result<EntryPoint, DecodeError>;
    /// `LogonSession`.
    fn logon_session(&self, body: &str) -> Result<LogonSession, DecodeError>;
    /// `LogonSessions`.
    fn logon_sessions(&self, body: &str) -> Result<Vec<LogonSession>, DecodeError>;
    /// `EnterpriseSecuritySettings`: only checked to be readable.
    fn security(&self, body: &str) -> Result<(), DecodeError>;
    /// `EntityReferences`.
    fn entity_refs(&self, body: &str) -> Result<Vec<EntityRef>, DecodeError>;
    /// `EntityRef`.
    fn entity_ref(&self, body: &str) -> Result<EntityRef, DecodeError>;
    /// `EnterpriseAccount`.
    fn account(&self, body: &str) -> Result<Account, DecodeError>;
    /// `EnterpriseAccountInRoleList`.
    fn account_roles(&self, body: &str) -> Result<Vec<AccountRole>, DecodeError>;
    /// `EnterpriseAccountInRole`.
    fn account_role(&self, body: &str) -> Result<AccountRole, DecodeError>;
    /// `EnterpriseAccountHierarchyScopes`.
    fn scopes(&self, body: &str) -> Result<Vec<Scope>, DecodeError>;
    /// `EnterpriseAccountHierarchyScope`.
    fn scope(&self, body: &str) -> Result<Scope, DecodeError>;
    /// `Task`.
    fn task(&self, body: &str) -> Result<Task, DecodeError>;

    /// `EnterpriseAccountCreateSpec`.
    fn account_create_spec(&self, spec: &AccountCreateSpec) -> String;
    /// `EnterpriseAccountInRoleCreateSpec`.
    fn role_assignment_spec(&self, role_uid: &str) -> String;
    /// `HierarchyScopeCreateSpec`.
    fn scope_create_spec(&self, items: &[ScopeItem]) -> String;
    /// `RebuildScopeJobSpec`.
    fn rebuild_spec(&self, mode: RebuildMode) -> String;
}

/// The codec for `wire`.
pub(crate) fn for_wire(wire: super::Wire) -> &'static dyn Codec {
    match wire {
        super::Wire::Xml => &xml::XmlCodec,
        super::Wire::Json => &json::JsonCodec,
    }
}

/// The last path segment of a URL or path, without query or fragment: the id of an item whose
/// `Href` is `.../roles/<guid>` or `.../scopes/<guid>?format=Entity`.
pub(crate) fn last_segment(href: &str) -> &str {
    let end = href.find(['?', '#']).unwrap_or(href.len());
    href[..end]
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("")
}

/// The GUID at the end of an `Href`.
pub(crate) fn id_from_href(href: &str) -> Result<Uuid, DecodeError> {
    let segment = last_segment(href);
    Uuid::parse_str(segment).map_err(|_| format!("no id at the end of href '{href}'"))
}

/// A boolean as EM or a hand-written document spells it: `true`, `True`, `1`, ...
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("true") || text == "1" {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") || text == "0" {
        Some(false)
    } else {
        None
    }
}

/// The account an `EnterpriseAccount` body describes, from its parts (shared by both formats,
/// so both apply the same rules).
pub(crate) struct AccountParts<'a> {
    /// `UID`, `urn:veeam:EnterpriseAccount:<guid>`.
    pub uid: Option<&'a str>,
    /// `Href`, the fallback source of the id.
    pub href: Option<&'a str>,
    /// `Name`.
    pub name: Option<&'a str>,
    /// `AccountType`, as spelt in the body.
    pub account_type: Option<&'a str>,
    /// `AllowRestoreAllVms`, when readable.
    pub allow_restore_all_vms: Option<bool>,
    /// `FlrSettings`, when present.
    pub flr: Option<super::FlrSettings>,
    /// `SqlSettings`, when present.
    pub sql: Option<super::SqlSettings>,
}

impl AccountParts<'_> {
    /// Checks the parts and builds the account. The id comes from the UID, or else from the
    /// `Href` (the entity's `Href` ends in `<guid>?format=Entity`).
    pub(crate) fn build(self) -> Result<Account, DecodeError> {
        let id = match (self.uid.and_then(uid::id_from_uid), self.href) {
            (Some(id), _) => id,
            (None, Some(href)) => id_from_href(href)?,
            (None, None) => return Err("account without UID or Href".into()),
        };
        let uid = match self.uid {
            Some(uid) if !uid.trim().is_empty() => uid.trim().to_string(),
            _ => uid::account_uid(id),
        };
        let type_text = self.account_type.ok_or("account without AccountType")?;
        let account_type = super::AccountType::parse(type_text)
            .ok_or_else(|| format!("unknown AccountType '{type_text}'"))?;
        // The runner decides the toggle from this flag, so a guess would be worse than an error.
        let allow_restore_all_vms = self
            .allow_restore_all_vms
            .ok_or("account without a readable AllowRestoreAllVms")?;
        Ok(Account {
            id,
            uid,
            name: self.name.unwrap_or_default().to_string(),
            account_type,
            allow_restore_all_vms,
            flr: self.flr,
            sql: self.sql,
        })
    }
}

/// What an `Error` body says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    /// `Message`, or `FirstChanceExceptionMessage` when that is all there is.
    pub message: String,
    /// `StatusCode`, when given.
    pub status_code: Option<u16>,
}

/// Reads an `Error` body in whichever format it came (EM answers in the requested format, but a
/// proxy or a failure before content negotiation may not), or `None` when it is not one.
pub(crate) fn parse_error_body(body: &str) -> Option<ErrorBody> {
    let trimmed = body.trim_start_matches('\u{feff}').trim_start();
    let parsed = if trimmed.starts_with('<') {
        xml::error_body(trimmed)
    } else if trimmed.starts_with('{') {
        json::error_body(trimmed)
    } else {
        None
    };
    parsed.filter(|e| !e.message.trim().is_empty())
}

/// The most bytes of raw body text an error message quotes: a proxy's HTML page or a stack
/// dump says what it is in its first lines.
const RAW_BODY_LIMIT: usize = 300;

/// The message for an error answer: the `Error` body's message, else the raw body (whitespace
/// collapsed, clipped), else the status's reason phrase.
pub(crate) fn error_message(status: u16, body: &str) -> String {
    if let Some(parsed) = parse_error_body(body) {
        return parsed.message.trim().to_string();
    }
    let collapsed = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        return http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("no message")
            .to_lowercase();
    }
    crate::text::clip(&collapsed, RAW_BODY_LIMIT).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_segment_strips_query_and_slash() {
        assert_eq!(
            last_segment("https://h:9398/api/security/accounts/abc/roles/f84a"),
            "f84a"
        );
        assert_eq!(
            last_segment("https://h/api/security/accounts/abc?format=Entity"),
            "abc"
        );
        assert_eq!(last_segment("https://h/api/logonSessions/xyz/"), "xyz");
        assert_eq!(last_segment("xyz"), "xyz");
    }

    #[test]
    fn ids_from_href() {
        let id = Uuid::parse_str("d6701c3d-15f4-421d-b376-c0e2634bc1f4").unwrap();
        assert_eq!(
            id_from_href(
                "https://h/api/security/accounts/d6701c3d-15f4-421d-b376-c0e2634bc1f4?format=Entity"
            )
            .unwrap(),
            id
        );
        assert!(id_from_href("https://h/api/security/accounts").is_err());
    }

    #[test]
    fn lenient_booleans() {
        for t in ["true", "True", "TRUE", " 1 "] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["false", "False", "0"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_bool("yes"), None);
    }

    #[test]
    fn error_bodies_in_both_formats() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<Error xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns="http://www.veeam.com/ent/v1.0" StatusCode="500" Message="Object reference not set">
  <FirstChanceExceptionMessage>inner</FirstChanceExceptionMessage>
  <StackTrace>at Foo()</StackTrace>
</Error>"#;
        assert_eq!(
            parse_error_body(xml),
            Some(ErrorBody {
                message: "Object reference not set".into(),
                status_code: Some(500)
            })
        );
        let json = r#"{"FirstChanceExceptionMessage":null,"Message":"Node [root] does not exist.","StackTrace":null,"Status":null,"StatusCode":400}"#;
        assert_eq!(
            parse_error_body(json),
            Some(ErrorBody {
                message: "Node [root] does not exist.".into(),
                status_code: Some(400)
            })
        );
    }

    #[test]
    fn first_chance_message_is_the_fallback() {
        let xml = r#"<Error xmlns="http://www.veeam.com/ent/v1.0" Message="" StatusCode="500"><FirstChanceExceptionMessage>deep cause</FirstChanceExceptionMessage></Error>"#;
        assert_eq!(parse_error_body(xml).unwrap().message, "deep cause");
        let json =
            r#"{"Message":null,"FirstChanceExceptionMessage":"deep cause","StatusCode":"500"}"#;
        let parsed = parse_error_body(json).unwrap();
        assert_eq!(
            (parsed.message.as_str(), parsed.status_code),
            ("deep cause", Some(500))
        );
    }

    #[test]
    fn error_message_falls_back_to_the_raw_body_then_the_reason() {
        assert_eq!(
            error_message(502, "<html>\n  Bad   gateway\n</html>"),
            "<html> Bad gateway </html>"
        );
        let long = "x".repeat(1000);
        let message = error_message(500, &long);
        assert_eq!(
            message,
            format!("{}… [cut: 1000 bytes in all]", "x".repeat(RAW_BODY_LIMIT))
        );
        assert_eq!(error_message(404, ""), "not found");
        assert_eq!(error_message(400, r#"{"Message":"Bad role"}"#), "Bad role");
        // A document that is not an Error is quoted raw.
        assert_eq!(error_message(500, "{\"Other\":1}"), "{\"Other\":1}");
    }
}
