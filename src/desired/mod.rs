//! `plan --desired`: a desired-access sheet (an edited `snapshot --format csv`) read into
//! [`DesiredAccount`]s (`sheet.rs`), and the change plan that turns the live state into it
//! (`diff.rs`). Pure: no network, no SQLite; the live state comes in as the snapshot read it,
//! and the plan goes out as ordinary plan CSV, which `check`, `apply` and `undo` read like any
//! other.
//!
//! The sheet is read through [`SheetSource`], rows of text cells with the line each starts
//! on, so that a spreadsheet reader can be plugged in beside the CSV one.

mod diff;
mod sheet;

pub use diff::{Changes, DiffOptions, PlannedRow, diff, write_plan};
pub use sheet::{CsvSheet, SheetRow, SheetSource, read_desired};

use crate::em::AccountType;

/// One account as the sheet wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredAccount {
    /// The sheet's line (the header is line 1).
    pub line: u64,
    /// The account's name, with the CSV export's leading `'` taken off.
    pub name: String,
    /// Its type; needed only to add it.
    pub account_type: Option<AccountType>,
    /// "Restore scope: All virtual machines".
    pub restore_all_vms: bool,
    /// Role names, in the sheet's order.
    pub roles: Vec<String>,
    /// Restore scopes, in the sheet's order.
    pub scopes: Vec<DesiredScope>,
}

/// A restore scope as the sheet names it: `Name`, or `Name (urn:...)` when the object ref is
/// known, as the snapshot writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredScope {
    /// The object's display name.
    pub name: String,
    /// The hierarchy object ref, when the sheet gives one.
    pub obj_ref: Option<String>,
}
