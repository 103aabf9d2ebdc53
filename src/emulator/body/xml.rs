//! XML request bodies: the element tree of a document, and its check against a spec's content
//! model (an XSD's sequences and choices), with EM's strictness about root name, namespace
//! and element order.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use crate::emulator::wire::{ApiError, NS};

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

pub(super) const UNBOUNDED: u32 = u32::MAX;

pub(super) const fn one(name: &'static str, content: &'static Content) -> Particle {
    Particle {
        name,
        min: 1,
        max: 1,
        content,
    }
}

pub(super) const fn optional(name: &'static str, content: &'static Content) -> Particle {
    Particle {
        name,
        min: 0,
        max: 1,
        content,
    }
}

pub(super) const fn many(name: &'static str, content: &'static Content) -> Particle {
    Particle {
        name,
        min: 1,
        max: UNBOUNDED,
        content,
    }
}

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
pub(super) fn xml_bool(node: &XmlNode) -> Result<bool, ApiError> {
    match node.text.as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(ApiError::bad_request(format!(
            "element {} must be true or false, not {other:?}",
            node.name
        ))),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;

    use super::super::decode;
    use super::super::fixtures::{ROLE, account_xml, xml};
    use super::super::spec::{account_spec, role_spec};

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
}
