//! The header of a plan: finding it, reading it, and reading each row through it.
//!
//! The header may follow blank lines, and its delimiter (comma, semicolon or tab) is not known
//! until its lines are read, so they are read ahead and held until it is. Then each header
//! cell makes a column: one of the known names (matched loosely: `Object Name` is
//! `object_name`), or an annotation kept with each row. A missing required column is reported
//! with the column whose name is near it, and a duplicated one is not read at all. Each data
//! record is read through the header into a row: its cells given their meaning by `cells`,
//! and the row compared with those before it by `checks`.

use std::borrow::Cow;
use std::io::BufRead;

use super::cells::{self, Kind, quoted};
use super::checks::Tracker;
use super::error::Problems;
use super::records::{self, DelimiterDetector, Line};
use super::row::{AccountRef, Action, PlanRow};
use super::scan::{
    Halt, MAX_COLUMNS, MAX_RECORD_BYTES, MAX_RECORD_LINES, PendingLine, Scanner, Stage,
    UNTERMINATED, bytes_limit, first_record, lines_limit,
};

// The scanner's first step is kept beside the header it looks for; the rest of the scanner is in
// `scan`.
impl<R: BufRead> Scanner<R> {
    /// Reads up to the header and the header itself: the encoding, the delimiter, the columns.
    pub(super) fn read_header(&mut self) -> Result<(), Halt> {
        self.stage = Stage::Done;
        let Some(mut line) = self.next_physical(MAX_RECORD_BYTES)? else {
            self.problems
                .add(0, "the plan has no rows: the file is empty".into());
            return Ok(());
        };
        // Excel's "Unicode Text" export is UTF-16; read as UTF-8 every line of it would be
        // reported, so it gets one message that says what to do instead.
        let raw = self.lines.raw();
        if raw.starts_with(b"\xFF\xFE") || raw.starts_with(b"\xFE\xFF") {
            self.problems.add(
                0,
                "the plan is UTF-16 text; save it as UTF-8 (\"CSV UTF-8\" in Excel)".into(),
            );
            return Ok(());
        }

        // The delimiter decides where records end, so the lines up to the header are read
        // ahead and kept until it is known. They are held in memory, so together they get the
        // budget of one record: blank lines before the header count against it.
        let mut detector = DelimiterDetector::default();
        let mut held = 0;
        let mut header_start = None;
        loop {
            let number = match line {
                Line::Whole(number) => number,
                Line::TooLong(number) => {
                    // The start of the line that went past the limit may start the header,
                    // and with the header's lines before it says whether a quote is open.
                    let mut raw = self.lines.raw();
                    if number == 1 {
                        raw = raw.strip_prefix(records::BOM).unwrap_or(raw);
                    }
                    let cut = String::from_utf8_lossy(raw).into_owned();
                    detector.feed(cut.as_bytes());
                    if detector.in_header() {
                        header_start.get_or_insert(number);
                    }
                    let Some(first) = header_start else {
                        self.problems.add(
                            number,
                            format!(
                                "no header within the first {}: only blank lines so far; is \
                                 this a CSV plan? reading stopped here",
                                bytes_limit()
                            ),
                        );
                        return Err(Halt::Limit);
                    };
                    self.delimiter = detector.delimiter();
                    self.record.clear();
                    for p in self.pending.iter().filter(|p| p.line >= first) {
                        self.record.push_str(&p.text);
                    }
                    self.record.push_str(&cut);
                    return Err(self.overlong(first, &bytes_limit()));
                }
            };
            let mut text = String::new();
            let bad = self.decode(number, &mut text);
            let done = detector.feed(text.as_bytes());
            held += self.lines.raw().len();
            self.pending.push_back(PendingLine {
                line: number,
                text,
                raw_len: self.lines.raw().len(),
                bad,
            });
            if detector.in_header() {
                let first = *header_start.get_or_insert(number);
                if !done && number - first + 1 >= MAX_RECORD_LINES {
                    self.delimiter = detector.delimiter();
                    self.record.clear();
                    for p in self.pending.iter().filter(|p| p.line >= first) {
                        self.record.push_str(&p.text);
                    }
                    // The detector follows quotes before it knows the delimiter; read with the
                    // delimiter it chose, the header may have ended lines ago (a quote in the
                    // tail of a field, after a quoted part, opens nothing). Then these lines
                    // are the header and the rows after it, read as any rows are.
                    if header_ended(&self.record, self.delimiter, first) {
                        break;
                    }
                    return Err(self.overlong(first, &lines_limit()));
                }
            }
            if done {
                break;
            }
            match self.next_physical(MAX_RECORD_BYTES - held)? {
                Some(next) => line = next,
                None => break,
            }
        }
        self.delimiter = detector.delimiter();

        loop {
            let Some(gathered) = self.gather()? else {
                self.problems.add(
                    0,
                    "the plan has no rows: the file holds nothing but blank lines".into(),
                );
                return Ok(());
            };
            let mut fields = Vec::new();
            let Some(info) =
                first_record(&self.record, self.delimiter, gathered.first, &mut fields)
            else {
                continue;
            };
            if info.unterminated.is_none() && records::is_blank(&fields) {
                continue;
            }
            if let Some(at) = info.unterminated {
                // The open quote swallowed the rest of the file, so there is nothing else to
                // read.
                self.problems.add(at, UNTERMINATED.into());
                return Ok(());
            }
            let width = header_width(&fields);
            if width > MAX_COLUMNS {
                // Every annotation column is copied into each row's record, so a header this
                // wide would multiply the work and the log with every row.
                self.problems.add(
                    info.line,
                    format!(
                        "the header has {width} columns, more than the {MAX_COLUMNS} a plan may \
                         have; is this a plan? reading stopped here"
                    ),
                );
                return Err(Halt::Limit);
            }
            self.header = Some(Header::read(
                &fields,
                info.line,
                self.delimiter,
                &mut self.problems,
            ));
            self.stage = Stage::Rows;
            return Ok(());
        }
    }
}

/// The columns a plan knows by name. The discriminants index `Known::ALL` and the header's
/// per-column tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Known {
    Account = 0,
    Action = 1,
    Target = 2,
    ObjectName = 3,
    Ticket = 4,
    Comment = 5,
}

impl Known {
    /// Every known column, in discriminant order: its name and whether the plan must have it.
    const ALL: [(Known, &'static str, bool); 6] = [
        (Known::Account, "account", true),
        (Known::Action, "action", true),
        (Known::Target, "target", true),
        (Known::ObjectName, "object_name", false),
        (Known::Ticket, "ticket", false),
        (Known::Comment, "comment", false),
    ];
}

/// What one header cell makes of its column.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Column {
    Known(Known),
    /// Any other name: kept with each row as an annotation.
    Annotation(String),
    /// An empty header cell between named ones.
    Unnamed,
}

/// The number of columns a header's `fields` make: up to the last named one, since
/// spreadsheets export empty cells after it.
pub(super) fn header_width(fields: &[Cow<'_, str>]) -> usize {
    fields
        .iter()
        .rposition(|f| !f.trim().is_empty())
        .map_or(0, |i| i + 1)
}

/// The header: which column is which.
/// The delimiter a header read from a spreadsheet is given: it has none.
pub(super) const SHEET: u8 = 0;

pub(super) struct Header {
    /// The columns up to the last named one; empty header cells after it are ignored.
    columns: Vec<Column>,
    /// The column holding each known name, in `Known::ALL` order; `None` when the name is
    /// missing or given twice, so that no row is read from a column that cannot be trusted.
    index: [Option<usize>; 6],
    /// Whether each known name appears at all.
    present: [bool; 6],
    delimiter: u8,
}

/// A header name folded for matching: trimmed, lower-case, with spaces and dashes read as
/// underscores (spreadsheet users write `Object Name` as often as `object_name`).
fn fold_name(name: &str) -> String {
    name.trim()
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c == ' ' || c == '-' { '_' } else { c })
        .collect()
}

impl Header {
    /// Reads the header record on `line`, reporting every problem with it.
    pub(super) fn read(
        fields: &[Cow<'_, str>],
        line: u64,
        delimiter: u8,
        problems: &mut Problems,
    ) -> Header {
        let width = header_width(fields);
        let mut header = Header {
            columns: Vec::with_capacity(width),
            index: [None; 6],
            present: [false; 6],
            delimiter,
        };
        let mut duplicated = [false; 6];
        let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (i, field) in fields[..width].iter().enumerate() {
            let name = field.trim();
            if name.is_empty() {
                header.columns.push(Column::Unnamed);
                continue;
            }
            let folded = fold_name(name);
            let known = Known::ALL.iter().position(|(_, n, _)| *n == folded);
            if let Some(first) = seen.get(&folded) {
                problems.add(
                    line,
                    format!(
                        "duplicate column {} (columns {} and {})",
                        quoted(name),
                        first + 1,
                        i + 1
                    ),
                );
                if let Some(k) = known {
                    duplicated[k] = true;
                }
            } else {
                seen.insert(folded, i);
                if let Some(k) = known {
                    header.index[k] = Some(i);
                    header.present[k] = true;
                }
            }
            header.columns.push(match known {
                Some(k) => Column::Known(Known::ALL[k].0),
                None => Column::Annotation(name.to_string()),
            });
        }
        for (k, dup) in duplicated.iter().enumerate() {
            if *dup {
                header.index[k] = None;
            }
        }

        let missing: Vec<&str> = Known::ALL
            .iter()
            .enumerate()
            .filter(|(k, (_, _, required))| *required && !header.present[*k])
            .map(|(_, (_, n, _))| *n)
            .collect();
        if missing.len() == 3 {
            problems.add(
                line,
                "missing required columns account, action and target: the first line must be a header \
                 such as account,action,target"
                    .into(),
            );
        } else {
            for name in missing {
                let hint = header
                    .columns
                    .iter()
                    .enumerate()
                    .find_map(|(i, c)| match c {
                        Column::Annotation(h)
                            if cells::distance_within(&fold_name(h), name, 2).is_some() =>
                        {
                            Some(format!(
                                " (column {} is {}; did you mean '{name}'?)",
                                i + 1,
                                quoted(h)
                            ))
                        }
                        _ => None,
                    });
                problems.add(
                    line,
                    format!(
                        "missing required column '{name}'{}",
                        hint.unwrap_or_default()
                    ),
                );
            }
        }
        header
    }

    /// The name of column `i` (0-based) as the header gives it; `None` for a column without
    /// one.
    pub(super) fn column_name(&self, i: usize) -> Option<String> {
        match self.columns.get(i)? {
            Column::Known(k) => Some(Known::ALL[*k as usize].1.to_string()),
            Column::Annotation(h) => Some(h.clone()),
            Column::Unnamed => None,
        }
    }

    /// The trimmed cell of known column `which`, or `None` when that column cannot be read.
    fn cell<'f>(&self, fields: &'f [Cow<'_, str>], which: Known) -> Option<&'f str> {
        self.index[which as usize].map(|i| fields.get(i).map_or("", |f| f.trim()))
    }

    /// Checks one data record, reporting each problem; the row when it has none.
    pub(super) fn row(
        &self,
        line: u64,
        fields: &[Cow<'_, str>],
        tracker: Option<&mut Tracker>,
        problems: &mut Problems,
    ) -> Option<PlanRow> {
        let mut valid = true;
        let mut fail = |problems: &mut Problems, message: String| {
            valid = false;
            problems.add(line, message);
        };

        let width = self.columns.len();
        if let Some(last) = fields.iter().rposition(|f| !f.trim().is_empty())
            && last >= width
        {
            // A spreadsheet's cells have no delimiter to quote (`SHEET`), so its rows get no
            // advice about quoting.
            let advice = match self.delimiter {
                SHEET => String::new(),
                b'\t' => "; a value that contains a tab must be quoted".to_string(),
                d => format!("; a value that contains '{}' must be quoted", char::from(d)),
            };
            fail(
                problems,
                format!(
                    "too many cells: the header has {width} columns but this row has {} (the last is {}){advice}",
                    last + 1,
                    quoted(fields[last].trim())
                ),
            );
        }
        for (i, column) in self.columns.iter().enumerate() {
            if *column == Column::Unnamed
                && let Some(value) = fields.get(i).map(|f| f.trim()).filter(|v| !v.is_empty())
            {
                fail(
                    problems,
                    format!(
                        "value {} in column {}, which has no header",
                        quoted(value),
                        i + 1
                    ),
                );
            }
        }

        let account = match self.cell(fields, Known::Account).map(cells::parse_account) {
            Some(Ok(account)) => Some(account),
            Some(Err(message)) => {
                fail(problems, message);
                None
            }
            None => None,
        };
        let kind = match self.cell(fields, Known::Action).map(cells::parse_kind) {
            Some(Ok(kind)) => Some(kind),
            Some(Err(message)) => {
                fail(problems, message);
                None
            }
            None => None,
        };
        let action =
            match kind.map(|kind| self.action(kind, self.cell(fields, Known::Target), fields)) {
                Some(Ok(action)) => action,
                Some(Err(messages)) => {
                    for m in messages {
                        fail(problems, m);
                    }
                    None
                }
                None => None,
            };
        let (Some(account), Some(action), true) = (account, action, valid) else {
            return None;
        };
        if matches!(action, Action::AddAccount(_)) && matches!(account, AccountRef::Id(_)) {
            problems.add(
                line,
                "add-account needs the new account's name (e.g. TECH\\alice), not a GUID".into(),
            );
            return None;
        }

        if let Some(tracker) = tracker {
            tracker.check(line, &account, &action, &mut |m| problems.add(line, m));
        }
        let text = |which| {
            self.cell(fields, which)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let annotations = self
            .columns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match c {
                Column::Annotation(h) => fields
                    .get(i)
                    .map(|f| f.trim())
                    .filter(|v| !v.is_empty())
                    .map(|v| (h.clone(), v.to_string())),
                _ => None,
            })
            .collect();
        Some(PlanRow {
            line,
            account,
            action,
            ticket: text(Known::Ticket),
            comment: text(Known::Comment),
            annotations,
        })
    }

    /// The action of a row, from its kind and target (and object name for add-scope).
    /// `Ok(None)` when a column it needs cannot be read, which the header already reported.
    fn action(
        &self,
        kind: Kind,
        target: Option<&str>,
        fields: &[Cow<'_, str>],
    ) -> Result<Option<Action>, Vec<String>> {
        let one = |r: Result<Action, String>| r.map(Some).map_err(|m| vec![m]);
        let Some(target) = target else {
            // Without a target column an add-scope row can still be checked for its object
            // name; every other check needs the target.
            return match kind {
                Kind::AddScope => self.object_name(fields).map(|_| None).map_err(|m| vec![m]),
                _ => Ok(None),
            };
        };
        match kind {
            Kind::AssignRole => one(cells::parse_role(kind, target).map(Action::AssignRole)),
            Kind::RemoveRole => one(cells::parse_role(kind, target).map(Action::RemoveRole)),
            Kind::RemoveScope => one(cells::parse_scope(target).map(Action::RemoveScope)),
            Kind::RestoreAllVms => one(cells::parse_flag(target).map(Action::RestoreAllVms)),
            Kind::AddAccount => one(cells::parse_account_type(target).map(Action::AddAccount)),
            Kind::DeleteAccount => {
                one(cells::check_delete_target(target).map(|()| Action::DeleteAccount))
            }
            Kind::AddScope => {
                let checked_ref = cells::check_obj_ref(target);
                let object_name = self.object_name(fields);
                let messages: Vec<String> = [checked_ref.err(), object_name.clone().err()]
                    .into_iter()
                    .flatten()
                    .collect();
                if !messages.is_empty() {
                    return Err(messages);
                }
                Ok(object_name.ok().flatten().map(|name| Action::AddScope {
                    obj_ref: target.to_string(),
                    object_name: name.to_string(),
                }))
            }
        }
    }

    /// The object name of an add-scope row; `Ok(None)` when the column is given twice, which
    /// the header already reported.
    fn object_name<'f>(&self, fields: &'f [Cow<'_, str>]) -> Result<Option<&'f str>, String> {
        match self.cell(fields, Known::ObjectName) {
            Some("") => Err("add-scope needs an object_name (the scope's display name)".into()),
            Some(name) => cells::plain("object_name", name).map(|()| Some(name)),
            None if !self.present[Known::ObjectName as usize] => Err(
                "add-scope needs an object_name (the scope's display name), but the plan has no \
                 object_name column"
                    .into(),
            ),
            None => Ok(None),
        }
    }
}

/// Whether `text`, the lines read ahead from physical line `first` on, holds a whole first
/// record and more after it, as the tokenizer reads them with `delimiter`.
fn header_ended(text: &str, delimiter: u8, first: u64) -> bool {
    let mut records = records::Records::starting_at(text, delimiter, first);
    let mut fields = Vec::new();
    records
        .next_into(&mut fields)
        .is_some_and(|info| info.unterminated.is_none())
        && records.next_into(&mut fields).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::em::AccountType;
    use crate::plan::testing::{G1, G2, REF, ROLE, ok, problems, problems_of, uuid};
    use crate::plan::{RoleRef, ScopeRef, parse};

    #[test]
    fn accounts_are_added_and_deleted() {
        let plan = ok(&format!(
            "account,action,target,object_name\n\
             TECH\\new,add-account,user,\n\
             TECH\\new,assign-role,Portal User,\n\
             TECH\\new,add-scope,{REF},Finance-RP\n\
             TECH\\new,restore-all-vms,off,\n\
             TECH\\leaver,delete-account,,\n\
             TECH\\other,delete-account,Confirm,\n"
        ));
        assert_eq!(plan.rows[0].action, Action::AddAccount(AccountType::User));
        assert_eq!(plan.rows[4].action, Action::DeleteAccount);
        assert_eq!(plan.rows[5].action.target_text(), "confirm");
    }

    #[test]
    fn known_columns_are_listed_in_discriminant_order() {
        for (i, (k, _, _)) in Known::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
    }

    #[test]
    fn every_action_and_form_is_read() {
        let plan = ok(&format!(
            "account,action,target,object_name,ticket,comment,requested_by\n\
             TECH\\alice,assign-role,Portal User,,CHG-1,new starter,HR\n\
             {G1},remove-role,urn:veeam:EnterpriseRole:{ROLE},,CHG-1,,\n\
             urn:veeam:EnterpriseAccount:{},ASSIGN-ROLE,{},,,,\n\
             TECH\\bob,add-scope,{REF},Finance-RP,,,\n\
             TECH\\bob,remove-scope,Old-RP,,,,\n\
             TECH\\bob,remove-scope,{G1},,,,\n\
             TECH\\carol,restore-all-vms,Off,,,,\n",
            G2.to_uppercase(),
            ROLE.to_uppercase()
        ));
        assert_eq!(plan.file, "plan.csv");
        let got: Vec<(u64, AccountRef, Action)> = plan
            .rows
            .iter()
            .map(|r| (r.line, r.account.clone(), r.action.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    2,
                    AccountRef::Name("TECH\\alice".into()),
                    Action::AssignRole(RoleRef::Name("Portal User".into()))
                ),
                (
                    3,
                    AccountRef::Id(uuid(G1)),
                    Action::RemoveRole(RoleRef::Id(uuid(ROLE)))
                ),
                (
                    4,
                    AccountRef::Id(uuid(G2)),
                    Action::AssignRole(RoleRef::Id(uuid(ROLE)))
                ),
                (
                    5,
                    AccountRef::Name("TECH\\bob".into()),
                    Action::AddScope {
                        obj_ref: REF.into(),
                        object_name: "Finance-RP".into()
                    }
                ),
                (
                    6,
                    AccountRef::Name("TECH\\bob".into()),
                    Action::RemoveScope(ScopeRef::Name("Old-RP".into()))
                ),
                (
                    7,
                    AccountRef::Name("TECH\\bob".into()),
                    Action::RemoveScope(ScopeRef::Id(uuid(G1)))
                ),
                (
                    8,
                    AccountRef::Name("TECH\\carol".into()),
                    Action::RestoreAllVms(false)
                ),
            ]
        );
        let first = &plan.rows[0];
        assert_eq!(first.ticket.as_deref(), Some("CHG-1"));
        assert_eq!(first.comment.as_deref(), Some("new starter"));
        assert_eq!(
            first.annotations,
            vec![("requested_by".to_string(), "HR".to_string())]
        );
        // Empty optional cells are absent, not empty strings.
        assert_eq!(plan.rows[1].comment, None);
        assert_eq!(plan.rows[2].ticket, None);
        assert!(plan.rows[1].annotations.is_empty());
    }

    #[test]
    fn columns_match_case_insensitively_in_any_order_after_trimming() {
        let plan = ok(
            " Target ;ACTION; Account ;Object Name;Ticket\nFinance-RP;remove-scope;TECH\\bob;;T-9\n",
        );
        let row = &plan.rows[0];
        assert_eq!(row.account, AccountRef::Name("TECH\\bob".into()));
        assert_eq!(
            row.action,
            Action::RemoveScope(ScopeRef::Name("Finance-RP".into()))
        );
        assert_eq!(row.ticket.as_deref(), Some("T-9"));
        assert!(row.annotations.is_empty());
        let plan = ok(&format!(
            "account,action,target,object-name\na,add-scope,{REF},Finance\n"
        ));
        assert!(
            matches!(&plan.rows[0].action, Action::AddScope { object_name, .. } if object_name == "Finance")
        );
    }

    #[test]
    fn annotations_keep_their_header_as_written_and_skip_empty_values() {
        let plan = ok(
            "account,action,target,Requested By,cost centre\na,restore-all-vms,on,HR,\nb,restore-all-vms,on,,4711\n",
        );
        assert_eq!(
            plan.rows[0].annotations,
            vec![("Requested By".to_string(), "HR".to_string())]
        );
        assert_eq!(
            plan.rows[1].annotations,
            vec![("cost centre".to_string(), "4711".to_string())]
        );
    }

    #[test]
    fn a_spreadsheet_export_is_accepted_as_it_comes() {
        let bytes = b"\xEF\xBB\xBFaccount;action;target;object_name;comment;;\r\n\
                      TECH\\alice;assign-role;\"Portal User\";;\"said \"\"hi\"\"; twice\";;\r\n\
                      \r\n\
                      ;;;;;;\r\n\
                      TECH\\bob;restore-all-vms;off;;\"two\r\nlines\";;\r\n\
                      TECH\\carol;assign-role;VM Restore Operator;;;;\r\n";
        let plan = parse("x.csv", bytes).unwrap();
        assert_eq!(
            plan.rows.iter().map(|r| r.line).collect::<Vec<_>>(),
            [2, 5, 7]
        );
        assert_eq!(plan.rows[0].comment.as_deref(), Some("said \"hi\"; twice"));
        assert_eq!(plan.rows[1].comment.as_deref(), Some("two\r\nlines"));
        assert_eq!(plan.rows[0].account, AccountRef::Name("TECH\\alice".into()));
    }

    #[test]
    fn tab_delimited_plans_are_read() {
        let plan = ok(
            "account\taction\ttarget\tcomment\nTECH\\alice\tassign-role\tPortal User\tcomma, here\n",
        );
        assert_eq!(plan.rows[0].comment.as_deref(), Some("comma, here"));
    }

    #[test]
    fn trailing_empty_columns_and_empty_header_cells_are_ignored() {
        let plan = ok(
            "account,action,target,,,\na,restore-all-vms,on,,,\nb,restore-all-vms,on,,,,,,,,\nc,restore-all-vms,on\n",
        );
        assert_eq!(plan.rows.len(), 3);
    }

    #[test]
    fn utf16_is_refused_once_for_the_whole_file() {
        let utf16: Vec<u8> = "\u{feff}account\taction\ttarget\r\na\trestore-all-vms\ton\r\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(
            problems(&utf16),
            ["0: the plan is UTF-16 text; save it as UTF-8 (\"CSV UTF-8\" in Excel)"]
        );
    }

    #[test]
    fn missing_required_columns_are_refused_and_the_rest_is_still_checked() {
        assert_eq!(
            problems_of("account,action,ticket\nTECH\\a,asign-role,T1\n"),
            [
                "1: missing required column 'target'",
                "2: unknown action 'asign-role' (did you mean 'assign-role'?)"
            ]
        );
        assert_eq!(
            problems_of("acount,action,tagret\na,restore-all-vms,on\n"),
            [
                "1: missing required column 'account' (column 1 is 'acount'; did you mean 'account'?)",
                "1: missing required column 'target' (column 3 is 'tagret'; did you mean 'target'?)",
            ]
        );
        assert_eq!(
            problems_of("TECH\\alice,assign-role,Portal User\nTECH\\bob,assign-role,Portal User\n"),
            [
                "1: missing required columns account, action and target: the first line must be a header such as account,action,target"
            ]
        );
    }

    #[test]
    fn add_scope_without_an_object_name_column_is_refused_per_row() {
        assert_eq!(
            problems_of(&format!(
                "account,action,target\na,add-scope,{REF}\nb,restore-all-vms,on\n"
            )),
            [
                "2: add-scope needs an object_name (the scope's display name), but the plan has no object_name column"
            ]
        );
    }

    #[test]
    fn duplicate_columns_are_refused() {
        assert_eq!(
            problems_of("account,action,target,Account,note, NOTE \na,restore-all-vms,on,b,x,y\n"),
            [
                "1: duplicate column 'Account' (columns 1 and 4)",
                "1: duplicate column 'NOTE' (columns 5 and 6)"
            ]
        );
    }

    #[test]
    fn values_under_unnamed_columns_are_refused() {
        assert_eq!(
            problems_of(
                "account,,action,target\na,,restore-all-vms,on\nb,oops,restore-all-vms,on\n"
            ),
            ["3: value 'oops' in column 2, which has no header"]
        );
    }

    #[test]
    fn rows_wider_than_the_header_are_refused() {
        assert_eq!(
            problems_of(
                "account,action,target\nTECH\\a,assign-role,Portal User,\nTECH\\b,assign-role,Portal, User\n"
            ),
            [
                "3: too many cells: the header has 3 columns but this row has 4 (the last is 'User'); a value that contains ',' must be quoted"
            ]
        );
        assert_eq!(
            problems_of("account\taction\ttarget\na\trestore-all-vms\ton\tx\n"),
            [
                "2: too many cells: the header has 3 columns but this row has 4 (the last is 'x'); a value that contains a tab must be quoted"
            ]
        );
    }

    #[test]
    fn empty_required_cells_are_refused() {
        assert_eq!(
            problems_of(&format!(
                "account,action,target,object_name\n,assign-role,Portal User,\na,,Portal User,\nb,assign-role, ,\nc,add-scope,{REF},\nd,restore-all-vms\n"
            )),
            [
                "2: empty account",
                "3: empty action",
                "4: empty target: assign-role needs a role name, GUID or urn:veeam:EnterpriseRole:<guid>",
                "5: add-scope needs an object_name (the scope's display name)",
                "6: empty target: restore-all-vms needs on or off",
            ]
        );
    }

    #[test]
    fn malformed_guids_and_urns_are_refused() {
        assert_eq!(
            problems_of(
                "account,action,target,object_name\n\
                 urn:veeam:EnterpriseAccount:123,assign-role,Portal User,\n\
                 0f8e6a57-1c2b-4d3e-9f40,assign-role,urn:veeam:EnterpriseRole:nope,\n\
                 a,add-scope,urn:VMware:ResourcePool:resgroup-1,X\n\
                 b,remove-scope,abc-123,\n"
            ),
            [
                "2: malformed account URN 'urn:veeam:EnterpriseAccount:123' (expected urn:veeam:EnterpriseAccount:<guid>)",
                "3: malformed account GUID '0f8e6a57-1c2b-4d3e-9f40'",
                "3: malformed role URN 'urn:veeam:EnterpriseRole:nope' (expected urn:veeam:EnterpriseRole:<guid>)",
                "4: malformed hierarchy object ref 'urn:VMware:ResourcePool:resgroup-1' (expected urn:<Platform>:<ObjType>:<root>.<objref>, e.g. urn:VMware:ResourcePool:<root>.resgroup-1)",
                "5: malformed scope GUID 'abc-123'",
            ]
        );
    }

    #[test]
    fn a_header_wider_than_the_limit_is_refused() {
        let header = |columns: usize| {
            let mut names = vec!["account".to_string(), "action".into(), "target".into()];
            names.extend((names.len()..columns).map(|i| format!("note{i}")));
            names.join(",")
        };
        let plan = ok(&format!("{}\na,restore-all-vms,on\n", header(MAX_COLUMNS)));
        assert_eq!(plan.rows.len(), 1);
        // Empty cells after the last name are not columns (spreadsheets export them).
        ok(&format!(
            "{}{}\na,restore-all-vms,on\n",
            header(MAX_COLUMNS),
            ",".repeat(1000)
        ));
        assert_eq!(
            problems_of(&format!(
                "{}\na,restore-all-vms,on\n",
                header(MAX_COLUMNS + 1)
            )),
            [
                "1: the header has 65 columns, more than the 64 a plan may have; is this a plan? \
              reading stopped here"
            ]
        );
        // Refused alone, before its duplicate names are reported one by one.
        assert_eq!(
            problems_of(&"c,".repeat(5000)),
            [
                "1: the header has 5000 columns, more than the 64 a plan may have; is this a plan? \
              reading stopped here"
            ]
        );
    }
}
