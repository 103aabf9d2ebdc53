//! The XML wire format (EM's default), through quick-xml.
//!
//! Reading goes through a small element tree keyed by local names, so namespaces and prefixes,
//! attribute order, whitespace and unknown elements never matter. Writing emits the request
//! bodies with the XML declaration, EM's namespace and the elements in XSD `sequence` order,
//! which EM insists on.

use std::borrow::Cow;
use std::io;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesStart, BytesText, Event};
use quick_xml::reader::Reader;

use super::codec::{self, AccountParts, Codec, DecodeError, ErrorBody};
use super::fields::{self, Fields};
use super::{
    Account, AccountCreateSpec, AccountRole, EntityRef, EntryPoint, FlrSettings, LogonSession,
    RebuildMode, Scope, ScopeItem, SqlSettings, Task,
};

/// EM's XML namespace.
pub(crate) const NAMESPACE: &str = "http://www.veeam.com/ent/v1.0";

/// One element: its local name, attributes by local name (namespace declarations dropped),
/// child elements and text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Element>,
    text: String,
}

impl Element {
    /// The attribute `name`.
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first child element named `name`.
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The child elements named `name`.
    fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The element's own text, trimmed.
    fn text(&self) -> &str {
        self.text.trim()
    }

    /// The text of the child `name`.
    fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(Element::text)
    }

    /// A value EM may carry as an attribute or, in hand-written documents, as a child element.
    fn field(&self, name: &str) -> Option<&str> {
        self.attr(name).or_else(|| self.child_text(name))
    }

    /// The `Href` of the first link with relation `rel`.
    fn link(&self, rel: &str) -> Option<&str> {
        self.child("Links")?
            .children_named("Link")
            .find(|l| l.attr("Rel").is_some_and(|r| r.eq_ignore_ascii_case(rel)))
            .and_then(|l| l.attr("Href"))
    }
}

/// Parses a document into its root element.
pub(crate) fn parse_document(body: &str) -> Result<Element, DecodeError> {
    let mut reader = Reader::from_str(body.trim_start_matches('\u{feff}'));
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("malformed xml at byte {}: {e}", reader.error_position()))?;
        match event {
            Event::Start(start) => {
                room_below(&stack)?;
                stack.push(element(&start)?);
            }
            Event::Empty(start) => {
                room_below(&stack)?;
                attach(&mut stack, &mut root, element(&start)?)?;
            }
            Event::End(_) => {
                let done = stack.pop().ok_or("malformed xml: unbalanced end tag")?;
                attach(&mut stack, &mut root, done)?;
            }
            Event::Text(text) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&text.xml10_content());
                }
            }
            Event::CData(data) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&data.xml10_content());
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference
                    .resolve_char_ref()
                    .map_err(|e| format!("malformed xml: {e}"))?
                {
                    Some(ch) => ch.to_string(),
                    None => {
                        let name = reference.xml10_content();
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("malformed xml: unknown entity &{name};"))?
                            .to_string()
                    }
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&resolved);
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("malformed xml: the document ends inside an element".into());
    }
    root.ok_or_else(|| "empty xml document".into())
}

/// Refuses an element nested below [`codec::MAX_DEPTH`] open ones. The tree is built without
/// recursion, but dropping, comparing or printing it recurses once per level.
fn room_below(open: &[Element]) -> Result<(), DecodeError> {
    if open.len() >= codec::MAX_DEPTH {
        return Err(codec::too_deep("xml", "elements"));
    }
    Ok(())
}

fn element(start: &BytesStart<'_>) -> Result<Element, DecodeError> {
    let mut el = Element {
        name: start.local_name().as_ref().to_string(),
        ..Element::default()
    };
    for attr in start.attributes() {
        let attr = attr.map_err(|e| format!("malformed xml attribute: {e}"))?;
        if attr.key.as_namespace_binding().is_some() {
            continue;
        }
        let key = attr.key.local_name().as_ref().to_string();
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| format!("malformed xml attribute {key}: {e}"))?;
        el.attrs.push((key, value.into_owned()));
    }
    Ok(el)
}

fn attach(
    stack: &mut [Element],
    root: &mut Option<Element>,
    el: Element,
) -> Result<(), DecodeError> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None if root.is_none() => *root = Some(el),
        None => return Err("malformed xml: more than one root element".into()),
    }
    Ok(())
}

/// Parses `body` and checks that its root is one of `names`.
fn root(body: &str, names: &[&str]) -> Result<Element, DecodeError> {
    let root = parse_document(body)?;
    if names.contains(&root.name.as_str()) {
        Ok(root)
    } else {
        Err(format!(
            "expected <{}>, found <{}>",
            names.join("> or <"),
            root.name
        ))
    }
}

/// An element as the shared readers see it: every element holds values, as attributes or
/// child elements.
impl Fields for Element {
    fn entity(&self) -> Result<(), DecodeError> {
        Ok(())
    }

    fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        Element::field(self, name).map(Cow::Borrowed)
    }

    fn link(&self, rel: &str) -> Option<Cow<'_, str>> {
        Element::link(self, rel).map(Cow::Borrowed)
    }
}

fn bool_field(el: &Element, name: &str) -> Result<Option<bool>, DecodeError> {
    match el.field(name) {
        None | Some("") => Ok(None),
        Some(text) => codec::parse_bool(text)
            .map(Some)
            .ok_or_else(|| format!("{name} is not a boolean: '{text}'")),
    }
}

/// Reads an `Error` body; `None` when the document is not one.
pub(crate) fn error_body(body: &str) -> Option<ErrorBody> {
    let root = parse_document(body).ok()?;
    if root.name != "Error" {
        return None;
    }
    let message = root
        .field("Message")
        .filter(|m| !m.is_empty())
        .or_else(|| root.child_text("FirstChanceExceptionMessage"))
        .unwrap_or_default();
    Some(ErrorBody {
        message: message.to_string(),
        status_code: root.field("StatusCode").and_then(|s| s.trim().parse().ok()),
    })
}

/// The XML [`Codec`].
pub(crate) struct XmlCodec;

impl Codec for XmlCodec {
    fn media_type(&self) -> &'static str {
        "application/xml"
    }

    fn entry_point(&self, body: &str) -> Result<EntryPoint, DecodeError> {
        let root = root(body, &["EnterpriseManager"])?;
        let versions = root
            .child("SupportedVersions")
            .map(|list| {
                list.children_named("SupportedVersion")
                    .filter_map(|v| v.field("Name"))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        Ok(EntryPoint { versions })
    }

    fn logon_session(&self, body: &str) -> Result<LogonSession, DecodeError> {
        fields::logon_session(&root(body, &["LogonSession"])?)
    }

    fn logon_sessions(&self, body: &str) -> Result<Vec<LogonSession>, DecodeError> {
        root(body, &["LogonSessions"])?
            .children_named("LogonSession")
            .map(fields::logon_session)
            .collect()
    }

    fn security(&self, body: &str) -> Result<(), DecodeError> {
        root(body, &["EnterpriseSecuritySettings"]).map(|_| ())
    }

    fn entity_refs(&self, body: &str) -> Result<Vec<EntityRef>, DecodeError> {
        let root = root(body, &["EntityReferences"])?;
        root.children
            .iter()
            .filter(|c| c.name == "Ref" || c.name == "EntityRef")
            .map(fields::entity_ref)
            .collect()
    }

    fn entity_ref(&self, body: &str) -> Result<EntityRef, DecodeError> {
        fields::entity_ref(&root(body, &["EntityRef", "Ref"])?)
    }

    fn account(&self, body: &str) -> Result<Account, DecodeError> {
        let root = root(body, &["EnterpriseAccount"])?;
        let flr = match root.child("FlrSettings") {
            Some(f) => Some(FlrSettings {
                // The old XSD spells the flag FlrInlaceOnly.
                inplace_only: match bool_field(f, "FlrInplaceOnly")? {
                    Some(v) => v,
                    None => bool_field(f, "FlrInlaceOnly")?.unwrap_or(false),
                },
                extension_restrictions: f
                    .field("FlrExtentionRestrictions")
                    .filter(|r| !r.is_empty())
                    .map(str::to_string),
            }),
            None => None,
        };
        let sql = match root.child("SqlSettings") {
            Some(s) => Some(SqlSettings {
                deny_in_place_restore: bool_field(s, "DenyInPlaceRestore")?.unwrap_or(false),
            }),
            None => None,
        };
        AccountParts {
            uid: root.field("UID"),
            href: root.field("Href"),
            name: root.field("Name"),
            account_type: root.field("AccountType"),
            allow_restore_all_vms: bool_field(&root, "AllowRestoreAllVms")?,
            flr,
            sql,
        }
        .build()
    }

    fn account_roles(&self, body: &str) -> Result<Vec<AccountRole>, DecodeError> {
        root(
            body,
            &["EnterpriseAccountInRoleList", "EnterpriseAccountInRoles"],
        )?
        .children_named("EnterpriseAccountInRole")
        .map(fields::account_role)
        .collect()
    }

    fn account_role(&self, body: &str) -> Result<AccountRole, DecodeError> {
        fields::account_role(&root(body, &["EnterpriseAccountInRole"])?)
    }

    fn scopes(&self, body: &str) -> Result<Vec<Scope>, DecodeError> {
        root(
            body,
            &[
                "EnterpriseAccountHierarchyScopes",
                "EnterpriseAccountHierarchyScopeList",
            ],
        )?
        .children_named("EnterpriseAccountHierarchyScope")
        .map(fields::scope)
        .collect()
    }

    fn scope(&self, body: &str) -> Result<Scope, DecodeError> {
        fields::scope(&root(body, &["EnterpriseAccountHierarchyScope"])?)
    }

    fn task(&self, body: &str) -> Result<Task, DecodeError> {
        fields::task(&root(body, &["Task"])?)
    }

    fn account_create_spec(&self, spec: &AccountCreateSpec) -> String {
        document("EnterpriseAccountCreateSpec", |w| {
            leaf(w, "AccountType", spec.account_type.as_str())?;
            leaf(w, "AccountName", &spec.account_name)?;
            w.create_element("Roles").write_inner_content(|w| {
                for uid in &spec.role_uids {
                    w.create_element("EnterpriseRole")
                        .write_inner_content(|w| leaf(w, "EnterpriseRoleUid", uid))?;
                }
                Ok(())
            })?;
            leaf(
                w,
                "AllowRestoreAllVms",
                bool_text(spec.allow_restore_all_vms),
            )?;
            if !spec.scopes.is_empty() {
                w.create_element("HierarchyScopeObjects")
                    .write_inner_content(|w| scope_items(w, &spec.scopes))?;
            }
            if let Some(flr) = &spec.flr {
                w.create_element("FlrSettings").write_inner_content(|w| {
                    leaf(w, "FlrInplaceOnly", bool_text(flr.inplace_only))?;
                    if let Some(r) = &flr.extension_restrictions {
                        leaf(w, "FlrExtentionRestrictions", r)?;
                    }
                    Ok(())
                })?;
            }
            if let Some(sql) = &spec.sql {
                w.create_element("SqlSettings").write_inner_content(|w| {
                    leaf(
                        w,
                        "DenyInPlaceRestore",
                        bool_text(sql.deny_in_place_restore),
                    )
                })?;
            }
            Ok(())
        })
    }

    fn role_assignment_spec(&self, role_uid: &str) -> String {
        document("EnterpriseAccountInRoleCreateSpec", |w| {
            leaf(w, "EnterpriseRoleUid", role_uid)
        })
    }

    fn scope_create_spec(&self, items: &[ScopeItem]) -> String {
        document("HierarchyScopeCreateSpec", |w| scope_items(w, items))
    }

    fn rebuild_spec(&self, mode: RebuildMode) -> String {
        let child = match mode {
            RebuildMode::All => "RebuildAll",
            RebuildMode::Unprocessed => "RebuildUnprocessed",
            RebuildMode::ForCurrentUser => "RebuildForCurrentUser",
        };
        document("RebuildScopeJobSpec", |w| {
            w.create_element(child).write_empty()?;
            Ok(())
        })
    }
}

type XmlWriter = Writer<Vec<u8>>;

/// A request document: the declaration, then `root` in EM's namespace holding what `content`
/// writes.
fn document(root: &str, content: impl FnOnce(&mut XmlWriter) -> io::Result<()>) -> String {
    let mut writer = Writer::new(Vec::new());
    writer
        .write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)))
        .and_then(|_| {
            writer
                .create_element(root)
                .with_attribute(("xmlns", NAMESPACE))
                .write_inner_content(content)
                .map(|_| ())
        })
        .expect("writing xml into a Vec cannot fail");
    String::from_utf8(writer.into_inner()).expect("quick-xml writes the UTF-8 it is given")
}

fn leaf(w: &mut XmlWriter, name: &str, text: &str) -> io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(text))?;
    Ok(())
}

fn scope_items(w: &mut XmlWriter, items: &[ScopeItem]) -> io::Result<()> {
    for item in items {
        w.create_element("HierarchyScopeItem")
            .write_inner_content(|w| {
                leaf(w, "HierarchyObjRef", &item.obj_ref)?;
                leaf(w, "ObjectName", &item.object_name)
            })?;
    }
    Ok(())
}

fn bool_text(value: bool) -> &'static str {
    if value { "true" } else { "false" }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::em::AccountType;

    const ACCOUNT_ROLES: &str = include_str!("fixtures/account-roles.xml");

    fn guid(s: &str) -> Uuid {
        Uuid::parse_str(s).unwrap()
    }

    #[test]
    fn the_documented_role_list_parses() {
        let roles = XmlCodec.account_roles(ACCOUNT_ROLES).unwrap();
        let got: Vec<(Uuid, &str)> = roles
            .iter()
            .map(|r| (r.role_id, r.role_name.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    guid("f84a8b62-49b8-4d0c-b25b-92321b52bab6"),
                    "File Restore Operator"
                ),
                (
                    guid("c11c0c38-ba8b-49c7-bf70-fc2058fff1e2"),
                    "VM Restore Operator"
                ),
                (
                    guid("f83e4c81-0815-452f-9377-9d573dd9d481"),
                    "Exchange Restore Operator"
                ),
                (
                    guid("f78a92b8-9f06-4f1e-b522-4f0927cabd0f"),
                    "SQL Restore Operator"
                ),
                (guid("d19a3d33-cb77-4ffe-94e6-001432483a4e"), "Portal User"),
            ]
        );
    }

    #[test]
    fn prefixed_namespaces_unknown_elements_and_entities_are_tolerated() {
        let body = r#"<?xml version="1.0" encoding="utf-8"?>
<!-- a comment -->
<v:EnterpriseAccountInRoleList xmlns:v="http://www.veeam.com/ent/v1.0">
  <v:Unknown a="1"><v:Deeper/></v:Unknown>
  <v:EnterpriseAccountInRole Href="https://h/api/security/accounts/a/roles/5f37a46b-9ce2-40f4-8a62-b45b079257fc?x=1">
    <v:RoleName>Portal &amp; Admin&#x21;</v:RoleName>
  </v:EnterpriseAccountInRole>
  <v:EnterpriseAccountInRole>
    <v:Links><v:Link Rel="Delete" Href="https://h/api/security/accounts/a/roles/d19a3d33-cb77-4ffe-94e6-001432483a4e"/></v:Links>
    <v:RoleName><![CDATA[Portal User]]></v:RoleName>
  </v:EnterpriseAccountInRole>
</v:EnterpriseAccountInRoleList>"#;
        let roles = XmlCodec.account_roles(body).unwrap();
        assert_eq!(
            roles[0].role_id,
            guid("5f37a46b-9ce2-40f4-8a62-b45b079257fc")
        );
        assert_eq!(roles[0].role_name, "Portal & Admin!");
        assert_eq!(
            roles[1].role_id,
            guid("d19a3d33-cb77-4ffe-94e6-001432483a4e")
        );
        assert_eq!(roles[1].role_name, "Portal User");
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        // Parsed on a thread with a small stack, as a worker's, so that an unbounded tree
        // would overflow it when dropped.
        let deep = |levels: usize| format!("{}{}", "<a>".repeat(levels), "</a>".repeat(levels));
        let outcome = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let refused = parse_document(&deep(50_000)).unwrap_err();
                let empty = format!("{}<a/>{}", "<a>".repeat(64), "</a>".repeat(64));
                (
                    refused,
                    parse_document(&deep(codec::MAX_DEPTH)).is_ok(),
                    parse_document(&empty).is_err(),
                    error_body(&format!("<Error Message=\"x\">{}</Error>", deep(100))),
                )
            })
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert_eq!(
            outcome,
            (
                "xml nested deeper than 64 elements, which no EM answer is".to_string(),
                true,
                true,
                None
            )
        );
    }

    #[test]
    fn malformed_documents_are_errors() {
        assert!(parse_document("<a><b></a>").is_err());
        assert!(parse_document("<a>").is_err());
        assert!(parse_document("").is_err());
        assert!(parse_document("<a/><b/>").is_err());
        assert!(XmlCodec.account_roles("<EntityReferences/>").is_err());
    }

    #[test]
    fn entry_point() {
        let body = r#"<EnterpriseManager xmlns="http://www.veeam.com/ent/v1.0">
  <Links>
    <Link Rel="Down" Type="LogonSessionList" Href="https://h:9398/api/logonSessions"/>
    <Link Rel="Create" Type="LogonSession" Href="https://h:9398/api/sessionMngr/?v=latest"/>
  </Links>
  <SupportedVersions>
    <SupportedVersion Name="v1_5"><Links><Link Rel="Create" Type="LogonSession" Href="https://h:9398/api/sessionMngr/?v=v1_5"/></Links></SupportedVersion>
    <SupportedVersion Name="v1_6"/>
    <SupportedVersion Name="v1_7"/>
  </SupportedVersions>
</EnterpriseManager>"#;
        assert_eq!(
            XmlCodec.entry_point(body).unwrap().versions,
            vec!["v1_5", "v1_6", "v1_7"]
        );
    }

    #[test]
    fn logon_session_and_list() {
        let one = r#"<LogonSession xmlns="http://www.veeam.com/ent/v1.0" Type="LogonSession" Href="https://h/api/logonSessions/s1">
  <Links><Link Rel="Delete" Href="https://h/api/logonSessions/s1"/></Links>
  <UserName>DOMAIN\user</UserName>
  <SessionId>s1</SessionId>
</LogonSession>"#;
        let session = XmlCodec.logon_session(one).unwrap();
        assert_eq!(
            (session.user_name.as_str(), session.session_id.as_str()),
            ("DOMAIN\\user", "s1")
        );
        let item = one.replace(r#" xmlns="http://www.veeam.com/ent/v1.0""#, "");
        let list = format!(r#"<LogonSessions xmlns="{NAMESPACE}">{item}</LogonSessions>"#);
        let sessions = XmlCodec.logon_sessions(&list).unwrap();
        assert_eq!(sessions, vec![session]);
        assert!(
            XmlCodec
                .logon_session("<LogonSession><UserName>u</UserName></LogonSession>")
                .is_err()
        );
    }

    #[test]
    fn security_settings() {
        let body = r#"<EnterpriseSecuritySettings xmlns="http://www.veeam.com/ent/v1.0" Href="https://h/api/security">
  <Links><Link Rel="Down" Type="EnterpriseAccountReferenceList" Href="https://h/api/security/accounts"/></Links>
</EnterpriseSecuritySettings>"#;
        XmlCodec.security(body).unwrap();
        assert!(XmlCodec.security("<Error Message=\"x\"/>").is_err());
    }

    #[test]
    fn entity_references_and_single_ref() {
        let body = r#"<?xml version="1.0" encoding="utf-8"?>
<EntityReferences xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns="http://www.veeam.com/ent/v1.0">
  <Ref UID="urn:veeam:EnterpriseAccount:d6701c3d-15f4-421d-b376-c0e2634bc1f4" Name="BUILTIN\Administrators"
       Href="https://h/api/security/accounts/d6701c3d-15f4-421d-b376-c0e2634bc1f4" Type="EnterpriseAccountReference">
    <Links><Link Rel="Alternate" Type="EnterpriseAccount" Href="https://h/api/security/accounts/d6701c3d-15f4-421d-b376-c0e2634bc1f4?format=Entity"/></Links>
  </Ref>
  <Ref Type="EnterpriseAccountReference" Href="https://h/api/security/accounts/x" Name="TECH\user00001" UID="urn:veeam:EnterpriseAccount:x"/>
</EntityReferences>"#;
        let refs = XmlCodec.entity_refs(body).unwrap();
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[0].name, "BUILTIN\\Administrators");
        assert_eq!(
            refs[0].uid,
            "urn:veeam:EnterpriseAccount:d6701c3d-15f4-421d-b376-c0e2634bc1f4"
        );
        assert_eq!(refs[0].kind, "EnterpriseAccountReference");
        assert_eq!(refs[1].name, "TECH\\user00001");
        let one = r#"<EntityRef xmlns="http://www.veeam.com/ent/v1.0" Type="EnterpriseRoleReference" Href="https://h/api/security/roles/c11c0c38-ba8b-49c7-bf70-fc2058fff1e2" Name="VM Restore Operator" UID="urn:veeam:EnterpriseRole:c11c0c38-ba8b-49c7-bf70-fc2058fff1e2"/>"#;
        let role = XmlCodec.entity_ref(one).unwrap();
        assert_eq!(role.name, "VM Restore Operator");
        assert!(role.href.ends_with("/c11c0c38-ba8b-49c7-bf70-fc2058fff1e2"));
    }

    #[test]
    fn account_entity() {
        let body = r#"<EnterpriseAccount xmlns="http://www.veeam.com/ent/v1.0" Type="EnterpriseAccount"
    Href="https://h/api/security/accounts/d6701c3d-15f4-421d-b376-c0e2634bc1f4?format=Entity" Name="TECH\william.fox"
    UID="urn:veeam:EnterpriseAccount:d6701c3d-15f4-421d-b376-c0e2634bc1f4">
  <Links>
    <Link Rel="Alternate" Type="EnterpriseAccountReference" Href="https://h/api/security/accounts/d6701c3d-15f4-421d-b376-c0e2634bc1f4"/>
    <Link Rel="ToggleRestoreScopesEnabled" Href="https://h/api/security/accounts/d6701c3d-15f4-421d-b376-c0e2634bc1f4"/>
  </Links>
  <AccountType>User</AccountType>
  <AllowRestoreAllVms>true</AllowRestoreAllVms>
  <FlrSettings><FlrInplaceOnly>false</FlrInplaceOnly><FlrExtentionRestrictions/></FlrSettings>
  <SqlSettings><DenyInPlaceRestore>True</DenyInPlaceRestore></SqlSettings>
</EnterpriseAccount>"#;
        let account = XmlCodec.account(body).unwrap();
        assert_eq!(account.id, guid("d6701c3d-15f4-421d-b376-c0e2634bc1f4"));
        assert_eq!(account.name, "TECH\\william.fox");
        assert_eq!(account.account_type, AccountType::User);
        assert!(account.allow_restore_all_vms);
        assert_eq!(account.flr, Some(FlrSettings::default()));
        assert_eq!(
            account.sql,
            Some(SqlSettings {
                deny_in_place_restore: true
            })
        );

        // Older samples end after AllowRestoreAllVms.
        let old = r#"<EnterpriseAccount Href="https://h/api/security/accounts/d6701c3d-15f4-421d-b376-c0e2634bc1f4?format=Entity" Name="TECH\g">
  <AccountType>Group</AccountType><AllowRestoreAllVms>false</AllowRestoreAllVms></EnterpriseAccount>"#;
        let account = XmlCodec.account(old).unwrap();
        assert_eq!(account.id, guid("d6701c3d-15f4-421d-b376-c0e2634bc1f4"));
        assert_eq!(
            account.uid,
            "urn:veeam:EnterpriseAccount:d6701c3d-15f4-421d-b376-c0e2634bc1f4"
        );
        assert_eq!(
            (account.account_type, account.allow_restore_all_vms),
            (AccountType::Group, false)
        );
        assert_eq!((account.flr, account.sql), (None, None));

        let no_flag = old.replace("<AllowRestoreAllVms>false</AllowRestoreAllVms>", "");
        assert!(XmlCodec.account(&no_flag).is_err());
        let bad_type = old.replace(">Group<", ">Robot<");
        assert!(XmlCodec.account(&bad_type).is_err());
    }

    #[test]
    fn one_role_assignment() {
        let body = r#"<EnterpriseAccountInRole xmlns="http://www.veeam.com/ent/v1.0" Href="https://h/api/security/accounts/a/roles/f84a8b62-49b8-4d0c-b25b-92321b52bab6">
  <Links><Link Rel="Delete" Type="EnterpriseAccountInRole" Href="https://h/api/security/accounts/a/roles/f84a8b62-49b8-4d0c-b25b-92321b52bab6"/></Links>
  <RoleName>File Restore Operator</RoleName>
</EnterpriseAccountInRole>"#;
        let role = XmlCodec.account_role(body).unwrap();
        assert_eq!(role.role_id, guid("f84a8b62-49b8-4d0c-b25b-92321b52bab6"));
        assert_eq!(role.role_name, "File Restore Operator");
    }

    #[test]
    fn scopes_and_one_scope() {
        let item = r#"<EnterpriseAccountHierarchyScope Href="https://h/api/security/accounts/a/scopes/0f5e4c3b-2a19-4c8d-9e7f-112233445566">
    <Links><Link Rel="Delete" Href="https://h/api/security/accounts/a/scopes/0f5e4c3b-2a19-4c8d-9e7f-112233445566"/></Links>
    <Name>Production</Name>
    <HierarchyRootName>24a14898-77d0-4c1a-8a0e-0123456789ab</HierarchyRootName>
    <Platform>VMware</Platform>
    <HierarchyObjectType>ResourcePool</HierarchyObjectType>
    <State>Unprocessed</State>
  </EnterpriseAccountHierarchyScope>"#;
        let list = format!(
            r#"<EnterpriseAccountHierarchyScopes xmlns="{NAMESPACE}">{item}</EnterpriseAccountHierarchyScopes>"#
        );
        let scopes = XmlCodec.scopes(&list).unwrap();
        let expected = Scope {
            id: guid("0f5e4c3b-2a19-4c8d-9e7f-112233445566"),
            name: "Production".into(),
            hierarchy_root_name: "24a14898-77d0-4c1a-8a0e-0123456789ab".into(),
            platform: "VMware".into(),
            object_type: "ResourcePool".into(),
            state: "Unprocessed".into(),
        };
        assert_eq!(scopes, vec![expected.clone()]);
        let single = item.replacen(
            "<EnterpriseAccountHierarchyScope ",
            &format!("<EnterpriseAccountHierarchyScope xmlns=\"{NAMESPACE}\" "),
            1,
        );
        assert_eq!(XmlCodec.scope(&single).unwrap(), expected);
        let empty = format!(r#"<EnterpriseAccountHierarchyScopes xmlns="{NAMESPACE}"/>"#);
        assert!(XmlCodec.scopes(&empty).unwrap().is_empty());
    }

    #[test]
    fn task() {
        let body = r#"<Task xmlns="http://www.veeam.com/ent/v1.0" Type="Task" Href="https://h/api/tasks/task-1">
  <Links/><TaskId>task-1</TaskId><State>Finished</State><Operation>StartRebuildScope</Operation>
  <Result Success="true" Message=""/>
</Task>"#;
        let task = XmlCodec.task(body).unwrap();
        assert_eq!(
            task,
            Task {
                task_id: "task-1".into(),
                state: "Finished".into(),
                operation: "StartRebuildScope".into()
            }
        );
    }

    #[test]
    fn create_spec_elements_in_xsd_order() {
        let spec = AccountCreateSpec {
            account_type: AccountType::User,
            account_name: "TECH\\new & joiner".into(),
            role_uids: vec![
                "urn:veeam:EnterpriseRole:d19a3d33-cb77-4ffe-94e6-001432483a4e".into(),
                "urn:veeam:EnterpriseRole:c11c0c38-ba8b-49c7-bf70-fc2058fff1e2".into(),
            ],
            allow_restore_all_vms: false,
            scopes: vec![ScopeItem {
                obj_ref: "urn:VMware:ResourcePool:root.resgroup-1".into(),
                object_name: "RP <1>".into(),
            }],
            flr: Some(FlrSettings {
                inplace_only: true,
                extension_restrictions: Some("exe,dll".into()),
            }),
            sql: Some(SqlSettings {
                deny_in_place_restore: false,
            }),
        };
        let xml = XmlCodec.account_create_spec(&spec);
        let expected = concat!(
            r#"<?xml version="1.0" encoding="utf-8"?>"#,
            r#"<EnterpriseAccountCreateSpec xmlns="http://www.veeam.com/ent/v1.0">"#,
            "<AccountType>User</AccountType>",
            "<AccountName>TECH\\new &amp; joiner</AccountName>",
            "<Roles>",
            "<EnterpriseRole><EnterpriseRoleUid>urn:veeam:EnterpriseRole:d19a3d33-cb77-4ffe-94e6-001432483a4e</EnterpriseRoleUid></EnterpriseRole>",
            "<EnterpriseRole><EnterpriseRoleUid>urn:veeam:EnterpriseRole:c11c0c38-ba8b-49c7-bf70-fc2058fff1e2</EnterpriseRoleUid></EnterpriseRole>",
            "</Roles>",
            "<AllowRestoreAllVms>false</AllowRestoreAllVms>",
            "<HierarchyScopeObjects><HierarchyScopeItem>",
            "<HierarchyObjRef>urn:VMware:ResourcePool:root.resgroup-1</HierarchyObjRef>",
            "<ObjectName>RP &lt;1&gt;</ObjectName>",
            "</HierarchyScopeItem></HierarchyScopeObjects>",
            "<FlrSettings><FlrInplaceOnly>true</FlrInplaceOnly><FlrExtentionRestrictions>exe,dll</FlrExtentionRestrictions></FlrSettings>",
            "<SqlSettings><DenyInPlaceRestore>false</DenyInPlaceRestore></SqlSettings>",
            "</EnterpriseAccountCreateSpec>"
        );
        assert_eq!(xml, expected);
        // What is written reads back.
        let root = parse_document(&xml).unwrap();
        assert_eq!(root.child_text("AccountName"), Some("TECH\\new & joiner"));

        let minimal = AccountCreateSpec {
            allow_restore_all_vms: true,
            scopes: vec![],
            flr: None,
            sql: None,
            ..spec
        };
        let xml = XmlCodec.account_create_spec(&minimal);
        assert!(
            !xml.contains("HierarchyScopeObjects")
                && !xml.contains("FlrSettings")
                && !xml.contains("SqlSettings")
        );
        assert!(xml.contains(
            "</Roles><AllowRestoreAllVms>true</AllowRestoreAllVms></EnterpriseAccountCreateSpec>"
        ));
    }

    #[test]
    fn small_specs() {
        assert_eq!(
            XmlCodec.role_assignment_spec("urn:veeam:EnterpriseRole:x"),
            concat!(
                r#"<?xml version="1.0" encoding="utf-8"?>"#,
                r#"<EnterpriseAccountInRoleCreateSpec xmlns="http://www.veeam.com/ent/v1.0">"#,
                "<EnterpriseRoleUid>urn:veeam:EnterpriseRole:x</EnterpriseRoleUid>",
                "</EnterpriseAccountInRoleCreateSpec>"
            )
        );
        let items = [
            ScopeItem {
                obj_ref: "urn:VMware:Vm:r.vm-1".into(),
                object_name: "vm1".into(),
            },
            ScopeItem {
                obj_ref: "urn:VMware:Vm:r.vm-2".into(),
                object_name: "vm2".into(),
            },
        ];
        assert_eq!(
            XmlCodec.scope_create_spec(&items),
            concat!(
                r#"<?xml version="1.0" encoding="utf-8"?>"#,
                r#"<HierarchyScopeCreateSpec xmlns="http://www.veeam.com/ent/v1.0">"#,
                "<HierarchyScopeItem><HierarchyObjRef>urn:VMware:Vm:r.vm-1</HierarchyObjRef><ObjectName>vm1</ObjectName></HierarchyScopeItem>",
                "<HierarchyScopeItem><HierarchyObjRef>urn:VMware:Vm:r.vm-2</HierarchyObjRef><ObjectName>vm2</ObjectName></HierarchyScopeItem>",
                "</HierarchyScopeCreateSpec>"
            )
        );
        assert_eq!(
            XmlCodec.rebuild_spec(RebuildMode::Unprocessed),
            concat!(
                r#"<?xml version="1.0" encoding="utf-8"?>"#,
                r#"<RebuildScopeJobSpec xmlns="http://www.veeam.com/ent/v1.0"><RebuildUnprocessed/></RebuildScopeJobSpec>"#
            )
        );
        assert!(
            XmlCodec
                .rebuild_spec(RebuildMode::All)
                .contains("<RebuildAll/>")
        );
        assert!(
            XmlCodec
                .rebuild_spec(RebuildMode::ForCurrentUser)
                .contains("<RebuildForCurrentUser/>")
        );
    }
}
