//! The UIDs EM names its own entities by, `urn:veeam:<Type>:<guid>`: built from an id for what
//! the client sends (a role to assign, an account without one in its answer), and read back
//! into the id for what EM answers. Hierarchy objects are named otherwise (`urn:<Platform>:...`)
//! and are passed through as they are.

use uuid::Uuid;

/// The UID of the role `id`, `urn:veeam:EnterpriseRole:<guid>`: how a role assignment and an
/// account's create request name the role.
pub fn role_uid(id: Uuid) -> String {
    format!("urn:veeam:EnterpriseRole:{id}")
}

/// The UID of the account `id`, `urn:veeam:EnterpriseAccount:<guid>`.
pub(crate) fn account_uid(id: Uuid) -> String {
    format!("urn:veeam:EnterpriseAccount:{id}")
}

/// The GUID at the end of a UID such as `urn:veeam:EnterpriseAccount:<guid>`.
pub(crate) fn id_from_uid(uid: &str) -> Option<Uuid> {
    uid.trim()
        .rsplit(':')
        .next()
        .and_then(|g| Uuid::parse_str(g).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_uid() {
        let id = Uuid::parse_str("d6701c3d-15f4-421d-b376-c0e2634bc1f4").unwrap();
        assert_eq!(
            id_from_uid("urn:veeam:EnterpriseAccount:d6701c3d-15f4-421d-b376-c0e2634bc1f4"),
            Some(id)
        );
        assert_eq!(id_from_uid("urn:veeam:EnterpriseAccount:not-a-guid"), None);
    }

    #[test]
    fn uids_name_the_entity_and_read_back_to_its_id() {
        let id = Uuid::parse_str("D6701C3D-15F4-421D-B376-C0E2634BC1F4").unwrap();
        assert_eq!(
            role_uid(id),
            "urn:veeam:EnterpriseRole:d6701c3d-15f4-421d-b376-c0e2634bc1f4"
        );
        assert_eq!(
            account_uid(id),
            "urn:veeam:EnterpriseAccount:d6701c3d-15f4-421d-b376-c0e2634bc1f4"
        );
        assert_eq!(id_from_uid(&role_uid(id)), Some(id));
        assert_eq!(id_from_uid(&account_uid(id)), Some(id));
    }
}
