//! Request bodies: decoding XML or JSON into the typed specs the emulator acts on, with EM's
//! strictness about XML (root name, namespace, XSD element order) and a .NET serializer's
//! tolerance about JSON (key case, string booleans, unknown keys).
//!
//! This file picks the format by `Content-Type` and decodes the document; `xml.rs` builds the
//! element tree and checks it against a spec's content model, `json.rs` reads JSON values as
//! EM's serializer does, and `spec.rs` reads each spec out of either. `ids.rs` parses the two
//! identifier forms clients send in bodies: role UIDs (`urn:veeam:EnterpriseRole:<guid>`) and
//! hierarchy object refs (`urn:<Platform>:<Type>:<root>.<ref>`).

use axum::http::{HeaderMap, header};

use super::wire::ApiError;

mod ids;
mod json;
mod spec;
mod xml;

pub(crate) use ids::{ObjRef, parse_obj_ref, role_uid};
pub(crate) use spec::{
    AccountSpec, RebuildMode, ScopeItem, account_spec, rebuild_spec, role_spec, scope_spec,
};
use xml::{XmlNode, parse_xml};

/// A decoded request body, before it is read as a particular spec.
#[derive(Debug)]
pub(crate) enum Body {
    /// An XML document's root element.
    Xml(XmlNode),
    /// A JSON value.
    Json(serde_json::Value),
}

/// Decodes a body by its `Content-Type`: `application/xml` and `text/xml` (any charset
/// parameter) as XML, `application/json` as JSON. Without a `Content-Type` the first
/// character decides, since some clients omit the header; any other type is refused.
pub(crate) fn decode(headers: &HeaderMap, bytes: &[u8]) -> Result<Body, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request("the request body is not valid UTF-8"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    let is_json = match media.as_deref() {
        Some("application/json" | "text/json") => true,
        Some("application/xml" | "text/xml") => false,
        Some(other) if !other.is_empty() => {
            return Err(ApiError::bad_request(format!(
                "unsupported media type {other}; send application/xml or application/json"
            )));
        }
        _ => text.trim_start().starts_with(['{', '[']),
    };
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    if is_json {
        serde_json::from_str(text)
            .map(Body::Json)
            .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))
    } else {
        parse_xml(text).map(Body::Xml)
    }
}

/// The bodies the unit tests of each part decode, as a client would send them.
#[cfg(test)]
mod fixtures {
    use axum::http::HeaderValue;

    use super::*;

    pub(super) fn xml(body: &str) -> Body {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/xml; charset=utf-8"),
        );
        decode(&h, body.as_bytes()).unwrap()
    }

    pub(super) fn json(body: &str) -> Body {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        decode(&h, body.as_bytes()).unwrap()
    }

    pub(super) const ROLE: &str = "urn:veeam:EnterpriseRole:c11c0c38-ba8b-49c7-bf70-fc2058fff1e2";

    pub(super) fn account_xml(children: &str) -> Body {
        xml(&format!(
            r#"<EnterpriseAccountCreateSpec xmlns="http://www.veeam.com/ent/v1.0">{children}</EnterpriseAccountCreateSpec>"#
        ))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(decode(&h, b"<a/>").unwrap_err().status, 400);
        assert!(matches!(
            decode(&HeaderMap::new(), b" {\"a\":1}").unwrap(),
            Body::Json(_)
        ));
        assert!(matches!(
            decode(&HeaderMap::new(), b"\xEF\xBB\xBF<a/>").unwrap(),
            Body::Xml(_)
        ));
        assert_eq!(decode(&HeaderMap::new(), b"").unwrap_err().status, 400);
    }
}
