//! Request bodies: decoding XML or JSON into the typed specs the emulator acts on, with EM's
//! strictness about XML (root name, namespace, XSD element order) and a .NET serializer's
//! tolerance about JSON (key case, string booleans, unknown keys).
//!
//! Also parses the two identifier forms clients send in bodies: role UIDs
//! (`urn:veeam:EnterpriseRole:<guid>`) and hierarchy object refs
//! (`urn:<Platform>:<Type>:<root>.<ref>`).

use axum::http::{HeaderMap, header};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use uuid::Uuid;

use super::wire::{ApiError, NS};

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

/// An element of a request body: its namespace, local name, text and child elements.
/// Attributes are not kept: no spec the emulator reads carries any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct XmlNode {
    /// The resolved namespace, if any.
    pub ns: Option<String>,
    /// The local name.
    pub name: String,
    /// The text content, trimmed.
    pub text: String,
    /// Child elements, in document order.
    pub children: Vec<XmlNode>,
}

impl XmlNode {
    /// The first child called `name`.
    pub(crate) fn child(&self, name: &str) -> Option<&XmlNode> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child called `name`.
    pub(crate) fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a XmlNode> {
        self.children.iter().filter(move |c| c.name == name)
    }
}

fn xml_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("malformed XML body: {e}"))
}

/// Parses an XML document into a tree. Refuses DTDs (no entity expansion) and unknown
/// entities; character and predefined entity references are resolved.
pub(crate) fn parse_xml(text: &str) -> Result<XmlNode, ApiError> {
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<XmlNode> = Vec::new();
    let mut root: Option<XmlNode> = None;
    loop {
        let (resolved, event) = reader.read_resolved_event().map_err(xml_error)?;
        let ns = match resolved {
            ResolveResult::Bound(ns) => Some(ns.0.to_owned()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(prefix) => {
                return Err(xml_error(format!("unknown namespace prefix {prefix}")));
            }
        };
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() && stack.is_empty() => {
                return Err(xml_error("more than one root element"));
            }
            Event::Start(e) => stack.push(XmlNode {
                ns,
                name: e.local_name().as_ref().to_owned(),
                text: String::new(),
                children: Vec::new(),
            }),
            Event::Empty(e) => {
                let node = XmlNode {
                    ns,
                    name: e.local_name().as_ref().to_owned(),
                    text: String::new(),
                    children: Vec::new(),
                };
                attach(&mut stack, &mut root, node);
            }
            Event::End(_) => {
                let mut node = stack.pop().ok_or_else(|| xml_error("unbalanced end tag"))?;
                node.text = node.text.trim().to_owned();
                attach(&mut stack, &mut root, node);
            }
            Event::Text(t) => push_text(&mut stack, &t.xml10_content())?,
            Event::CData(t) => push_text(&mut stack, &t.xml10_content())?,
            Event::GeneralRef(r) => {
                let ch = match r.resolve_char_ref().map_err(xml_error)? {
                    Some(ch) => ch,
                    None => match &*r {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => return Err(xml_error(format!("unknown entity &{other};"))),
                    },
                };
                push_text(&mut stack, ch.encode_utf8(&mut [0; 4]))?;
            }
            Event::DocType(_) => {
                return Err(xml_error("document type declarations are not accepted"));
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(xml_error("unexpected end of document"));
    }
    root.ok_or_else(|| xml_error("no root element"))
}

fn attach(stack: &mut [XmlNode], root: &mut Option<XmlNode>, node: XmlNode) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(node),
        None => *root = Some(node),
    }
}

fn push_text(stack: &mut [XmlNode], text: &str) -> Result<(), ApiError> {
    match stack.last_mut() {
        Some(top) => {
            top.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err(xml_error("text outside the root element")),
    }
}

/// What an element may contain, as far as the emulator checks it.
#[derive(Debug)]
pub(crate) enum Content {
    /// Text only.
    Text,
    /// Nothing at all (`<RebuildAll/>`).
    Empty,
    /// Child elements in this order (an XSD `sequence`).
    Seq(&'static [Particle]),
    /// Between `min` and `max` children, each one of these (an XSD `choice`).
    Choice {
        /// The allowed elements.
        items: &'static [Particle],
        /// Fewest children.
        min: u32,
        /// Most children.
        max: u32,
    },
}

/// One element a sequence or choice allows.
#[derive(Debug)]
pub(crate) struct Particle {
    /// Its name.
    pub name: &'static str,
    /// Fewest occurrences.
    pub min: u32,
    /// Most occurrences.
    pub max: u32,
    /// What it holds.
    pub content: &'static Content,
}

const UNBOUNDED: u32 = u32::MAX;

const fn one(name: &'static str, content: &'static Content) -> Particle {
    Particle {
        name,
        min: 1,
        max: 1,
        content,
    }
}

const fn optional(name: &'static str, content: &'static Content) -> Particle {
    Particle {
        name,
        min: 0,
        max: 1,
        content,
    }
}

const fn many(name: &'static str, content: &'static Content) -> Particle {
    Particle {
        name,
        min: 1,
        max: UNBOUNDED,
        content,
    }
}

/// `EnterpriseAccountInRoleCreateSpec`.
pub(crate) static ROLE_SPEC: Content = Content::Seq(&[one("EnterpriseRoleUid", &Content::Text)]);

static SCOPE_ITEM: Content = Content::Seq(&[
    one("HierarchyObjRef", &Content::Text),
    one("ObjectName", &Content::Text),
]);

/// `HierarchyScopeCreateSpec`.
pub(crate) static SCOPE_SPEC: Content = Content::Choice {
    items: &[many("HierarchyScopeItem", &SCOPE_ITEM)],
    min: 1,
    max: UNBOUNDED,
};

/// `HierarchyScopeObjects` inside an account spec. The XSD wants at least one item, but a
/// widely shared request template sends the element empty when all VMs are allowed; the
/// "false needs a scope" rule is checked on the items instead.
static SCOPE_OBJECTS: Content = Content::Choice {
    items: &[many("HierarchyScopeItem", &SCOPE_ITEM)],
    min: 0,
    max: UNBOUNDED,
};

static ROLE_LIST: Content = Content::Choice {
    items: &[many("EnterpriseRole", &ROLE_SPEC)],
    min: 1,
    max: UNBOUNDED,
};

static FLR_SETTINGS: Content = Content::Seq(&[
    one("FlrInplaceOnly", &Content::Text),
    optional("FlrExtentionRestrictions", &Content::Text),
]);

static SQL_SETTINGS: Content = Content::Seq(&[one("DenyInPlaceRestore", &Content::Text)]);

/// `EnterpriseAccountCreateSpec`, in the order the docs insist on.
pub(crate) static ACCOUNT_SPEC: Content = Content::Seq(&[
    one("AccountType", &Content::Text),
    one("AccountName", &Content::Text),
    one("Roles", &ROLE_LIST),
    one("AllowRestoreAllVms", &Content::Text),
    optional("HierarchyScopeObjects", &SCOPE_OBJECTS),
    optional("FlrSettings", &FLR_SETTINGS),
    optional("SqlSettings", &SQL_SETTINGS),
]);

/// `RebuildScopeJobSpec`: exactly one empty mode element.
pub(crate) static REBUILD_SPEC: Content = Content::Choice {
    items: &[
        optional("RebuildAll", &Content::Empty),
        optional("RebuildUnprocessed", &Content::Empty),
        optional("RebuildForCurrentUser", &Content::Empty),
    ],
    min: 1,
    max: 1,
};

/// Checks that `root` is `expected` in EM's namespace and that everything under it follows
/// `content`, element order included.
pub(crate) fn check_root(
    root: &XmlNode,
    expected: &str,
    content: &Content,
) -> Result<(), ApiError> {
    if root.name != expected {
        return Err(ApiError::bad_request(format!(
            "expected root element {expected}, found {}",
            root.name
        )));
    }
    if root.ns.as_deref() != Some(NS) {
        return Err(ApiError::bad_request(format!(
            "root element {expected} must be in namespace {NS}"
        )));
    }
    check(root, content).map_err(ApiError::bad_request)
}

/// Checks one element's content against `content`; the message names the offending element.
pub(crate) fn check(node: &XmlNode, content: &Content) -> Result<(), String> {
    let parent = &node.name;
    match content {
        Content::Text => match node.children.first() {
            Some(child) => Err(format!(
                "element {parent} must not contain element {}",
                child.name
            )),
            None => Ok(()),
        },
        Content::Empty => {
            if node.children.is_empty() && node.text.is_empty() {
                Ok(())
            } else {
                Err(format!("element {parent} must be empty"))
            }
        }
        Content::Seq(particles) => {
            no_text(node)?;
            let mut at = 0;
            let mut count = 0;
            for child in &node.children {
                check_ns(child)?;
                loop {
                    let Some(p) = particles.get(at) else {
                        return Err(misplaced(node, child, particles, at));
                    };
                    if p.name == child.name {
                        if count >= p.max {
                            return Err(format!(
                                "element {} appears too often in {parent}",
                                child.name
                            ));
                        }
                        count += 1;
                        check(child, p.content)?;
                        break;
                    }
                    if count < p.min {
                        return Err(if particles.iter().any(|q| q.name == child.name) {
                            format!(
                                "element {} is out of order in {parent}: {} must come first",
                                child.name, p.name
                            )
                        } else {
                            format!("unexpected element {} in {parent}", child.name)
                        });
                    }
                    at += 1;
                    count = 0;
                }
            }
            for (i, p) in particles.iter().enumerate().skip(at) {
                let have = if i == at { count } else { 0 };
                if have < p.min {
                    return Err(format!(
                        "element {parent} lacks required element {}",
                        p.name
                    ));
                }
            }
            Ok(())
        }
        Content::Choice { items, min, max } => {
            no_text(node)?;
            let n = u32::try_from(node.children.len()).unwrap_or(u32::MAX);
            if n < *min {
                let names: Vec<&str> = items.iter().map(|p| p.name).collect();
                return Err(format!(
                    "element {parent} needs one of {}",
                    names.join(", ")
                ));
            }
            if n > *max {
                return Err(format!(
                    "element {parent} allows only {max} child element(s)"
                ));
            }
            for child in &node.children {
                check_ns(child)?;
                let Some(p) = items.iter().find(|p| p.name == child.name) else {
                    return Err(format!("unexpected element {} in {parent}", child.name));
                };
                check(child, p.content)?;
            }
            Ok(())
        }
    }
}

fn no_text(node: &XmlNode) -> Result<(), String> {
    if node.text.is_empty() {
        Ok(())
    } else {
        Err(format!("element {} must not contain text", node.name))
    }
}

fn check_ns(child: &XmlNode) -> Result<(), String> {
    if child.ns.as_deref() == Some(NS) {
        Ok(())
    } else {
        Err(format!("element {} must be in namespace {NS}", child.name))
    }
}

fn misplaced(node: &XmlNode, child: &XmlNode, particles: &[Particle], at: usize) -> String {
    if particles[..at.min(particles.len())]
        .iter()
        .any(|p| p.name == child.name)
    {
        format!("element {} is out of order in {}", child.name, node.name)
    } else {
        format!("unexpected element {} in {}", child.name, node.name)
    }
}

/// Reads an XSD boolean (`true`, `false`, `1`, `0`).
fn xml_bool(node: &XmlNode) -> Result<bool, ApiError> {
    match node.text.as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(ApiError::bad_request(format!(
            "element {} must be true or false, not {other:?}",
            node.name
        ))),
    }
}

/// A property of a JSON object, found case-insensitively as .NET serializers do.
fn json_get<'a>(value: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    value
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

fn json_object<'a>(
    value: &'a serde_json::Value,
    what: &str,
) -> Result<&'a serde_json::Value, ApiError> {
    if value.is_object() {
        Ok(value)
    } else {
        Err(ApiError::bad_request(format!(
            "{what} must be a JSON object"
        )))
    }
}

fn json_str(value: &serde_json::Value, key: &str) -> Result<String, ApiError> {
    match json_get(value, key) {
        Some(serde_json::Value::String(s)) => Ok(s.trim().to_owned()),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a string"))),
        None => Err(ApiError::bad_request(format!("{key} is required"))),
    }
}

/// A JSON boolean; the strings `"true"`/`"True"`/`"false"` too, since EM's own doc samples
/// send them that way.
fn json_bool(value: &serde_json::Value, key: &str) -> Result<Option<bool>, ApiError> {
    match json_get(value, key) {
        None => Ok(None),
        Some(serde_json::Value::Bool(b)) => Ok(Some(*b)),
        Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(ApiError::bad_request(format!(
            "{key} must be true or false"
        ))),
    }
}

/// Items of a JSON list property: an array, an object wrapping one (`{"X":[...]}`), or a
/// single object (one docs fragment shows `HierarchyScopeItem` as an object).
fn json_items<'a>(value: &'a serde_json::Value, inner_keys: &[&str]) -> Vec<&'a serde_json::Value> {
    match value {
        serde_json::Value::Array(items) => items.iter().collect(),
        serde_json::Value::Object(_) => {
            for key in inner_keys {
                if let Some(inner) = json_get(value, key) {
                    return json_items(inner, &[]);
                }
            }
            if inner_keys.is_empty() {
                vec![value]
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

/// `EnterpriseAccountInRoleCreateSpec`: the role UID to assign.
pub(crate) fn role_spec(body: &Body) -> Result<String, ApiError> {
    match body {
        Body::Xml(root) => {
            check_root(root, "EnterpriseAccountInRoleCreateSpec", &ROLE_SPEC)?;
            Ok(root
                .child("EnterpriseRoleUid")
                .map(|n| n.text.clone())
                .unwrap_or_default())
        }
        Body::Json(v) => json_str(json_object(v, "the role spec")?, "EnterpriseRoleUid"),
    }
}

/// One `HierarchyScopeItem`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ScopeItem {
    /// `HierarchyObjRef`.
    pub obj_ref: String,
    /// `ObjectName`.
    pub name: String,
}

fn xml_scope_item(node: &XmlNode) -> ScopeItem {
    let text = |name: &str| node.child(name).map(|n| n.text.clone()).unwrap_or_default();
    ScopeItem {
        obj_ref: text("HierarchyObjRef"),
        name: text("ObjectName"),
    }
}

fn json_scope_item(v: &serde_json::Value) -> Result<ScopeItem, ApiError> {
    let v = json_object(v, "a HierarchyScopeItem")?;
    Ok(ScopeItem {
        obj_ref: json_str(v, "HierarchyObjRef")?,
        name: json_str(v, "ObjectName")?,
    })
}

/// `HierarchyScopeCreateSpec`: the scopes to create.
pub(crate) fn scope_spec(body: &Body) -> Result<Vec<ScopeItem>, ApiError> {
    let items = match body {
        Body::Xml(root) => {
            check_root(root, "HierarchyScopeCreateSpec", &SCOPE_SPEC)?;
            root.children_named("HierarchyScopeItem")
                .map(xml_scope_item)
                .collect()
        }
        // A bare array of items is taken as the list itself.
        Body::Json(v @ serde_json::Value::Array(_)) => json_items(v, &[])
            .into_iter()
            .map(json_scope_item)
            .collect::<Result<Vec<_>, _>>()?,
        Body::Json(v) => {
            let list = json_get(v, "HierarchyScopeItems")
                .or_else(|| json_get(v, "HierarchyScopeItem"))
                .map(|l| json_items(l, &[]))
                .unwrap_or_default();
            list.into_iter()
                .map(json_scope_item)
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    if items.is_empty() {
        return Err(ApiError::bad_request(
            "at least one HierarchyScopeItem is required",
        ));
    }
    Ok(items)
}

/// `RebuildScopeJobSpec` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RebuildMode {
    /// Every scope.
    All,
    /// Scopes not yet processed.
    Unprocessed,
    /// The scopes of the logged-on user's own account.
    ForCurrentUser,
}

/// `RebuildScopeJobSpec`.
pub(crate) fn rebuild_spec(body: &Body) -> Result<RebuildMode, ApiError> {
    let modes = [
        ("RebuildAll", RebuildMode::All),
        ("RebuildUnprocessed", RebuildMode::Unprocessed),
        ("RebuildForCurrentUser", RebuildMode::ForCurrentUser),
    ];
    match body {
        Body::Xml(root) => {
            check_root(root, "RebuildScopeJobSpec", &REBUILD_SPEC)?;
            let name = root
                .children
                .first()
                .map(|c| c.name.as_str())
                .unwrap_or_default();
            modes
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, m)| *m)
                .ok_or_else(|| ApiError::bad_request("a rebuild mode is required"))
        }
        Body::Json(v) => {
            let found: Vec<RebuildMode> = modes
                .iter()
                .filter(|(n, _)| json_get(v, n).is_some())
                .map(|(_, m)| *m)
                .collect();
            match found.as_slice() {
                [one] => Ok(*one),
                [] => Err(ApiError::bad_request(
                    "one of RebuildAll, RebuildUnprocessed or RebuildForCurrentUser is required",
                )),
                _ => Err(ApiError::bad_request("only one rebuild mode may be given")),
            }
        }
    }
}

/// `EnterpriseAccountCreateSpec`, syntactically valid; the account type and role UIDs are
/// still unchecked text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AccountSpec {
    /// `AccountType`.
    pub account_type: String,
    /// `AccountName`.
    pub name: String,
    /// `Roles/EnterpriseRole/EnterpriseRoleUid`.
    pub role_uids: Vec<String>,
    /// `AllowRestoreAllVms`.
    pub allow_restore_all_vms: bool,
    /// `HierarchyScopeObjects/HierarchyScopeItem`.
    pub scopes: Vec<ScopeItem>,
    /// `FlrSettings/FlrInplaceOnly`.
    pub flr_inplace_only: bool,
    /// `FlrSettings/FlrExtentionRestrictions`.
    pub flr_extension_restrictions: Option<String>,
    /// `SqlSettings/DenyInPlaceRestore`.
    pub sql_deny_in_place_restore: bool,
}

/// `EnterpriseAccountCreateSpec`.
pub(crate) fn account_spec(body: &Body) -> Result<AccountSpec, ApiError> {
    match body {
        Body::Xml(root) => {
            check_root(root, "EnterpriseAccountCreateSpec", &ACCOUNT_SPEC)?;
            let text = |name: &str| root.child(name).map(|n| n.text.clone()).unwrap_or_default();
            let roles = root.child("Roles").map(|r| {
                r.children_named("EnterpriseRole")
                    .map(|e| {
                        e.child("EnterpriseRoleUid")
                            .map(|u| u.text.clone())
                            .unwrap_or_default()
                    })
                    .collect()
            });
            let allow = match root.child("AllowRestoreAllVms") {
                Some(n) => xml_bool(n)?,
                None => true,
            };
            let scopes = root
                .child("HierarchyScopeObjects")
                .map(|s| {
                    s.children_named("HierarchyScopeItem")
                        .map(xml_scope_item)
                        .collect()
                })
                .unwrap_or_default();
            let flr = root.child("FlrSettings");
            let flr_inplace_only = match flr.and_then(|f| f.child("FlrInplaceOnly")) {
                Some(n) => xml_bool(n)?,
                None => false,
            };
            let flr_extension_restrictions = flr
                .and_then(|f| f.child("FlrExtentionRestrictions"))
                .map(|n| n.text.clone())
                .filter(|t| !t.is_empty());
            let sql_deny_in_place_restore = match root
                .child("SqlSettings")
                .and_then(|s| s.child("DenyInPlaceRestore"))
            {
                Some(n) => xml_bool(n)?,
                None => false,
            };
            Ok(AccountSpec {
                account_type: text("AccountType"),
                name: text("AccountName"),
                role_uids: roles.unwrap_or_default(),
                allow_restore_all_vms: allow,
                scopes,
                flr_inplace_only,
                flr_extension_restrictions,
                sql_deny_in_place_restore,
            })
        }
        Body::Json(v) => {
            let v = json_object(v, "the account spec")?;
            let role_uids = json_get(v, "Roles")
                .map(|r| json_items(r, &["EnterpriseRoles", "EnterpriseRole"]))
                .unwrap_or_default()
                .into_iter()
                .map(|r| json_str(json_object(r, "a role")?, "EnterpriseRoleUid"))
                .collect::<Result<Vec<_>, _>>()?;
            let scopes = json_get(v, "HierarchyScopeObjects")
                .map(|s| json_items(s, &["HierarchyScopeItems", "HierarchyScopeItem"]))
                .unwrap_or_default()
                .into_iter()
                .map(json_scope_item)
                .collect::<Result<Vec<_>, _>>()?;
            let flr = json_get(v, "FlrSettings");
            let sql = json_get(v, "SqlSettings");
            Ok(AccountSpec {
                account_type: json_str(v, "AccountType")?,
                name: json_str(v, "AccountName")?,
                role_uids,
                allow_restore_all_vms: json_bool(v, "AllowRestoreAllVms")?.unwrap_or(true),
                scopes,
                flr_inplace_only: match flr {
                    Some(f) => json_bool(f, "FlrInplaceOnly")?.unwrap_or(false),
                    None => false,
                },
                flr_extension_restrictions: flr
                    .and_then(|f| json_get(f, "FlrExtentionRestrictions"))
                    .and_then(|s| s.as_str())
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty()),
                sql_deny_in_place_restore: match sql {
                    Some(s) => json_bool(s, "DenyInPlaceRestore")?.unwrap_or(false),
                    None => false,
                },
            })
        }
    }
}

/// Reads the GUID out of `urn:veeam:EnterpriseRole:<guid>`.
pub(crate) fn role_uid(uid: &str) -> Result<Uuid, ApiError> {
    let invalid = || {
        ApiError::bad_request(format!(
            "invalid role UID {uid:?}; expected urn:veeam:EnterpriseRole:<guid>"
        ))
    };
    let mut parts = uid.trim().splitn(4, ':');
    let (Some(urn), Some(veeam), Some(kind), Some(id)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    if !urn.eq_ignore_ascii_case("urn")
        || !veeam.eq_ignore_ascii_case("veeam")
        || !kind.eq_ignore_ascii_case("EnterpriseRole")
    {
        return Err(invalid());
    }
    Uuid::parse_str(id).map_err(|_| invalid())
}

/// The parts of a hierarchy object ref, `urn:<Platform>:<Type>:<root>.<ref>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ObjRef {
    /// `VMware`, `Hyperv`, `vCloud`, ...
    pub platform: String,
    /// `ResourcePool`, `Folder`, `Vm`, ...
    pub object_type: String,
    /// The hierarchy root (a GUID, or a host name).
    pub root: String,
    /// The object's id inside the root, e.g. `resgroup-10734`.
    pub object: String,
}

/// Parses a hierarchy object ref. The root is usually a GUID, which holds no dot, so the
/// root ends at the first dot after a GUID; a host-name root (it has dots of its own) ends
/// at the last dot instead, as object ids like `vm-7870` have none.
pub(crate) fn parse_obj_ref(text: &str) -> Result<ObjRef, String> {
    let malformed = || {
        format!(
            "malformed hierarchy object ref {text:?}; expected urn:<Platform>:<Type>:<root>.<ref>"
        )
    };
    let mut parts = text.trim().splitn(4, ':');
    let (Some(urn), Some(platform), Some(kind), Some(rest)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let word = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !urn.eq_ignore_ascii_case("urn") || !word(platform) || !word(kind) {
        return Err(malformed());
    }
    let split = match rest.split_once('.') {
        Some((root, _)) if Uuid::parse_str(root).is_ok() => root.len(),
        _ => rest.rfind('.').ok_or_else(malformed)?,
    };
    let (root, object) = (&rest[..split], &rest[split + 1..]);
    if root.is_empty()
        || object.is_empty()
        || root.chars().any(char::is_whitespace)
        || object.chars().any(char::is_whitespace)
    {
        return Err(malformed());
    }
    Ok(ObjRef {
        platform: platform.to_owned(),
        object_type: kind.to_owned(),
        root: root.to_owned(),
        object: object.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn xml(body: &str) -> Body {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/xml; charset=utf-8"),
        );
        decode(&h, body.as_bytes()).unwrap()
    }

    fn json(body: &str) -> Body {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        decode(&h, body.as_bytes()).unwrap()
    }

    const ROLE: &str = "urn:veeam:EnterpriseRole:c11c0c38-ba8b-49c7-bf70-fc2058fff1e2";

    #[test]
    fn role_spec_from_the_docs_sample() {
        let body = xml(&format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
            <EnterpriseAccountInRoleCreateSpec xmlns="http://www.veeam.com/ent/v1.0" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
              <EnterpriseRoleUid>{ROLE}</EnterpriseRoleUid>
            </EnterpriseAccountInRoleCreateSpec>"#
        ));
        assert_eq!(role_spec(&body).unwrap(), ROLE);
        assert_eq!(
            role_spec(&json(&format!(r#"{{"EnterpriseRoleUid":"{ROLE}"}}"#))).unwrap(),
            ROLE
        );
        assert_eq!(
            role_spec(&json(&format!(r#"{{"enterpriseroleuid":"{ROLE}"}}"#))).unwrap(),
            ROLE
        );
    }

    #[test]
    fn wrong_root_or_namespace_is_refused() {
        let e = role_spec(&xml(r#"<Spec xmlns="http://www.veeam.com/ent/v1.0"/>"#)).unwrap_err();
        assert!(e.message.contains("expected root element"), "{}", e.message);
        let e = role_spec(&xml(&format!(
            "<EnterpriseAccountInRoleCreateSpec><EnterpriseRoleUid>{ROLE}</EnterpriseRoleUid></EnterpriseAccountInRoleCreateSpec>"
        )))
        .unwrap_err();
        assert!(e.message.contains("namespace"), "{}", e.message);
    }

    #[test]
    fn malformed_xml_is_a_400() {
        let h = HeaderMap::new();
        for bad in [
            "<a><b></a>",
            "<a>",
            "<a/><b/>",
            "<!DOCTYPE a><a/>",
            "<a>&foo;</a>",
        ] {
            let e = decode(&h, bad.as_bytes()).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
        }
    }

    fn account_xml(children: &str) -> Body {
        xml(&format!(
            r#"<EnterpriseAccountCreateSpec xmlns="http://www.veeam.com/ent/v1.0">{children}</EnterpriseAccountCreateSpec>"#
        ))
    }

    #[test]
    fn account_spec_in_order_is_read() {
        let body = account_xml(&format!(
            "<AccountType>User</AccountType><AccountName>TECH\\a &amp; b</AccountName>\
             <Roles><EnterpriseRole><EnterpriseRoleUid>{ROLE}</EnterpriseRoleUid></EnterpriseRole></Roles>\
             <AllowRestoreAllVms>false</AllowRestoreAllVms>\
             <HierarchyScopeObjects><HierarchyScopeItem><HierarchyObjRef>urn:VMware:Vm:r.vm-1</HierarchyObjRef><ObjectName>vm1</ObjectName></HierarchyScopeItem></HierarchyScopeObjects>\
             <FlrSettings><FlrInplaceOnly>true</FlrInplaceOnly><FlrExtentionRestrictions>exe,dll</FlrExtentionRestrictions></FlrSettings>\
             <SqlSettings><DenyInPlaceRestore>1</DenyInPlaceRestore></SqlSettings>"
        ));
        let spec = account_spec(&body).unwrap();
        assert_eq!(spec.name, "TECH\\a & b");
        assert_eq!(spec.role_uids, vec![ROLE.to_owned()]);
        assert!(!spec.allow_restore_all_vms);
        assert_eq!(spec.scopes[0].obj_ref, "urn:VMware:Vm:r.vm-1");
        assert!(spec.flr_inplace_only && spec.sql_deny_in_place_restore);
        assert_eq!(spec.flr_extension_restrictions.as_deref(), Some("exe,dll"));
    }

    #[test]
    fn out_of_order_unknown_and_missing_elements_are_refused() {
        let roles = format!(
            "<Roles><EnterpriseRole><EnterpriseRoleUid>{ROLE}</EnterpriseRoleUid></EnterpriseRole></Roles>"
        );
        let cases = [
            (
                format!("<AccountName>TECH\\a</AccountName><AccountType>User</AccountType>{roles}<AllowRestoreAllVms>true</AllowRestoreAllVms>"),
                "out of order",
            ),
            (
                format!("<AccountType>User</AccountType><AccountName>TECH\\a</AccountName><AllowRestoreAllVms>true</AllowRestoreAllVms>{roles}"),
                "out of order",
            ),
            (
                format!("<AccountType>User</AccountType><AccountName>TECH\\a</AccountName>{roles}<AllowRestoreAllVms>true</AllowRestoreAllVms><SqlSettings><DenyInPlaceRestore>true</DenyInPlaceRestore></SqlSettings><FlrSettings><FlrInplaceOnly>true</FlrInplaceOnly></FlrSettings>"),
                "out of order",
            ),
            (
                format!("<AccountType>User</AccountType><AccountName>TECH\\a</AccountName>{roles}<AllowRestoreAllVms>true</AllowRestoreAllVms><Color>red</Color>"),
                "unexpected element Color",
            ),
            (
                format!("<AccountType>User</AccountType>{roles}<AllowRestoreAllVms>true</AllowRestoreAllVms>"),
                "out of order",
            ),
            (
                format!("<AccountType>User</AccountType><AccountName>TECH\\a</AccountName>{roles}"),
                "lacks required element AllowRestoreAllVms",
            ),
            (
                format!("<AccountType>User</AccountType><AccountType>User</AccountType><AccountName>TECH\\a</AccountName>{roles}<AllowRestoreAllVms>true</AllowRestoreAllVms>"),
                "too often",
            ),
            (
                "<AccountType>User</AccountType><AccountName>TECH\\a</AccountName><Roles/><AllowRestoreAllVms>true</AllowRestoreAllVms>".to_owned(),
                "needs one of EnterpriseRole",
            ),
            (
                format!("<AccountType>User</AccountType><AccountName>TECH\\a</AccountName>{roles}<AllowRestoreAllVms>yes</AllowRestoreAllVms>"),
                "true or false",
            ),
        ];
        for (children, want) in cases {
            let e = account_spec(&account_xml(&children)).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.message.contains(want), "{children}: {}", e.message);
        }
    }

    #[test]
    fn scope_item_fields_must_keep_their_order() {
        let good = r#"<HierarchyScopeCreateSpec xmlns="http://www.veeam.com/ent/v1.0"><HierarchyScopeItem><HierarchyObjRef>urn:VMware:Vm:r.vm-1</HierarchyObjRef><ObjectName>a</ObjectName></HierarchyScopeItem><HierarchyScopeItem><HierarchyObjRef>urn:VMware:Vm:r.vm-2</HierarchyObjRef><ObjectName>b</ObjectName></HierarchyScopeItem></HierarchyScopeCreateSpec>"#;
        assert_eq!(scope_spec(&xml(good)).unwrap().len(), 2);
        let swapped = r#"<HierarchyScopeCreateSpec xmlns="http://www.veeam.com/ent/v1.0"><HierarchyScopeItem><ObjectName>a</ObjectName><HierarchyObjRef>urn:VMware:Vm:r.vm-1</HierarchyObjRef></HierarchyScopeItem></HierarchyScopeCreateSpec>"#;
        assert!(
            scope_spec(&xml(swapped))
                .unwrap_err()
                .message
                .contains("out of order")
        );
        let empty = r#"<HierarchyScopeCreateSpec xmlns="http://www.veeam.com/ent/v1.0"/>"#;
        assert_eq!(scope_spec(&xml(empty)).unwrap_err().status, 400);
    }

    #[test]
    fn json_specs_accept_the_documented_shapes() {
        let items = json(
            r#"{"HierarchyScopeItems":[{"HierarchyObjRef":"urn:VMware:Vm:r.vm-1","ObjectName":"a"}]}"#,
        );
        assert_eq!(scope_spec(&items).unwrap()[0].name, "a");
        let single = json(
            r#"{"HierarchyScopeItem":{"HierarchyObjRef":"urn:VMware:Vm:r.vm-1","ObjectName":"a"}}"#,
        );
        assert_eq!(scope_spec(&single).unwrap().len(), 1);
        let spec = json(&format!(
            r#"{{"AccountType":"User","AccountName":"TECH\\a","Roles":{{"EnterpriseRoles":[{{"EnterpriseRoleUid":"{ROLE}"}}]}},
               "AllowRestoreAllVms":"False","HierarchyScopeObjects":{{"HierarchyScopeItems":[{{"HierarchyObjRef":"urn:VMware:Vm:r.vm-1","ObjectName":"a"}}]}},
               "FlrSettings":{{"FlrInplaceOnly":"True"}},"Extra":1}}"#
        ));
        let spec = account_spec(&spec).unwrap();
        assert!(!spec.allow_restore_all_vms && spec.flr_inplace_only);
        assert_eq!(spec.scopes.len(), 1);
        assert_eq!(
            rebuild_spec(&json(r#"{"RebuildUnprocessed":{}}"#)).unwrap(),
            RebuildMode::Unprocessed
        );
        assert_eq!(rebuild_spec(&json(r#"{}"#)).unwrap_err().status, 400);
    }

    #[test]
    fn rebuild_spec_needs_exactly_one_empty_mode() {
        let ok = r#"<RebuildScopeJobSpec xmlns="http://www.veeam.com/ent/v1.0"><RebuildAll/></RebuildScopeJobSpec>"#;
        assert_eq!(rebuild_spec(&xml(ok)).unwrap(), RebuildMode::All);
        let two = r#"<RebuildScopeJobSpec xmlns="http://www.veeam.com/ent/v1.0"><RebuildAll/><RebuildUnprocessed/></RebuildScopeJobSpec>"#;
        assert_eq!(rebuild_spec(&xml(two)).unwrap_err().status, 400);
    }

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

    #[test]
    fn role_uids() {
        assert_eq!(
            role_uid(ROLE).unwrap().to_string(),
            "c11c0c38-ba8b-49c7-bf70-fc2058fff1e2"
        );
        for bad in [
            "c11c0c38-ba8b-49c7-bf70-fc2058fff1e2",
            "urn:veeam:EnterpriseAccount:c11c0c38-ba8b-49c7-bf70-fc2058fff1e2",
            "urn:veeam:EnterpriseRole:nope",
        ] {
            assert_eq!(role_uid(bad).unwrap_err().status, 400, "{bad}");
        }
    }

    #[test]
    fn obj_refs() {
        let r = parse_obj_ref(
            "urn:VMware:ResourcePool:24a14898-77d0-4f5b-9a6f-0c1d2e3f4a5b.resgroup-10734",
        )
        .unwrap();
        assert_eq!(
            (
                r.platform.as_str(),
                r.object_type.as_str(),
                r.root.as_str(),
                r.object.as_str()
            ),
            (
                "VMware",
                "ResourcePool",
                "24a14898-77d0-4f5b-9a6f-0c1d2e3f4a5b",
                "resgroup-10734"
            )
        );
        let host = parse_obj_ref("urn:VMware:Folder:vcprod.tech.local.group-v22").unwrap();
        assert_eq!(
            (host.root.as_str(), host.object.as_str()),
            ("vcprod.tech.local", "group-v22")
        );
        let nas =
            parse_obj_ref("urn:NasBackup:FileServer:24a14898-77d0-4f5b-9a6f-0c1d2e3f4a5b.a.b")
                .unwrap();
        assert_eq!(nas.object, "a.b");
        for bad in [
            "",
            "urn:VMware:Vm",
            "urn:VMware:Vm:novalue",
            "urn:VMware:Vm:.vm-1",
            "urn:VMware:Vm:r.",
            "x:VMware:Vm:r.vm-1",
            "urn::Vm:r.vm-1",
            "urn:VM ware:Vm:r.vm-1",
        ] {
            assert!(parse_obj_ref(bad).is_err(), "{bad}");
        }
    }
}
