//! The process exit statuses: one enum, decided in one place, documented in the README.
//!
//! Scripts depend on these numbers, so they only change on purpose.

/// How an embatch command ended, as the number the process exits with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Every row was applied or already in place; or a read-only command succeeded.
    Success,
    /// The run finished, but some rows failed (or `check --online` predicts failures).
    RowsFailed,
    /// Usage error or invalid plan: nothing was sent to the server.
    Usage,
    /// Connection, TLS or logon failure before any change was made.
    Connection,
    /// Interrupted (Ctrl-C): rows not started are marked skipped and `resume` can finish them.
    Interrupted,
    /// The audit log failed verification: a record was modified, deleted or inserted.
    Tampered,
}

impl Exit {
    /// The numeric status the process exits with.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::RowsFailed => 1,
            Exit::Usage => 2,
            Exit::Connection => 3,
            Exit::Interrupted => 4,
            Exit::Tampered => 5,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}
