//! The verification of a log of schema 01, before it is migrated: its evidence chain walked
//! (`walk.rs`) and its tables compared with the chain (`tables.rs`), by the records of
//! `schema.rs`.

pub(super) mod schema;
pub(super) mod tables;
pub(super) mod walk;

#[cfg(test)]
mod tests;
