//! The two identifier forms clients send in bodies: role UIDs
//! (`urn:veeam:EnterpriseRole:<guid>`) and hierarchy object refs
//! (`urn:<Platform>:<Type>:<root>.<ref>`).

use uuid::Uuid;

use crate::emulator::wire::ApiError;

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
    use super::super::fixtures::ROLE;
    use super::*;

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
