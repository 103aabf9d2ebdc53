//! What the plan's unit tests share: a few GUIDs and refs, and plans read into rows or
//! problems.

use uuid::Uuid;

use super::{Plan, parse};

/// Two account GUIDs, a role GUID and a hierarchy object ref for the tests' plans to name.
pub(super) const G1: &str = "0f8e6a57-1c2b-4d3e-9f40-5a6b7c8d9e01";
pub(super) const G2: &str = "6c1d0e2f-3a4b-4c5d-8e6f-7a8b9c0d1e2f";
pub(super) const ROLE: &str = "d19a3d33-cb77-4ffe-94e6-001432483a4e";
pub(super) const REF: &str =
    "urn:VMware:ResourcePool:11111111-2222-3333-4444-555555555555.resgroup-12";

/// The plan `text` makes, which must be accepted.
pub(super) fn ok(text: &str) -> Plan {
    parse("plan.csv", text.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

/// Each problem as `LINE: message`.
pub(super) fn problems(bytes: &[u8]) -> Vec<String> {
    match parse("plan.csv", bytes) {
        Ok(plan) => panic!("accepted: {:?}", plan.rows),
        Err(e) => {
            e.0.iter()
                .map(|p| format!("{}: {}", p.line, p.message))
                .collect()
        }
    }
}

/// [`problems`] of a plan given as text.
pub(super) fn problems_of(text: &str) -> Vec<String> {
    problems(text.as_bytes())
}

/// The GUID `s` spells.
pub(super) fn uuid(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap()
}
