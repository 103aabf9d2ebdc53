//! Reading a desired-access sheet: the columns of `snapshot --format csv`, one account a row.
//!
//! Every problem is collected and reported as `FILE:LINE: message`, like a plan's; the sheet is
//! refused whole if any row is wrong, since a sheet half read would plan the removal of what
//! the unread rows hold.

use std::io::{self, Cursor, Read};
use std::sync::Arc;

use crate::em::AccountType;
use crate::plan::{PlanError, PlanErrors};

use super::{DesiredAccount, DesiredScope};

/// The cells the CSV export (`audit::csv_safe`) puts a `'` before, so that a spreadsheet does
/// not run them as formulas. The `'` is taken off again when a sheet is read, or an edited
/// snapshot would plan accounts, roles and scopes whose names start with it.
const NEUTRALISED: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// The columns a desired sheet must have: a missing `roles` or `scopes` column would otherwise
/// read as "no roles" and plan the removal of every one.
const REQUIRED: [&str; 5] = ["account", "type", "restore_all_vms", "roles", "scopes"];

/// Columns the snapshot writes that say nothing about the desired state.
const IGNORED: [&str; 2] = ["account_id", "read_at"];

/// One row of a sheet: its text cells and the line (or spreadsheet row) it starts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SheetRow {
    /// The line an editor (or the row number a spreadsheet) shows; the first is 1.
    pub line: u64,
    /// The cells as shown, left to right.
    pub cells: Vec<String>,
}

/// Where a sheet's rows come from: CSV here, a spreadsheet's shown values elsewhere. Blank rows
/// may be given or skipped; the reader skips them.
pub trait SheetSource {
    /// The next row, `None` at the end, or a problem that ends the reading: `(line, message)`.
    fn next_row(&mut self) -> Option<Result<SheetRow, (u64, String)>>;
}

/// The largest CSV sheet read: it is read whole, to count its lines as an editor shows them.
pub const MAX_SHEET_BYTES: u64 = 256 << 20;

/// A CSV sheet, comma-separated, as `snapshot --format csv` writes it.
///
/// The `csv` crate's record positions do not match what an editor shows (a record after blank
/// lines gets the line of the first blank one; see `plan::records`), so the line of each record
/// is counted here from its byte offset, over the bytes kept whole.
pub struct CsvSheet {
    bytes: Arc<[u8]>,
    records: csv::StringRecordsIntoIter<Cursor<Arc<[u8]>>>,
    /// Where the line count stands: the byte offset counted up to, and its line.
    counted: (usize, u64),
}

impl CsvSheet {
    /// Reads CSV from `input`, refusing more than [`MAX_SHEET_BYTES`].
    pub fn new(input: impl Read) -> io::Result<Self> {
        let mut bytes = Vec::new();
        input.take(MAX_SHEET_BYTES + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_SHEET_BYTES {
            return Err(io::Error::other(format!(
                "larger than {} MiB",
                MAX_SHEET_BYTES >> 20
            )));
        }
        let bytes: Arc<[u8]> = bytes.into();
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(Cursor::new(bytes.clone()));
        Ok(CsvSheet {
            bytes,
            records: reader.into_records(),
            counted: (0, 1),
        })
    }

    /// The line of the first character that is not a line break at or after `offset`: `\n`,
    /// `\r\n` and a lone `\r` each end a line.
    fn line_at(&mut self, offset: usize) -> u64 {
        let (mut at, mut line) = self.counted;
        let bytes = &self.bytes[..];
        let mut end = offset.min(bytes.len());
        while end < bytes.len() && matches!(bytes[end], b'\r' | b'\n') {
            end += 1;
        }
        while at < end {
            match bytes[at] {
                b'\n' => line += 1,
                b'\r' if bytes.get(at + 1) != Some(&b'\n') => line += 1,
                _ => {}
            }
            at += 1;
        }
        self.counted = (at.max(self.counted.0), line);
        line
    }
}

impl SheetSource for CsvSheet {
    fn next_row(&mut self) -> Option<Result<SheetRow, (u64, String)>> {
        let record = self.records.next()?;
        Some(match record {
            Ok(record) => {
                let offset = record.position().map_or(0, |p| p.byte() as usize);
                Ok(SheetRow {
                    line: self.line_at(offset),
                    cells: record.iter().map(str::to_string).collect(),
                })
            }
            Err(e) => {
                let offset = e.position().map_or(0, |p| p.byte() as usize);
                let message = match e.kind() {
                    csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_string(),
                    _ => format!("unreadable CSV: {e}"),
                };
                Err((self.line_at(offset), message))
            }
        })
    }
}

/// The cell with the CSV export's neutralising `'` taken off.
pub(super) fn unneutralised(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(NEUTRALISED) => rest,
        _ => cell,
    }
}

/// Which column holds what.
struct Columns {
    count: usize,
    account: usize,
    account_type: usize,
    flag: usize,
    roles: usize,
    scopes: usize,
}

/// A header cell as a column name: case, spaces and a byte-order mark do not matter.
fn column_name(cell: &str) -> String {
    cell.trim_start_matches('\u{feff}')
        .trim()
        .to_lowercase()
        .replace([' ', '-'], "_")
}

fn columns(header: &[String]) -> Result<Columns, Vec<String>> {
    let names: Vec<String> = header.iter().map(|c| column_name(c)).collect();
    let mut problems = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if !REQUIRED.contains(&name.as_str()) && !IGNORED.contains(&name.as_str()) {
            problems.push(format!(
                "unknown column '{}' (a desired sheet has the columns of `snapshot --format csv`: {})",
                header[i],
                REQUIRED.join(", ")
            ));
        } else if names[..i].contains(name) {
            problems.push(format!("column '{name}' appears twice"));
        }
    }
    let find = |wanted: &str| names.iter().position(|n| n == wanted);
    let mut at = [0; 5];
    for (slot, wanted) in at.iter_mut().zip(REQUIRED) {
        match find(wanted) {
            Some(i) => *slot = i,
            None => problems.push(format!("missing column '{wanted}'")),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Columns {
        count: names.len(),
        account: at[0],
        account_type: at[1],
        flag: at[2],
        roles: at[3],
        scopes: at[4],
    })
}

fn flag(cell: &str) -> Result<bool, String> {
    match cell.trim().to_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        "" => Err("empty restore_all_vms (true or false)".into()),
        _ => Err(format!("restore_all_vms '{cell}' is not true or false")),
    }
}

/// The items of a `; `-joined cell, trimmed, empty ones left out.
fn items(cell: &str) -> impl Iterator<Item = &str> {
    cell.split(';').map(str::trim).filter(|s| !s.is_empty())
}

/// `Name (urn:...)` or `Name`, as the snapshot writes a scope.
fn scope(item: &str) -> Result<DesiredScope, String> {
    let parsed = item
        .strip_suffix(')')
        .and_then(|rest| rest.rsplit_once('('))
        .filter(|(name, obj_ref)| {
            (name.is_empty() || name.ends_with(' '))
                && obj_ref
                    .get(..4)
                    .is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
        });
    let (name, obj_ref) = match parsed {
        Some((name, obj_ref)) => (name.trim(), Some(obj_ref.trim().to_string())),
        None => (item, None),
    };
    if name.is_empty() {
        return Err(format!("scope '{item}' has no name"));
    }
    Ok(DesiredScope {
        name: name.to_string(),
        obj_ref,
    })
}

/// One data row into an account, or its problems.
fn account(line: u64, cells: &[String], columns: &Columns) -> Result<DesiredAccount, Vec<String>> {
    let cell = |i: usize| unneutralised(&cells[i]);
    let mut problems = Vec::new();
    let name = cell(columns.account).trim();
    if name.is_empty() {
        problems.push("empty account".to_string());
    }
    let type_cell = cell(columns.account_type).trim();
    let account_type = if type_cell.is_empty() {
        None
    } else {
        let parsed = AccountType::parse(type_cell);
        if parsed.is_none() {
            problems.push(format!(
                "unknown type '{type_cell}' (User, Group, ExternalUser or ExternalGroup)"
            ));
        }
        parsed
    };
    let restore_all_vms = flag(cell(columns.flag)).unwrap_or_else(|m| {
        problems.push(m);
        false
    });
    let mut roles: Vec<String> = Vec::new();
    for role in items(cell(columns.roles)) {
        // EM matches role names case-insensitively.
        if roles.iter().any(|r| r.eq_ignore_ascii_case(role)) {
            problems.push(format!("role '{role}' is listed twice"));
        } else {
            roles.push(role.to_string());
        }
    }
    let mut scopes: Vec<DesiredScope> = Vec::new();
    for item in items(cell(columns.scopes)) {
        match scope(item) {
            Ok(s) if scopes.contains(&s) => {
                problems.push(format!("scope '{item}' is listed twice"))
            }
            Ok(s) => scopes.push(s),
            Err(m) => problems.push(m),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(DesiredAccount {
        line,
        name: name.to_string(),
        account_type,
        restore_all_vms,
        roles,
        scopes,
    })
}

/// Reads every account of a desired sheet named `file`, or every problem it has, in line order.
pub fn read_desired(
    file: &str,
    source: &mut dyn SheetSource,
) -> Result<Vec<DesiredAccount>, PlanErrors> {
    let mut problems: Vec<PlanError> = Vec::new();
    let mut add = |line: u64, message: String| {
        problems.push(PlanError {
            file: file.to_string(),
            line,
            message,
        })
    };
    let mut columns: Option<Columns> = None;
    let mut stopped = false;
    let mut accounts: Vec<DesiredAccount> = Vec::new();
    // Names are compared case-insensitively, as EM compares them.
    let mut seen: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    while let Some(row) = source.next_row() {
        let row = match row {
            Ok(row) => row,
            Err((line, message)) => {
                add(line, message);
                stopped = true;
                break;
            }
        };
        if row.cells.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let Some(cols) = &columns else {
            match self::columns(&row.cells) {
                Ok(c) => columns = Some(c),
                Err(messages) => {
                    for m in messages {
                        add(row.line, m);
                    }
                    stopped = true;
                    break;
                }
            }
            continue;
        };
        if row.cells.len() != cols.count {
            add(
                row.line,
                format!(
                    "{} cells, but the header has {} columns",
                    row.cells.len(),
                    cols.count
                ),
            );
            continue;
        }
        match account(row.line, &row.cells, cols) {
            Ok(a) => match seen.get(&a.name.to_lowercase()) {
                Some(first) => add(
                    a.line,
                    format!("duplicate of line {first}: the account is listed twice"),
                ),
                None => {
                    seen.insert(a.name.to_lowercase(), a.line);
                    accounts.push(a);
                }
            },
            Err(messages) => {
                for m in messages {
                    add(row.line, m);
                }
            }
        }
    }
    if columns.is_none() && !stopped {
        add(
            0,
            "no header: a desired sheet has the columns of `snapshot --format csv`".into(),
        );
    }
    if problems.is_empty() {
        Ok(accounts)
    } else {
        problems.sort_by_key(|p| p.line);
        Err(PlanErrors(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Vec<DesiredAccount>, Vec<String>> {
        read_desired("want.csv", &mut CsvSheet::new(text.as_bytes()).unwrap())
            .map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    const HEADER: &str = "account_id,account,type,restore_all_vms,roles,scopes,read_at\n";

    #[test]
    fn an_edited_snapshot_reads_with_ids_and_times_ignored() {
        let text = format!(
            "{HEADER}00000000-0000-0000-0000-000000000007,TECH\\ops,Group,true,\
             Portal User; VM Restore Operator,\
             Finance (urn:VMware:ResourcePool:root1.resgroup-5); Sales,2026-11-23T10:00:00.000Z\n\
             \n\
             ,TECH\\new,User,FALSE,Portal User,Sales (urn:VMware:Folder:root1.group-v3),\n"
        );
        let got = read(&text).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, "TECH\\ops");
        assert_eq!(got[0].account_type, Some(AccountType::Group));
        assert!(got[0].restore_all_vms);
        assert_eq!(got[0].roles, ["Portal User", "VM Restore Operator"]);
        assert_eq!(
            got[0].scopes,
            [
                DesiredScope {
                    name: "Finance".into(),
                    obj_ref: Some("urn:VMware:ResourcePool:root1.resgroup-5".into())
                },
                DesiredScope {
                    name: "Sales".into(),
                    obj_ref: None
                }
            ]
        );
        assert_eq!((got[1].line, got[1].restore_all_vms), (4, false));
    }

    #[test]
    fn lines_are_counted_as_an_editor_shows_them() {
        let text = "account,type,restore_all_vms,roles,scopes\r\n\r\n\r\n\
                    TECH\\a,User,true,\"Portal User;\r\nVM Restore Operator\",\r\n\
                    \r\n\
                    TECH\\b,User,maybe,Portal User,\r\n";
        let got = read_desired("want.csv", &mut CsvSheet::new(text.as_bytes()).unwrap());
        assert_eq!(got.unwrap_err().0[0].line, 7);
        let got = read(&text.replace("maybe", "true")).unwrap();
        assert_eq!((got[0].line, got[1].line), (4, 7));
        assert_eq!(got[0].roles, ["Portal User", "VM Restore Operator"]);
    }

    #[test]
    fn the_exports_leading_quote_is_taken_off() {
        let text = "account,type,restore_all_vms,roles,scopes\n\
                    '=Finance+Ops,Group,true,'@Odd Role; Portal User,'-Minus (urn:VMware:Folder:r.g-1)\n\
                    'plain,User,true,Portal User,\n";
        let got = read(text).unwrap();
        assert_eq!(got[0].name, "=Finance+Ops");
        assert_eq!(got[0].roles, ["@Odd Role", "Portal User"]);
        assert_eq!(got[0].scopes[0].name, "-Minus");
        // A quote before anything else is part of the name.
        assert_eq!(got[1].name, "'plain");
        // What the export writes is read back as it was.
        for name in ["=x", "''=y", "+1", "@a", "-b", "x"] {
            assert_eq!(unneutralised(&crate::audit::csv_safe(name)), name);
        }
    }

    #[test]
    fn every_problem_is_named_by_line() {
        let text = "account,type,restore_all_vms,roles,scopes\n\
                    ,User,true,Portal User,\n\
                    TECH\\a,Robot,maybe,Portal User; portal user,(urn:x:y:z.w)\n\
                    TECH\\b,User,true\n\
                    tech\\B,User,true,,\n\
                    TECH\\b,User,true,,\n";
        assert_eq!(
            read(text).unwrap_err(),
            [
                "want.csv:2: empty account",
                "want.csv:3: unknown type 'Robot' (User, Group, ExternalUser or ExternalGroup)",
                "want.csv:3: restore_all_vms 'maybe' is not true or false",
                "want.csv:3: role 'portal user' is listed twice",
                "want.csv:3: scope '(urn:x:y:z.w)' has no name",
                "want.csv:4: 3 cells, but the header has 5 columns",
                "want.csv:6: duplicate of line 5: the account is listed twice",
            ]
        );
    }

    #[test]
    fn a_missing_or_unknown_column_refuses_the_sheet() {
        let got =
            read("account,type,restore_all_vms,role,scopes\nTECH\\a,User,true,x,\n").unwrap_err();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].starts_with("want.csv:1: unknown column 'role'"),
            "{got:?}"
        );
        assert_eq!(got[1], "want.csv:1: missing column 'roles'");
        assert_eq!(
            read("").unwrap_err(),
            ["want.csv: no header: a desired sheet has the columns of `snapshot --format csv`"]
        );
        assert!(
            read("\u{feff}Account,Type,Restore All VMs,Roles,Scopes\n")
                .unwrap()
                .is_empty()
        );
    }
}
