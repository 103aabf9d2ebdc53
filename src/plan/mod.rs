//! Change plans: CSV bytes → validated change rows, with every problem reported as
//! `FILE:LINE: message`. Pure: no network, no SQLite, no I/O beyond reading the file it is
//! given.
//!
//! Line numbers are the physical lines an editor shows: the header is line 1 and blank lines
//! count.
//!
//! Validation runs in one streaming pass over the file (`scan`): `records` reads it line by
//! line (hashing every byte) and gathers the lines of each record, `header` finds the header
//! and decides which column is which, `cells` gives each cell its meaning, and `checks`
//! compares each valid row with the rows before it. Every problem is collected (`error`); a
//! plan is accepted only when there is none. The rows themselves are plain data (`row`).
//!
//! Two ways in share that pass. [`load`] and [`parse`] keep every row in a [`Plan`]. [`check`]
//! keeps none: it holds only the tables of the checks across rows, returns a [`PlanFile`]
//! summary, and [`PlanFile::rows`] reads the rows again one at a time, refusing a file that
//! changed since it was checked. A plan of a million rows is checked in well under 100 MiB.

mod cells;
mod checks;
mod error;
mod header;
mod recorded;
mod records;
mod row;
mod scan;
mod sheet;
#[cfg(test)]
mod testing;

/// The columns of a plan that embatch writes (`undo --emit-plan`, `plan --desired`), in order:
/// the ones every plan may have, without annotations.
pub const WRITTEN_COLUMNS: [&str; 6] = [
    "account",
    "action",
    "target",
    "object_name",
    "ticket",
    "comment",
];

pub use error::{PlanError, PlanErrors};
pub use recorded::{RecordedColumns, recorded_row};
pub use row::{AccountRef, Action, Actions, PlanRow, RoleRef, ScopeRef};
pub(crate) use scan::check_reader;
pub use scan::{
    MAX_COLUMNS, MAX_PROBLEMS, MAX_RECORD_BYTES, MAX_RECORD_LINES, Plan, PlanFile, PlanRows, check,
    check_sheet, check_sheet_to_run, load, load_sheet, parse,
};
pub use sheet::{MAX_HELD_PART_BYTES, MAX_PART_BYTES, MAX_WORKBOOK_BYTES};
