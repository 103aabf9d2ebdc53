//! A plan's problems: each one a [`PlanError`] shown as `FILE:LINE: message`, all of them
//! together a [`PlanErrors`], and `Problems`, the list a reading adds them to as it finds them
//! and hands over in line order.

use crate::text;

/// One problem in a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanError {
    /// The file name.
    pub file: String,
    /// The physical line (0 when the problem is the file as a whole, e.g. unreadable).
    pub line: u64,
    /// What is wrong, as a lowercase fragment.
    pub message: String,
}

impl std::fmt::Display for PlanError {
    /// `FILE:LINE: message`, with control characters escaped: messages quote cells, and a
    /// cell (or a file name) may hold a terminal escape sequence.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = text::printable(&self.file);
        let message = text::printable(&self.message);
        if self.line == 0 {
            write!(f, "{file}: {message}")
        } else {
            write!(f, "{file}:{}: {message}", self.line)
        }
    }
}

/// Every problem found in a plan, in line order. Displayed one per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct PlanErrors(pub Vec<PlanError>);

impl std::fmt::Display for PlanErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The problems found so far.
#[derive(Default)]
pub(super) struct Problems {
    pub(super) file: String,
    pub(super) list: Vec<PlanError>,
}

impl Problems {
    pub(super) fn add(&mut self, line: u64, message: String) {
        self.list.push(PlanError {
            file: self.file.clone(),
            line,
            message,
        });
    }

    /// `Ok` when nothing was found; otherwise every problem, in line order.
    pub(super) fn into_result(mut self) -> Result<(), PlanErrors> {
        if self.list.is_empty() {
            return Ok(());
        }
        // A stable sort keeps the problems of one line in the order they were found.
        self.list.sort_by_key(|p| p.line);
        Err(PlanErrors(self.list))
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::parse;
    use crate::plan::testing::{G1, REF, problems_of};

    #[test]
    fn escape_sequences_in_cells_and_file_names_are_escaped_in_messages() {
        let text = "account,action,target\n\
                    TECH\\a,\x1b]0;pwned\x07,on\n\
                    TECH\\b\x1b[2J,restore-all-vms,maybe\x1b[2J\n";
        let err = parse("plan\x1b[31m.csv", text.as_bytes()).unwrap_err();
        let shown = err.to_string();
        assert!(
            !shown.contains('\x1b') && !shown.contains('\x07'),
            "{shown:?}"
        );
        assert!(
            shown.contains("plan\\u{1b}[31m.csv:2: unknown action '\\u{1b}]0;pwned\\u{7}'"),
            "{shown}"
        );
        assert!(shown.contains("'maybe\\u{1b}[2J'"), "{shown}");
        // What the error holds is what the plan held: escaping is for showing it.
        assert!(err.0.iter().any(|e| e.message.contains("\x1b]0;pwned\x07")));
    }

    #[test]
    fn every_problem_is_reported_in_line_order() {
        let got = problems_of(&format!(
            "account,action,target,object_name\n\
             a,asign-role,x,\n\
             ,add-scope,{REF},\n\
             b,restore-all-vms,on\n\
             b,restore-all-vms,on\n"
        ));
        assert_eq!(
            got,
            [
                "2: unknown action 'asign-role' (did you mean 'assign-role'?)",
                "3: empty account",
                "3: add-scope needs an object_name (the scope's display name)",
                "5: duplicate of line 4",
            ]
        );
    }

    #[test]
    fn the_report_reads_file_line_message() {
        let text = format!(
            "Account;Action;Target;Object_Name;Ticket\r\n\
             TECH\\alice;asign-role;Portal User;;CHG-7\r\n\
             urn:veeam:EnterpriseAccount:42;assign-role;Portal User;;CHG-7\r\n\
             \r\n\
             TECH\\bob;add-scope;urn:VMware:ResourcePool:resgroup-9;;CHG-7\r\n\
             TECH\\carol;assign-role;\"SQL Restore\r\nOperator\";;CHG-7\r\n\
             TECH\\carol;restore-all-vms;maybe;;CHG-7\r\n\
             TECH\\dave;assign-role;Portal User;;CHG-7\r\n\
             TECH\\Dave;remove-role;portal user;;CHG-7\r\n\
             TECH\\dave;assign-role;Portal User;;CHG-7\r\n\
             {G1};remove-scope;Finance-RP;;CHG-7;extra\r\n"
        );
        let report = parse("samples/plan.csv", text.as_bytes())
            .unwrap_err()
            .to_string();
        insta::assert_snapshot!(report);
    }
}
