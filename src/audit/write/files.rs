//! Which files the writer writes: the log and its `-wal` file as they were when the writer
//! opened them, checked before each commit, so that a log deleted, renamed or replaced during a
//! run stops the run instead of taking its records into a file nobody can open.

use std::path::Path;
use std::sync::Arc;

use crate::audit::db;

/// The log's path, and the files it named when the writer opened them.
pub(super) struct LogFiles {
    path: Arc<Path>,
    file: FileIdentity,
    /// The `-wal` file, once a commit has made it.
    wal: Option<FileIdentity>,
}

impl LogFiles {
    /// The files `path` names now: the log (which must exist), and no `-wal` file yet.
    pub(super) fn of(path: &Path) -> std::io::Result<LogFiles> {
        Ok(LogFiles {
            path: Arc::from(path),
            file: FileIdentity::of(path)?,
            wal: None,
        })
    }

    /// Fails when the log's path no longer names the file (or the `-wal` file) this writer
    /// writes: it was deleted, renamed or replaced during the run. SQLite keeps writing to the
    /// open, unlinked files without a word, and its commits would vanish with the process.
    pub(super) fn check(&mut self) -> Result<(), String> {
        let moved = |what: &str| {
            format!(
                "{what} {} was removed or replaced while this run was writing to it; the run \
                 stops, since its records would be lost",
                self.path.display()
            )
        };
        if FileIdentity::of(&self.path).ok() != Some(self.file) {
            return Err(moved("the audit log"));
        }
        let wal = db::companion(&self.path, "-wal");
        match (self.wal, FileIdentity::of(&wal)) {
            (Some(known), Ok(now)) if known == now => {}
            (Some(_), _) => return Err(moved("the audit log's journal")),
            // Made by the first write; from then on it stays until the last connection closes.
            (None, Ok(now)) => self.wal = Some(now),
            (None, Err(_)) => {}
        }
        Ok(())
    }
}

/// Which file a path names: its device and inode, where the platform has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileIdentity {
    device: u64,
    inode: u64,
}

impl FileIdentity {
    #[cfg(unix)]
    fn of(path: &Path) -> std::io::Result<FileIdentity> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        Ok(FileIdentity {
            device: meta.dev(),
            inode: meta.ino(),
        })
    }

    /// Elsewhere an open file cannot be deleted, which is the case this guards against.
    #[cfg(not(unix))]
    fn of(path: &Path) -> std::io::Result<FileIdentity> {
        std::fs::metadata(path).map(|_| FileIdentity {
            device: 0,
            inode: 0,
        })
    }
}
