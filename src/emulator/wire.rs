//! The emulator's output wire formats: one document model rendered as EM's XML (namespace,
//! declaration, attributes) or as EM's JSON (no root wrapper, plural list keys), plus the
//! `Error` body in both.
//!
//! Representations are built once as [`Element`] trees and rendered per request, so the XML and
//! JSON forms of a resource can never disagree about its content.

use std::fmt::Write as _;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// EM's XML namespace.
pub(crate) const NS: &str = "http://www.veeam.com/ent/v1.0";

/// The namespace declarations EM puts on every root element.
const ROOT_DECLS: &str = concat!(
    r#" xmlns:xsd="http://www.w3.org/2001/XMLSchema""#,
    r#" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance""#,
    r#" xmlns="http://www.veeam.com/ent/v1.0""#
);

/// The media type of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wire {
    /// `application/xml`, EM's default.
    Xml,
    /// `application/json`, when the client's `Accept` asks for it.
    Json,
}

impl Wire {
    /// Chooses the answer's format from the request's `Accept` headers: JSON only when one of
    /// them mentions `application/json`, as EM does; anything else (none, `*/*`, XML) is XML.
    pub(crate) fn negotiate(headers: &HeaderMap) -> Wire {
        let wants_json = headers.get_all(header::ACCEPT).iter().any(|v| {
            v.to_str()
                .map(|s| s.to_ascii_lowercase().contains("application/json"))
                .unwrap_or(false)
        });
        if wants_json { Wire::Json } else { Wire::Xml }
    }

    /// The `Content-Type` of a body in this format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Wire::Xml => "application/xml; charset=utf-8",
            Wire::Json => "application/json; charset=utf-8",
        }
    }
}

/// A leaf value: an attribute, or the text of a simple child element.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scalar {
    /// Text.
    Str(String),
    /// `true`/`false`; a JSON boolean.
    Bool(bool),
    /// A number.
    Int(i64),
    /// Absent: an empty element in XML, `null` in JSON.
    Null,
}

impl From<String> for Scalar {
    fn from(s: String) -> Self {
        Scalar::Str(s)
    }
}

impl From<&str> for Scalar {
    fn from(s: &str) -> Self {
        Scalar::Str(s.to_owned())
    }
}

impl From<bool> for Scalar {
    fn from(b: bool) -> Self {
        Scalar::Bool(b)
    }
}

impl From<Option<String>> for Scalar {
    fn from(s: Option<String>) -> Self {
        s.map_or(Scalar::Null, Scalar::Str)
    }
}

impl Scalar {
    fn xml_text(&self) -> String {
        match self {
            Scalar::Str(s) => s.clone(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Null => String::new(),
        }
    }

    fn write_json(&self, out: &mut String) {
        match self {
            Scalar::Str(s) => out.push_str(&json_string(s)),
            Scalar::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Scalar::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Scalar::Null => out.push_str("null"),
        }
    }
}

/// One `Link` of a `Links` list.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Link {
    /// `Rel`.
    pub rel: &'static str,
    /// `Type`, when the link names one (`Delete`, `Create`, ... often do not).
    pub kind: Option<&'static str>,
    /// `Name`, rarely present.
    pub name: Option<String>,
    /// The absolute `Href`.
    pub href: String,
}

impl Link {
    /// A link with a `Type`.
    pub(crate) fn typed(rel: &'static str, kind: &'static str, href: String) -> Link {
        Link {
            rel,
            kind: Some(kind),
            name: None,
            href,
        }
    }

    /// A link without a `Type`, like EM's `Delete` and `ToggleRestoreScopesEnabled` links.
    pub(crate) fn bare(rel: &'static str, href: String) -> Link {
        Link {
            rel,
            kind: None,
            name: None,
            href,
        }
    }
}

/// The content of a child element.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Field {
    /// A simple element holding text.
    Scalar(Scalar),
    /// A complex element.
    Elem(Element),
    /// A wrapper element holding repeated items; in JSON an object with one array under
    /// `json_key` (`{"EnterpriseRoles":[...]}`), the server's plural property name.
    List {
        /// The JSON array's key.
        json_key: &'static str,
        /// The items, each rendered under its own element name in XML.
        items: Vec<Element>,
    },
}

/// An element of a representation: attributes, an optional `Links` list, child elements.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Element {
    /// The element's name (for items of lists and for roots).
    pub name: &'static str,
    /// XML attributes, in order; JSON properties after the fields.
    pub attrs: Vec<(&'static str, Scalar)>,
    /// The `Links` child, when the type has one.
    pub links: Option<Vec<Link>>,
    /// Child elements in XSD order.
    pub fields: Vec<(&'static str, Field)>,
}

impl Element {
    /// An empty element.
    pub(crate) fn new(name: &'static str) -> Element {
        Element {
            name,
            attrs: Vec::new(),
            links: None,
            fields: Vec::new(),
        }
    }

    /// Adds an attribute.
    pub(crate) fn attr(mut self, key: &'static str, value: impl Into<Scalar>) -> Element {
        self.attrs.push((key, value.into()));
        self
    }

    /// Sets the `Links` list.
    pub(crate) fn links(mut self, links: Vec<Link>) -> Element {
        self.links = Some(links);
        self
    }

    /// Adds a simple child element.
    pub(crate) fn text(mut self, key: &'static str, value: impl Into<Scalar>) -> Element {
        self.fields.push((key, Field::Scalar(value.into())));
        self
    }

    /// Adds a complex child element (rendered under `key`).
    pub(crate) fn child(mut self, key: &'static str, value: Element) -> Element {
        self.fields.push((key, Field::Elem(value)));
        self
    }

    /// Adds a wrapper element of repeated items.
    pub(crate) fn list(
        mut self,
        key: &'static str,
        json_key: &'static str,
        items: Vec<Element>,
    ) -> Element {
        self.fields.push((key, Field::List { json_key, items }));
        self
    }
}

/// A whole answer body.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Doc {
    /// A single resource; the element is the XML root, its properties the JSON top level.
    One(Element),
    /// A list resource: an XML root holding the items, in JSON `{"<json_key>":[...]}`.
    List {
        /// The XML root, e.g. `EntityReferences`.
        root: &'static str,
        /// The JSON key, e.g. `Refs`.
        json_key: &'static str,
        /// The items.
        items: Vec<Element>,
    },
}

impl Doc {
    /// The body text in `wire`.
    pub(crate) fn render(&self, wire: Wire) -> String {
        match wire {
            Wire::Xml => self.to_xml(),
            Wire::Json => self.to_json(),
        }
    }

    fn to_xml(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
        match self {
            Doc::One(el) => write_xml(&mut out, el, el.name, 0, true),
            Doc::List { root, items, .. } => {
                out.push('<');
                out.push_str(root);
                out.push_str(ROOT_DECLS);
                if items.is_empty() {
                    out.push_str(" />\n");
                } else {
                    out.push_str(">\n");
                    for item in items {
                        write_xml(&mut out, item, item.name, 1, false);
                    }
                    let _ = writeln!(out, "</{root}>");
                }
            }
        }
        out
    }

    fn to_json(&self) -> String {
        let mut out = String::new();
        match self {
            Doc::One(el) => write_json(&mut out, el),
            Doc::List {
                json_key, items, ..
            } => write_json_list(&mut out, json_key, items),
        }
        out
    }
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(text)
}

fn write_xml(out: &mut String, el: &Element, name: &str, depth: usize, root: bool) {
    indent(out, depth);
    out.push('<');
    out.push_str(name);
    if root {
        out.push_str(ROOT_DECLS);
    }
    for (key, value) in &el.attrs {
        let _ = write!(out, " {key}=\"{}\"", escape(&value.xml_text()));
    }
    if el.links.is_none() && el.fields.is_empty() {
        out.push_str(" />\n");
        return;
    }
    out.push_str(">\n");
    if let Some(links) = &el.links {
        indent(out, depth + 1);
        if links.is_empty() {
            out.push_str("<Links />\n");
        } else {
            out.push_str("<Links>\n");
            for link in links {
                indent(out, depth + 2);
                let _ = write!(out, "<Link Rel=\"{}\"", link.rel);
                if let Some(kind) = link.kind {
                    let _ = write!(out, " Type=\"{kind}\"");
                }
                if let Some(name) = &link.name {
                    let _ = write!(out, " Name=\"{}\"", escape(name));
                }
                let _ = writeln!(out, " Href=\"{}\" />", escape(&link.href));
            }
            indent(out, depth + 1);
            out.push_str("</Links>\n");
        }
    }
    for (key, field) in &el.fields {
        match field {
            Field::Scalar(Scalar::Null) => {
                indent(out, depth + 1);
                let _ = writeln!(out, "<{key} />");
            }
            Field::Scalar(value) => {
                indent(out, depth + 1);
                let _ = writeln!(out, "<{key}>{}</{key}>", escape(&value.xml_text()));
            }
            Field::Elem(child) => write_xml(out, child, key, depth + 1, false),
            Field::List { items, .. } => {
                indent(out, depth + 1);
                if items.is_empty() {
                    let _ = writeln!(out, "<{key} />");
                } else {
                    let _ = writeln!(out, "<{key}>");
                    for item in items {
                        write_xml(out, item, item.name, depth + 2, false);
                    }
                    indent(out, depth + 1);
                    let _ = writeln!(out, "</{key}>");
                }
            }
        }
    }
    indent(out, depth);
    let _ = writeln!(out, "</{name}>");
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serialises")
}

fn write_json_key(out: &mut String, first: &mut bool, key: &str) {
    if !*first {
        out.push(',');
    }
    *first = false;
    out.push_str(&json_string(key));
    out.push(':');
}

fn write_json_list(out: &mut String, json_key: &str, items: &[Element]) {
    out.push('{');
    out.push_str(&json_string(json_key));
    out.push_str(":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json(out, item);
    }
    out.push_str("]}");
}

/// Writes an element as a JSON object. EM's serializer puts a type's own fields first and
/// the inherited ones (`Name`, `UID`, `Links`, `Href`, `Type`) last; this keeps that order.
fn write_json(out: &mut String, el: &Element) {
    out.push('{');
    let mut first = true;
    for (key, field) in &el.fields {
        write_json_key(out, &mut first, key);
        match field {
            Field::Scalar(value) => value.write_json(out),
            Field::Elem(child) => write_json(out, child),
            Field::List { json_key, items } => write_json_list(out, json_key, items),
        }
    }
    let is_tail = |k: &str| k == "Href" || k == "Type";
    for (key, value) in el.attrs.iter().filter(|(k, _)| !is_tail(k)) {
        write_json_key(out, &mut first, key);
        value.write_json(out);
    }
    if let Some(links) = &el.links {
        write_json_key(out, &mut first, "Links");
        out.push('[');
        for (i, link) in links.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{{\"Rel\":{}", json_string(link.rel));
            if let Some(name) = &link.name {
                let _ = write!(out, ",\"Name\":{}", json_string(name));
            }
            if let Some(kind) = link.kind {
                let _ = write!(out, ",\"Type\":{}", json_string(kind));
            }
            let _ = write!(out, ",\"Href\":{}}}", json_string(&link.href));
        }
        out.push(']');
    }
    for key in ["Href", "Type"] {
        if let Some((_, value)) = el.attrs.iter().find(|(k, _)| *k == key) {
            write_json_key(out, &mut first, key);
            value.write_json(out);
        }
    }
    out.push('}');
}

/// An answer EM would give as an `Error` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `Message`.
    pub message: String,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400: a malformed or invalid request.
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401: no valid session.
    pub(crate) fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403: the session's user lacks the role.
    pub(crate) fn forbidden() -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "Access denied")
    }

    /// 404: an unknown resource.
    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// The body text in `wire`: XML `<Error Message=".." StatusCode=".."/>`, or the JSON
    /// shape captured from a real server, `Status` and the exception fields left null.
    pub(crate) fn body(&self, wire: Wire) -> String {
        let code = self.status.as_u16();
        match wire {
            Wire::Xml => Doc::One(
                Element::new("Error")
                    .attr("Message", self.message.as_str())
                    .attr("StatusCode", Scalar::Int(i64::from(code))),
            )
            .render(Wire::Xml),
            Wire::Json => format!(
                "{{\"FirstChanceExceptionMessage\":null,\"Message\":{},\"StackTrace\":null,\"Status\":null,\"StatusCode\":{code}}}",
                json_string(&self.message)
            ),
        }
    }

    /// The complete answer in `wire`.
    pub(crate) fn response(&self, wire: Wire) -> Response {
        body_response(self.status, wire, self.body(wire))
    }
}

/// A response with a body in `wire`.
pub(crate) fn body_response(status: StatusCode, wire: Wire, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(wire.content_type()),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Doc {
        Doc::One(
            Element::new("EnterpriseAccount")
                .attr("Type", "EnterpriseAccount")
                .attr("Href", "https://h/api/security/accounts/1?format=Entity")
                .attr("Name", "TECH\\a&b")
                .links(vec![
                    Link::typed(
                        "Alternate",
                        "EnterpriseAccountReference",
                        "https://h/x".into(),
                    ),
                    Link::bare("Delete", "https://h/x".into()),
                ])
                .text("AccountType", "User")
                .text("AllowRestoreAllVms", true)
                .child(
                    "FlrSettings",
                    Element::new("FlrSettings")
                        .text("FlrInplaceOnly", false)
                        .text("FlrExtentionRestrictions", Scalar::Null),
                ),
        )
    }

    #[test]
    fn xml_has_declaration_namespaces_and_escapes() {
        let xml = sample().render(Wire::Xml);
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<EnterpriseAccount"));
        assert!(xml.contains(r#"xmlns="http://www.veeam.com/ent/v1.0""#));
        assert!(xml.contains("xmlns:xsi="));
        assert!(xml.contains("xmlns:xsd="));
        assert!(xml.contains(r#"Name="TECH\a&amp;b""#));
        assert!(xml.contains(r#"<Link Rel="Delete" Href="https://h/x" />"#));
        assert!(xml.contains("<AllowRestoreAllVms>true</AllowRestoreAllVms>"));
        assert!(xml.contains("<FlrExtentionRestrictions />"));
    }

    #[test]
    fn json_has_no_root_real_booleans_and_inherited_fields_last() {
        let json = sample().render(Wire::Json);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["AllowRestoreAllVms"], serde_json::Value::Bool(true));
        assert_eq!(
            v["FlrSettings"]["FlrInplaceOnly"],
            serde_json::Value::Bool(false)
        );
        assert!(v["FlrSettings"]["FlrExtentionRestrictions"].is_null());
        assert_eq!(
            v["Links"][1],
            serde_json::json!({"Rel":"Delete","Href":"https://h/x"})
        );
        assert_eq!(v["Links"][0]["Type"], "EnterpriseAccountReference");
        assert!(json.starts_with("{\"AccountType\""));
        assert!(json.ends_with("\"Type\":\"EnterpriseAccount\"}"));
    }

    #[test]
    fn lists_use_plural_keys_in_json() {
        let doc = Doc::List {
            root: "EntityReferences",
            json_key: "Refs",
            items: vec![Element::new("Ref").attr("Name", "x")],
        };
        assert_eq!(doc.render(Wire::Json), r#"{"Refs":[{"Name":"x"}]}"#);
        let xml = doc.render(Wire::Xml);
        assert!(xml.contains("<EntityReferences xmlns:xsd="));
        assert!(xml.contains("  <Ref Name=\"x\" />"));
        let nested = Element::new("X").list(
            "Roles",
            "EnterpriseRoles",
            vec![Element::new("EnterpriseRole")],
        );
        assert_eq!(
            Doc::One(nested).render(Wire::Json),
            r#"{"Roles":{"EnterpriseRoles":[{}]}}"#
        );
    }

    #[test]
    fn error_bodies_follow_the_captured_shapes() {
        let e = ApiError::bad_request("Node [root] does not exist.");
        assert_eq!(
            e.body(Wire::Json),
            r#"{"FirstChanceExceptionMessage":null,"Message":"Node [root] does not exist.","StackTrace":null,"Status":null,"StatusCode":400}"#
        );
        let xml = e.body(Wire::Xml);
        assert!(xml.contains(r#"<Error xmlns:xsd="#));
        assert!(xml.contains(r#"Message="Node [root] does not exist." StatusCode="400" />"#));
    }

    #[test]
    fn accept_picks_json_only_when_asked() {
        let mut h = HeaderMap::new();
        assert_eq!(Wire::negotiate(&h), Wire::Xml);
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        assert_eq!(Wire::negotiate(&h), Wire::Xml);
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/xml, Application/JSON"),
        );
        assert_eq!(Wire::negotiate(&h), Wire::Json);
    }
}
