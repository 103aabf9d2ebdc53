//! Every client operation against the emulator, in XML and JSON, over HTTP and over TLS.

use std::time::Duration;

use embatch::em::{
    AccountCreateSpec, AccountType, EmError, RebuildMode, RequestTag, Retry, ScopeItem, Wire,
};
use embatch::emulator::{EmulatorConfig, Faults};
use uuid::Uuid;

use crate::support::{self, WIRES};

const PORTAL_USER: &str = "d19a3d33-cb77-4ffe-94e6-001432483a4e";
const VM_RESTORE: &str = "c11c0c38-ba8b-49c7-bf70-fc2058fff1e2";
const FILE_RESTORE: &str = "f84a8b62-49b8-4d0c-b25b-92321b52bab6";

fn role_uid(guid: &str) -> String {
    format!("urn:veeam:EnterpriseRole:{guid}")
}

fn guid(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap()
}

/// Runs every operation once; used over plain HTTP and TLS, in both wire formats.
async fn every_operation(tls: bool, wire: Wire) {
    let emu = support::emulator(EmulatorConfig {
        accounts: 5,
        tls,
        ..EmulatorConfig::default()
    })
    .await;
    let client = support::client(&emu, wire);
    let call = client.call(RequestTag::default());

    let entry = call.entry_point().await.unwrap();
    assert!(entry.versions.iter().any(|v| v == "v1_7"), "{entry:?}");

    let session = client.logon().await.unwrap();
    assert!(!session.session_id.is_empty());
    assert_eq!(session.user_name, EmulatorConfig::default().admin_user);
    let sessions = call.logon_sessions().await.unwrap();
    assert!(sessions.iter().any(|s| s.session_id == session.session_id));

    call.security().await.unwrap();

    let roles = call.roles().await.unwrap();
    assert_eq!(roles.len(), 7);
    let role = call.role(guid(VM_RESTORE)).await.unwrap();
    assert_eq!(role.name, "VM Restore Operator");

    let accounts = call.accounts().await.unwrap();
    let user = accounts
        .iter()
        .find(|a| a.name.starts_with("TECH\\user"))
        .expect("generated accounts are listed");
    let id = Uuid::parse_str(user.uid.rsplit(':').next().unwrap()).unwrap();
    let reference = call.account_ref(id).await.unwrap();
    assert_eq!(reference.name, user.name);
    let account = call.account(id).await.unwrap();
    assert_eq!(account.id, id);

    // Roles: assign two, read them, remove one.
    let held = call.account_roles(id).await.unwrap();
    for g in [VM_RESTORE, FILE_RESTORE] {
        if !held.iter().any(|r| r.role_id == guid(g)) {
            call.assign_role(id, &role_uid(g)).await.unwrap();
        }
    }
    let held = call.account_roles(id).await.unwrap();
    assert!(
        held.iter()
            .any(|r| r.role_id == guid(VM_RESTORE) && r.role_name == "VM Restore Operator")
    );
    let one = call.account_role(id, guid(FILE_RESTORE)).await.unwrap();
    assert_eq!(one.role_name, "File Restore Operator");
    call.remove_role(id, guid(FILE_RESTORE)).await.unwrap();
    let held = call.account_roles(id).await.unwrap();
    assert!(!held.iter().any(|r| r.role_id == guid(FILE_RESTORE)));

    // Scopes: add one, find it, read it, remove it.
    let before = call.account_scopes(id).await.unwrap();
    let item = ScopeItem {
        obj_ref: "urn:VMware:ResourcePool:6b5a4c8e-1111-4a4a-9c9c-0123456789ab.resgroup-4242"
            .into(),
        object_name: "Integration-RP".into(),
    };
    call.add_scopes(id, std::slice::from_ref(&item))
        .await
        .unwrap();
    let after = call.account_scopes(id).await.unwrap();
    assert_eq!(after.len(), before.len() + 1);
    let scope = after.iter().find(|s| s.name == "Integration-RP").unwrap();
    assert_eq!(scope.platform, "VMware");
    assert_eq!(scope.object_type, "ResourcePool");
    let same = call.account_scope(id, scope.id).await.unwrap();
    assert_eq!(same.id, scope.id);
    call.remove_scope(id, scope.id).await.unwrap();
    assert_eq!(call.account_scopes(id).await.unwrap().len(), before.len());

    // The toggle flips; two flips restore the original value.
    let original = call.account(id).await.unwrap().allow_restore_all_vms;
    call.toggle_restore_all_vms(id).await.unwrap();
    assert_eq!(
        call.account(id).await.unwrap().allow_restore_all_vms,
        !original
    );
    call.toggle_restore_all_vms(id).await.unwrap();
    assert_eq!(
        call.account(id).await.unwrap().allow_restore_all_vms,
        original
    );

    // Accounts: create, find, delete.
    let spec = AccountCreateSpec {
        account_type: AccountType::User,
        account_name: "TECH\\new.joiner".into(),
        role_uids: vec![role_uid(PORTAL_USER)],
        allow_restore_all_vms: false,
        scopes: vec![item.clone()],
        flr: None,
        sql: None,
    };
    let created = call.create_account(&spec).await.unwrap();
    let new_id = created.expect("the emulator answers with a Location");
    let fresh = call.account(new_id).await.unwrap();
    assert_eq!(fresh.name, "TECH\\new.joiner");
    assert!(!fresh.allow_restore_all_vms);
    call.rebuild_scopes(RebuildMode::Unprocessed).await.unwrap();
    assert!(
        call.account_scopes(new_id)
            .await
            .unwrap()
            .iter()
            .all(|s| s.state == "Processed")
    );
    call.delete_account(new_id).await.unwrap();
    let gone = call.account(new_id).await.unwrap_err();
    assert_eq!(gone.status(), Some(404));

    client.logout().await.unwrap();
    emu.shutdown().await;
}

#[tokio::test]
async fn every_operation_over_http() {
    for wire in WIRES {
        every_operation(false, wire).await;
    }
}

#[tokio::test]
async fn every_operation_over_tls_with_ca_cert() {
    for wire in WIRES {
        every_operation(true, wire).await;
    }
}

#[tokio::test]
async fn tls_without_the_ca_is_refused_and_never_retried() {
    let emu = support::emulator(EmulatorConfig {
        tls: true,
        ..EmulatorConfig::default()
    })
    .await;
    let mut config = support::client_config(&emu, Wire::Xml);
    config.tls.ca_cert = None;
    let client =
        embatch::em::Client::new(config, std::sync::Arc::new(embatch::em::NoopObserver)).unwrap();
    let err = client.logon().await.unwrap_err();
    assert_eq!(err.retry(), Retry::Never, "{err}");
}

#[tokio::test]
async fn relogon_after_idle_expiry() {
    for wire in WIRES {
        let emu = support::emulator(EmulatorConfig {
            session_idle_timeout: Duration::from_millis(300),
            ..EmulatorConfig::default()
        })
        .await;
        let client = support::client(&emu, wire);
        let call = client.call(RequestTag::default());
        let first = client.logon().await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The session is dead; the client logs on again once and the read succeeds.
        call.roles().await.unwrap();
        let sessions = call.logon_sessions().await.unwrap();
        assert!(!sessions.iter().any(|s| s.session_id == first.session_id));
    }
}

#[tokio::test]
async fn relogon_after_expiry_fault_is_shared_by_concurrent_callers() {
    let emu = support::emulator(EmulatorConfig {
        faults: Faults {
            expire_after: Some(10),
            ..Faults::default()
        },
        ..EmulatorConfig::default()
    })
    .await;
    let client = std::sync::Arc::new(support::client(&emu, Wire::Json));
    client.logon().await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let c = client.clone();
        tasks.spawn(async move {
            for _ in 0..5 {
                c.call(RequestTag::default()).roles().await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let logons = emu
        .requests()
        .iter()
        .filter(|r| r.path.to_lowercase().contains("sessionmngr"))
        .count();
    // 40 reads with sessions dying every 10 requests need about 5 logons, not one per caller.
    assert!((2..=10).contains(&logons), "{logons} logons");
}

#[tokio::test]
async fn errors_are_mapped_with_retry_advice() {
    for wire in WIRES {
        let emu = support::emulator(EmulatorConfig::default()).await;
        let client = support::client(&emu, wire);
        let call = client.call(RequestTag::default());

        // 404: unknown account.
        let e = call.account(Uuid::new_v4()).await.unwrap_err();
        assert_eq!((e.status(), e.retry()), (Some(404), Retry::Never), "{e}");

        // 400: unknown role UID.
        let admins = call.accounts().await.unwrap();
        let admin_group = admins
            .iter()
            .find(|a| a.name == "BUILTIN\\Administrators")
            .unwrap();
        let id = Uuid::parse_str(admin_group.uid.rsplit(':').next().unwrap()).unwrap();
        let e = call
            .assign_role(id, &role_uid(&Uuid::new_v4().to_string()))
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.retry()), (Some(400), Retry::Never), "{e}");
        assert!(matches!(e, EmError::Api { .. }));

        // 400: the last role cannot be removed.
        let roles = call.account_roles(id).await.unwrap();
        assert_eq!(roles.len(), 1);
        let e = call.remove_role(id, roles[0].role_id).await.unwrap_err();
        assert_eq!(e.status(), Some(400), "{e}");
        assert!(!e.to_string().is_empty());

        // 401: wrong password, and it does not loop.
        let mut bad = support::client_config(&emu, wire);
        bad.password = embatch::em::Secret::new("wrong".into());
        let bad =
            embatch::em::Client::new(bad, std::sync::Arc::new(embatch::em::NoopObserver)).unwrap();
        let e = bad.logon().await.unwrap_err();
        assert_eq!((e.status(), e.retry()), (Some(401), Retry::Never), "{e}");

        // 403: a Portal User may log on but not touch /security.
        let mut viewer = support::client_config(&emu, wire);
        viewer.user = "viewer".into();
        viewer.password = embatch::em::Secret::new("viewer".into());
        let viewer =
            embatch::em::Client::new(viewer, std::sync::Arc::new(embatch::em::NoopObserver))
                .unwrap();
        viewer.logon().await.unwrap();
        let e = viewer
            .call(RequestTag::default())
            .accounts()
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.retry()), (Some(403), Retry::Never), "{e}");
    }
}

#[tokio::test]
async fn throttling_and_server_errors_carry_retry_advice() {
    let emu = support::emulator(EmulatorConfig::default()).await;
    let client = support::client(&emu, Wire::Xml);
    client.logon().await.unwrap();
    let call = client.call(RequestTag::default());

    emu.set_faults(Faults {
        error_429: 1.0,
        retry_after_secs: 2,
        ..Faults::default()
    });
    let e = call.roles().await.unwrap_err();
    assert_eq!(e.status(), Some(429));
    assert_eq!(e.retry(), Retry::Safe);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));

    emu.set_faults(Faults {
        error_500: 1.0,
        ..Faults::default()
    });
    let e = call.roles().await.unwrap_err();
    assert_eq!((e.status(), e.retry()), (Some(500), Retry::CheckFirst));

    emu.set_faults(Faults {
        drop_after: 1.0,
        ..Faults::default()
    });
    let e = call.roles().await.unwrap_err();
    assert_eq!((e.status(), e.retry()), (None, Retry::CheckFirst), "{e}");
}

#[tokio::test]
async fn secrets_stay_out_of_debug_and_errors() {
    let emu = support::emulator(EmulatorConfig::default()).await;
    let config = support::client_config(&emu, Wire::Xml);
    let password = EmulatorConfig::default().admin_password;
    assert!(!format!("{config:?}").contains(&password));
    let client =
        embatch::em::Client::new(config, std::sync::Arc::new(embatch::em::NoopObserver)).unwrap();
    client.logon().await.unwrap();
    let debug = format!("{client:?}");
    assert!(!debug.contains(&password), "{debug}");
    // The session token is whatever the emulator handed out; it must not be in the Debug text.
    for s in emu.sessions_tokens() {
        assert!(!debug.contains(&s), "{debug}");
    }
}
