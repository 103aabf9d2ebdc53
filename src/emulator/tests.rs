//! In-process HTTP tests of the emulator: a real server on 127.0.0.1 and a reqwest client,
//! covering logon, sessions, 401/403, both wire formats, XML order checking, and the faults
//! that act on connections.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use super::*;

const PORTAL_USER: &str = "d19a3d33-cb77-4ffe-94e6-001432483a4e";
const VM_RESTORE: &str = "c11c0c38-ba8b-49c7-bf70-fc2058fff1e2";
const FILE_RESTORE: &str = "f84a8b62-49b8-4d0c-b25b-92321b52bab6";

/// Reads a JSON answer (the client is built without reqwest's `json` feature).
trait JsonBody {
    async fn json_body<T: serde::de::DeserializeOwned>(self) -> T;
}

impl JsonBody for Response {
    async fn json_body<T: serde::de::DeserializeOwned>(self) -> T {
        let text = self.text().await.unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

/// A client trusting `ca_pem` (when given), with the ring provider as the build requires.
fn http_client(ca_pem: Option<&str>) -> Client {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A started emulator and a client for it.
struct Fixture {
    emu: RunningEmulator,
    client: Client,
    base: String,
}

impl Fixture {
    async fn new(config: EmulatorConfig) -> Fixture {
        let emu = start(config).await.unwrap();
        let client = http_client(emu.cert_pem().as_deref());
        let base = emu.base_url();
        Fixture { emu, client, base }
    }

    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    async fn logon_as(&self, user: &str, password: &str) -> Response {
        self.req(Method::POST, "/sessionMngr/?v=latest")
            .basic_auth(user, Some(password))
            .send()
            .await
            .unwrap()
    }

    /// Logs on as the admin; returns the token.
    async fn token(&self) -> String {
        let d = EmulatorConfig::default();
        let resp = self.logon_as(&d.admin_user, &d.admin_password).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.headers()["X-RestSvcSessionId"]
            .to_str()
            .unwrap()
            .to_owned()
    }

    fn authed(&self, token: &str, method: Method, path: &str) -> RequestBuilder {
        self.req(method, path).header("X-RestSvcSessionId", token)
    }

    fn account_named(&self, name: &str) -> AccountSnapshot {
        self.emu
            .state()
            .accounts
            .into_iter()
            .find(|a| a.name == name)
            .unwrap()
    }
}

#[tokio::test]
async fn logon_answers_with_token_cookie_location_and_session() {
    let f = Fixture::new(EmulatorConfig::default()).await;
    let resp = f.logon_as("admin", "emulator").await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let h = resp.headers().clone();
    let token = h["X-RestSvcSessionId"].to_str().unwrap().to_owned();
    assert_eq!(
        h["set-cookie"].to_str().unwrap(),
        format!("X-RestSvcSessionId={token}; Path=/api")
    );
    let location = h["location"].to_str().unwrap().to_owned();
    let body = resp.text().await.unwrap();
    assert!(
        body.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>"),
        "{body}"
    );
    assert!(body.contains("xmlns=\"http://www.veeam.com/ent/v1.0\""));
    assert!(body.contains("<UserName>admin</UserName>"));
    let sid = location.rsplit('/').next().unwrap();
    assert!(body.contains(&format!("<SessionId>{sid}</SessionId>")));
    assert_ne!(token, sid);
    assert!(location.starts_with(&format!("{}/logonSessions/", f.base)));

    // JSON: same session data, no root wrapper, Links as an array.
    let resp = f
        .req(Method::POST, "/sessionMngr/")
        .basic_auth("admin", Some("emulator"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let json: serde_json::Value = resp.json_body().await;
    assert_eq!(json["UserName"], "admin");
    assert!(
        json["Links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["Rel"] == "Delete")
    );

    // Both sessions are listed; logging out removes one and kills its token.
    let list = f
        .authed(&token, Method::GET, "/logonsessions")
        .send()
        .await
        .unwrap();
    let text = list.text().await.unwrap();
    assert_eq!(text.matches("<LogonSession ").count(), 2, "{text}");
    let resp = f
        .authed(&token, Method::DELETE, &format!("/logonSessions/{sid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = f
        .authed(&token, Method::GET, "/logonSessions")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(f.emu.sessions_tokens().len(), 2);
    f.emu.shutdown().await;
}

#[tokio::test]
async fn bad_logons_and_missing_tokens_get_401_with_an_error_body() {
    let f = Fixture::new(EmulatorConfig::default()).await;
    let resp = f.logon_as("admin", "wrong").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], "Basic Realm=RestSvc");
    assert!(resp.text().await.unwrap().contains("<Error "));
    let resp = f
        .req(Method::POST, "/sessionMngr/?v=latest")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = f
        .req(Method::POST, "/sessionMngr/?v=v1_4")
        .basic_auth("admin", Some("emulator"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    let resp = f
        .req(Method::GET, "/security/accounts")
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let json: serde_json::Value = resp.json_body().await;
    assert_eq!(json["StatusCode"], 401);
    assert!(json["FirstChanceExceptionMessage"].is_null());
    let resp = f
        .authed("not-a-token", Method::GET, "/security")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // The entry point needs no session.
    let resp = f.req(Method::GET, "/").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("<SupportedVersion Name=\"v1_7\">")
    );
}

#[tokio::test]
async fn a_portal_user_may_log_on_but_not_touch_security() {
    let f = Fixture::new(EmulatorConfig::default()).await;
    let resp = f.logon_as("viewer", "viewer").await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let token = resp.headers()["X-RestSvcSessionId"]
        .to_str()
        .unwrap()
        .to_owned();
    for path in [
        "/security",
        "/security/accounts",
        "/security/roles",
        "/security/nothing/here",
    ] {
        let resp = f.authed(&token, Method::GET, path).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(
            resp.text()
                .await
                .unwrap()
                .contains("Message=\"Access denied\"")
        );
    }
    let resp = f
        .authed(&token, Method::GET, "/logonSessions")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn roles_are_assigned_in_xml_and_json_and_listed_in_both() {
    let f = Fixture::new(EmulatorConfig::default()).await;
    let token = f.token().await;
    let admins = f.account_named("BUILTIN\\Administrators");
    let path = format!("/security/accounts/{}/roles", admins.id);

    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<EnterpriseAccountInRoleCreateSpec xmlns=\"http://www.veeam.com/ent/v1.0\">\
         <EnterpriseRoleUid>urn:veeam:EnterpriseRole:{VM_RESTORE}</EnterpriseRoleUid></EnterpriseAccountInRoleCreateSpec>"
    );
    let resp = f
        .authed(&token, Method::POST, &path)
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(xml.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(resp.text().await.unwrap().is_empty());
    // Again: the role is held, so 400 with a message saying so.
    let resp = f
        .authed(&token, Method::POST, &path)
        .header("Content-Type", "application/xml")
        .body(xml)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.unwrap().contains("already assigned"));

    let resp = f
        .authed(&token, Method::POST, &path)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .body(format!(
            r#"{{"EnterpriseRoleUid":"urn:veeam:EnterpriseRole:{FILE_RESTORE}"}}"#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);

    let resp = f
        .authed(&token, Method::GET, &path)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    let json: serde_json::Value = resp.json_body().await;
    let items = json["EnterpriseAccountInRoles"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[2]["RoleName"], "File Restore Operator");
    let href = items[2]["Href"].as_str().unwrap();
    assert_eq!(href, format!("{}{path}/{FILE_RESTORE}", f.base));
    assert_eq!(
        items[2]["Links"][0],
        serde_json::json!({"Rel":"Delete","Href":href})
    );

    let xml = f
        .authed(&token, Method::GET, &path)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        xml.contains("<EnterpriseAccountInRoleList xmlns:xsd="),
        "{xml}"
    );
    assert!(xml.contains("<RoleName>VM Restore Operator</RoleName>"));

    let journal = f.emu.journal();
    assert_eq!(journal.len(), 2);
    assert_eq!(journal[0].account, Some(admins.id));
    assert!(
        matches!(journal[1].effect, Effect::RoleAssigned { role_id } if role_id.to_string() == FILE_RESTORE)
    );
}

#[tokio::test]
async fn the_last_role_cannot_be_removed() {
    let f = Fixture::new(EmulatorConfig::default()).await;
    let token = f.token().await;
    let admins = f.account_named("BUILTIN\\Administrators");
    let role = admins.roles[0].id;
    let resp = f
        .authed(
            &token,
            Method::DELETE,
            &format!("/security/accounts/{}/roles/{role}", admins.id),
        )
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let json: serde_json::Value = resp.json_body().await;
    assert!(
        json["Message"]
            .as_str()
            .unwrap()
            .contains("cannot remove the last role")
    );
    assert_eq!(json["StatusCode"], 400);
    let resp = f
        .authed(
            &token,
            Method::DELETE,
            &format!("/security/accounts/{}/roles/{PORTAL_USER}", admins.id),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(f.emu.journal().is_empty());
}

#[tokio::test]
async fn accounts_are_created_from_ordered_xml_only() {
    let f = Fixture::new(EmulatorConfig::default()).await;
    let token = f.token().await;
    let spec = |first: &str, second: &str| {
        format!(
            "<EnterpriseAccountCreateSpec xmlns=\"http://www.veeam.com/ent/v1.0\">{first}{second}\
             <Roles><EnterpriseRole><EnterpriseRoleUid>urn:veeam:EnterpriseRole:{PORTAL_USER}</EnterpriseRoleUid></EnterpriseRole></Roles>\
             <AllowRestoreAllVms>false</AllowRestoreAllVms>\
             <HierarchyScopeObjects><HierarchyScopeItem><HierarchyObjRef>urn:VMware:ResourcePool:4c2a0e1f-7d3b-4b6a-9e58-2f1c0d9a7b31.resgroup-9</HierarchyObjRef><ObjectName>Lab-RP</ObjectName></HierarchyScopeItem></HierarchyScopeObjects>\
             </EnterpriseAccountCreateSpec>"
        )
    };
    let kind = "<AccountType>User</AccountType>";
    let name = "<AccountName>TECH\\new.joiner</AccountName>";
    let resp = f
        .authed(&token, Method::POST, "/security/accounts")
        .header("Content-Type", "application/xml")
        .body(spec(name, kind))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.unwrap().contains("out of order"));
    assert!(f.emu.journal().is_empty());

    let resp = f
        .authed(&token, Method::POST, "/security/accounts")
        .header("Content-Type", "application/xml")
        .body(spec(kind, name))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let created = f.account_named("TECH\\new.joiner");
    assert_eq!(
        location,
        format!("{}/security/accounts/{}", f.base, created.id)
    );
    assert!(!created.allow_restore_all_vms);
    assert_eq!(created.scopes[0].state, "Unprocessed");

    // The entity form, then a rebuild, then the scope is processed.
    let entity = f
        .authed(
            &token,
            Method::GET,
            &format!("/security/accounts/{}?format=Entity", created.id),
        )
        .send()
        .await
        .unwrap();
    let entity = entity.text().await.unwrap();
    assert!(
        entity.contains("<AllowRestoreAllVms>false</AllowRestoreAllVms>"),
        "{entity}"
    );
    assert!(entity.contains("Rel=\"ToggleRestoreScopesEnabled\""));
    let resp = f
        .authed(
            &token,
            Method::POST,
            "/security/accounts?action=rebuildScope",
        )
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .body(r#"{"RebuildUnprocessed":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let task: serde_json::Value = resp.json_body().await;
    assert_eq!(task["Operation"], "StartRebuildScope");
    assert_eq!(task["Result"]["Success"], true);
    assert_eq!(
        f.account_named("TECH\\new.joiner").scopes[0].state,
        "Processed"
    );

    // The same name again, in another case: 400.
    let resp = f
        .authed(&token, Method::POST, "/security/accounts")
        .header("Content-Type", "application/xml")
        .body(spec(kind, "<AccountName>tech\\NEW.joiner</AccountName>"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn scopes_toggle_and_delete_through_case_insensitive_urls() {
    let f = Fixture::new(EmulatorConfig {
        accounts: 3,
        scope_post_status: 202,
        ..EmulatorConfig::default()
    })
    .await;
    let token = f.token().await;
    let acc = f.account_named("TECH\\user00001");
    let scopes = format!("/Security/Accounts/{}/Scopes/", acc.id);
    let resp = f
        .authed(&token, Method::POST, &scopes)
        .header("Content-Type", "application/json")
        .body(r#"{"HierarchyScopeItems":[{"HierarchyObjRef":"urn:VMware:Folder:4c2a0e1f-7d3b-4b6a-9e58-2f1c0d9a7b31.group-v7","ObjectName":"Finance"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = f
        .authed(&token, Method::POST, &scopes)
        .header("Content-Type", "application/json")
        .body(r#"{"HierarchyScopeItems":[{"HierarchyObjRef":"nope","ObjectName":"x"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    let list: serde_json::Value = f
        .authed(&token, Method::GET, &scopes)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json_body()
        .await;
    let item = &list["EnterpriseAccountHierarchyScopes"][0];
    assert_eq!(item["Platform"], "VMware");
    assert_eq!(item["HierarchyObjectType"], "Folder");
    assert_eq!(
        item["HierarchyRootName"],
        "4c2a0e1f-7d3b-4b6a-9e58-2f1c0d9a7b31"
    );
    assert_eq!(item["State"], "Unprocessed");
    let href = item["Href"].as_str().unwrap().to_owned();
    let resp = f
        .client
        .delete(&href)
        .header("X-RestSvcSessionId", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = f
        .client
        .get(&href)
        .header("X-RestSvcSessionId", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    let before = f.account_named("TECH\\user00001").allow_restore_all_vms;
    let url = format!("/security/accounts/{}", acc.id);
    let resp = f.authed(&token, Method::POST, &url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        f.account_named("TECH\\user00001").allow_restore_all_vms,
        !before
    );
    let resp = f.authed(&token, Method::PUT, &url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(resp.text().await.unwrap().contains("<Error "));
    let resp = f.authed(&token, Method::DELETE, &url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = f.authed(&token, Method::DELETE, &url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let kinds: Vec<&str> = f
        .emu
        .journal()
        .iter()
        .map(|e| match e.effect {
            Effect::ScopeAdded { .. } => "add",
            Effect::ScopeRemoved { .. } => "remove",
            Effect::RestoreAllVmsToggled { .. } => "toggle",
            Effect::AccountDeleted { .. } => "delete",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["add", "remove", "toggle", "delete"]);
    assert!(
        f.emu.journal()[0]
            .path
            .starts_with("/api/Security/Accounts/")
    );
}

#[tokio::test]
async fn the_cookie_wins_and_hrefs_echo_the_host() {
    let f = Fixture::new(EmulatorConfig::default()).await;
    let token = f.token().await;
    let resp = f
        .req(Method::GET, "/security")
        .header("X-RestSvcSessionId", "stale")
        .header("Cookie", format!("X-RestSvcSessionId={token}"))
        .header("Host", "em.tech.local:9398")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains(
            "Href=\"http://em.tech.local:9398/api/security/accounts?action=rebuildScope\""
        ),
        "{body}"
    );
}

#[tokio::test]
async fn drop_before_acts_not_and_drop_after_acts_but_loses_the_answer() {
    let f = Fixture::new(EmulatorConfig::default()).await;
    let token = f.token().await;
    let admins = f.account_named("BUILTIN\\Administrators");
    let url = format!("/security/accounts/{}", admins.id);

    f.emu.set_faults(Faults {
        drop_before: 1.0,
        ..Faults::default()
    });
    let err = f
        .authed(&token, Method::POST, &url)
        .send()
        .await
        .unwrap_err();
    assert!(err.status().is_none(), "{err}");
    assert!(f.emu.journal().is_empty());
    assert!(
        f.account_named("BUILTIN\\Administrators")
            .allow_restore_all_vms
    );

    f.emu.set_faults(Faults {
        drop_after: 1.0,
        ..Faults::default()
    });
    let err = f
        .authed(&token, Method::POST, &url)
        .send()
        .await
        .unwrap_err();
    assert!(err.status().is_none(), "{err}");
    assert_eq!(f.emu.journal().len(), 1);
    assert!(
        !f.account_named("BUILTIN\\Administrators")
            .allow_restore_all_vms
    );

    f.emu.set_faults(Faults {
        error_503: 1.0,
        retry_after_secs: 4,
        ..Faults::default()
    });
    let resp = f.authed(&token, Method::POST, &url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "4");
    assert_eq!(f.emu.journal().len(), 1);

    // Inspection is never faulted nor recorded.
    let state: StateSnapshot = f
        .client
        .get(format!("http://{}/_emulator/state", f.emu.addr()))
        .send()
        .await
        .unwrap()
        .json_body()
        .await;
    assert_eq!(state, f.emu.state());
    let records = f.emu.requests();
    let statuses: Vec<(Option<u16>, bool)> =
        records.iter().map(|r| (r.status, r.dropped)).collect();
    assert_eq!(
        statuses,
        [
            (Some(201), false),
            (None, true),
            (None, true),
            (Some(503), false)
        ]
    );
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    let remote: Vec<RequestRecord> = f
        .client
        .get(format!("http://{}/_emulator/requests", f.emu.addr()))
        .send()
        .await
        .unwrap()
        .json_body()
        .await;
    assert_eq!(remote, records);
}

#[tokio::test]
async fn sessions_expire_after_n_requests_and_when_idle() {
    let f = Fixture::new(EmulatorConfig {
        session_idle_timeout: Duration::from_millis(300),
        faults: Faults {
            expire_after: Some(2),
            ..Faults::default()
        },
        ..EmulatorConfig::default()
    })
    .await;
    let token = f.token().await;
    for _ in 0..2 {
        let resp = f
            .authed(&token, Method::GET, "/security/roles")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let resp = f
        .authed(&token, Method::GET, "/security/roles")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let token = f.token().await;
    tokio::time::sleep(Duration::from_millis(450)).await;
    let resp = f
        .authed(&token, Method::GET, "/security/roles")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn https_serves_with_the_generated_certificate() {
    let f = Fixture::new(EmulatorConfig {
        tls: true,
        ..EmulatorConfig::default()
    })
    .await;
    assert!(f.base.starts_with("https://127.0.0.1:"));
    let token = f.token().await;
    let body = f
        .authed(&token, Method::GET, "/security/roles")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body.matches("<Ref ").count(), 7);
    assert!(body.contains(&format!("Href=\"{}/security/roles/{PORTAL_USER}\"", f.base)));
    // A client that does not trust the certificate is refused.
    let untrusting = http_client(None);
    assert!(untrusting.get(format!("{}/", f.base)).send().await.is_err());
    f.emu.shutdown().await;
}

#[tokio::test]
async fn serve_stops_when_told() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, EmulatorConfig::default(), async {
        let _ = rx.await;
    }));
    let client = http_client(None);
    let resp = client
        .get(format!("http://{addr}/api/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[test]
fn the_banner_names_a_working_logon() {
    let config = EmulatorConfig {
        tls: true,
        accounts: 40,
        ..EmulatorConfig::default()
    };
    let text = banner("https://127.0.0.1:9398/api", &config);
    assert!(text.contains("https://127.0.0.1:9398/api/"));
    assert!(text.contains(
        "curl -k -si -X POST -u 'admin:emulator' 'https://127.0.0.1:9398/api/sessionMngr/?v=latest'"
    ));
    assert!(text.contains("X-RestSvcSessionId: "));
    assert!(text.contains("/security/accounts"));
    assert!(text.contains("--cert-out") && text.contains("--tls"));
    assert!(text.contains("41"));
    assert!(!text.contains("faults"));
    let plain = banner("http://127.0.0.1:9398/api", &EmulatorConfig::default());
    assert!(!plain.contains("-k ") && !plain.contains("--cert-out"));
    let faulty = EmulatorConfig {
        faults: Faults {
            error_500: 0.1,
            retry_after_secs: 1,
            seed: Some(7),
            ..Faults::default()
        },
        ..EmulatorConfig::default()
    };
    let text = banner("http://127.0.0.1:9398/api", &faulty);
    assert!(
        text.contains("Injected faults: 500 on 10%, dice seed 7."),
        "{text}"
    );
}
