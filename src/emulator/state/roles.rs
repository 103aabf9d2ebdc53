//! EM's seven security roles, the same on every install: their GUIDs and names, and the
//! lookups by either, or by the role UID a request body names.

use axum::http::StatusCode;
use uuid::Uuid;

use crate::emulator::body::role_uid;
use crate::emulator::wire::ApiError;

/// One of EM's seven security roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RoleDef {
    /// The role's GUID, the same on every install the docs show.
    pub id: Uuid,
    /// The role's name.
    pub name: &'static str,
}

/// EM's roles, in the order a v13 server lists them.
pub(crate) const ROLES: [RoleDef; 7] = [
    RoleDef {
        id: Uuid::from_u128(0xd19a3d33_cb77_4ffe_94e6_001432483a4e),
        name: "Portal User",
    },
    RoleDef {
        id: Uuid::from_u128(0xf78a92b8_9f06_4f1e_b522_4f0927cabd0f),
        name: "SQL Restore Operator",
    },
    RoleDef {
        id: Uuid::from_u128(0xe9d90e66_b6d4_49dc_8986_73cf33489623),
        name: "Oracle Restore Operator",
    },
    RoleDef {
        id: Uuid::from_u128(0xf84a8b62_49b8_4d0c_b25b_92321b52bab6),
        name: "File Restore Operator",
    },
    RoleDef {
        id: Uuid::from_u128(0xf83e4c81_0815_452f_9377_9d573dd9d481),
        name: "Exchange Restore Operator",
    },
    RoleDef {
        id: Uuid::from_u128(0x5f37a46b_9ce2_40f4_8a62_b45b079257fc),
        name: "Portal Administrator",
    },
    RoleDef {
        id: Uuid::from_u128(0xc11c0c38_ba8b_49c7_bf70_fc2058fff1e2),
        name: "VM Restore Operator",
    },
];

/// The role that may use `/security`.
pub(crate) const PORTAL_ADMINISTRATOR: Uuid = ROLES[5].id;

/// The role with this GUID.
pub(crate) fn role_by_id(id: Uuid) -> Option<RoleDef> {
    ROLES.iter().copied().find(|r| r.id == id)
}

/// The role with this name, case-insensitively.
pub(crate) fn role_by_name(name: &str) -> Option<RoleDef> {
    ROLES
        .iter()
        .copied()
        .find(|r| r.name.eq_ignore_ascii_case(name.trim()))
}

/// A role UID naming one of the seven roles; anything else is a 400, since it is the body
/// that is wrong, not the URL.
pub(super) fn known_role(uid: &str) -> Result<RoleDef, ApiError> {
    let id = role_uid(uid)?;
    role_by_id(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Role {uid} does not exist"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_table_is_complete() {
        assert_eq!(role_by_name("vm restore operator").unwrap().id, ROLES[6].id);
        assert_eq!(
            role_by_id(PORTAL_ADMINISTRATOR).unwrap().name,
            "Portal Administrator"
        );
        let mut ids: Vec<Uuid> = ROLES.iter().map(|r| r.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), 7);
    }
}
