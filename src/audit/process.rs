//! The identity of the process that writes a run, and whether such a process still exists: how
//! a run left `running` by a crashed process is told from one still in progress.
//!
//! A pid alone is not enough, since pids are reused; Linux also gives each process's start time
//! (in clock ticks after boot, `/proc/<pid>/stat` field 22) and an id for each boot, which
//! together name one process. Elsewhere only the pid is known and a run's writer is assumed
//! alive, so nothing is ever reported as crashed by mistake.

/// Who wrote a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WriterIdentity {
    /// The process id.
    pub pid: u32,
    /// The process's start time in clock ticks after boot, where known.
    pub start: Option<u64>,
    /// The boot the process ran in, where known.
    pub boot_id: Option<String>,
}

impl WriterIdentity {
    /// This process.
    pub(crate) fn current() -> WriterIdentity {
        let pid = std::process::id();
        WriterIdentity {
            pid,
            start: start_time(pid),
            boot_id: boot_id(),
        }
    }

    /// Whether the process that wrote a run is gone: its boot is over, its pid is free or
    /// taken by a process started at another time.
    pub(crate) fn is_gone(&self) -> bool {
        if !cfg!(target_os = "linux") {
            return false;
        }
        if let (Some(then), Some(now)) = (&self.boot_id, boot_id())
            && *then != now
        {
            return true;
        }
        match (proc_stat(self.pid), self.start) {
            (None, _) => true,
            (Some(stat), Some(start)) => !stat.running || stat.start != start,
            (Some(stat), None) => !stat.running,
        }
    }
}

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    /// Neither a zombie nor dead: a zombie has exited and only waits for its parent.
    running: bool,
    /// Start time in clock ticks after boot.
    start: u64,
}

/// The start time of `pid`, where the system tells it.
fn start_time(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|s| s.start)
}

/// Reads `/proc/<pid>/stat`; `None` if there is no such process (or no `/proc`).
fn proc_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and may
/// itself hold spaces and parentheses, so the fields are counted after the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // `rest` starts at field 3 (state); field 22 (starttime) is 19 further on.
    let state = fields.next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some(Stat {
        running: !matches!(state, "Z" | "X" | "x"),
        start,
    })
}

/// The current boot's id, on Linux.
fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_an_awkward_command_name() {
        let line = "4242 (we ird) (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 12345678 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                running: true,
                start: 987654
            })
        );
        let zombie = line.replace(") S ", ") Z ");
        assert!(!parse_stat(&zombie).unwrap().running);
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (init) S 0"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_alive_and_others_are_not() {
        let me = WriterIdentity::current();
        assert!(me.start.is_some());
        assert!(me.boot_id.is_some());
        assert!(!me.is_gone());

        let reused = WriterIdentity {
            start: me.start.map(|s| s + 1),
            ..me.clone()
        };
        assert!(reused.is_gone(), "same pid, another start time");

        let other_boot = WriterIdentity {
            boot_id: Some("00000000-0000-0000-0000-000000000000".into()),
            ..me.clone()
        };
        assert!(other_boot.is_gone(), "a process of an earlier boot");

        // Above the largest pid Linux hands out (4194304).
        let dead = WriterIdentity {
            pid: 999_999_999,
            ..me
        };
        assert!(dead.is_gone());
    }
}
