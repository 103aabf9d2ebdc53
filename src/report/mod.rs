//! `embatch report`: one run of the audit log as a self-contained HTML page for auditors and
//! change boards, written with mode 0600.
//!
//! The page holds the run's recorded facts (with a prominent warning when it was made with
//! `--insecure`), its outcome counts, a timeline of requests per second and of latency drawn as
//! inline SVG, and a table of its rows that an inline script filters by outcome. It needs
//! nothing but a browser: no external asset, font or library, and a Content-Security-Policy
//! that forbids fetching any.
//!
//! - `data.rs` reads the run through [`AuditReader`], which reads the stable views
//!   (`run_summary`, `change_log`, `request_log`);
//! - `timeline.rs` buckets the attempts per second with their latency percentiles (pure);
//! - `svg.rs` draws the charts (pure);
//! - `html.rs` writes the page, escaping every text from the log.

mod data;
mod html;
mod svg;
mod timeline;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use time::macros::format_description;

// Only `write_report` and `ReportError` are the module's interface; the parts stay inside.
use data::load;
use html::render;

use crate::audit::{AuditError, AuditReader, RunSelector};

/// A failure to make a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The run could not be read from the audit log.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The report file could not be written.
    #[error("write the report to {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// What [`write_report`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The run reported on.
    pub run_id: i64,
    /// The file written.
    pub path: PathBuf,
    /// The run's rows.
    pub rows: usize,
    /// The run's HTTP attempts.
    pub requests: usize,
}

/// The file name a report of `run_id` gets when none is given: `report-<run>.html`.
pub fn default_path(run_id: i64) -> PathBuf {
    PathBuf::from(format!("report-{run_id}.html"))
}

/// Reads run `which` from `reader` and writes its report to `path`, or to
/// [`default_path`] when `path` is `None`.
pub fn write_report(
    reader: &AuditReader,
    which: RunSelector,
    path: Option<&Path>,
) -> Result<Written, ReportError> {
    let data = load(reader, which)?;
    let path = path.map_or_else(|| default_path(data.run.run_id), Path::to_path_buf);
    let generated_at = OffsetDateTime::now_utc()
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
        ))
        .expect("a UTC date-time always formats with a fixed description");
    write_private(&path, &render(&data, &generated_at))?;
    Ok(Written {
        run_id: data.run.run_id,
        path,
        rows: data.rows.len(),
        requests: data.attempts.len(),
    })
}

/// Writes `html` to `path` with mode 0600, replacing any file there.
///
/// The page goes to a new temporary file beside `path` (created 0600, so the report is never
/// readable by others, not even for a moment) and is renamed over `path` once complete: a
/// reader never sees half a report, and an existing file's looser mode is not inherited.
pub fn write_private(path: &Path, html: &str) -> Result<(), ReportError> {
    let failed = |source| ReportError::Write {
        path: path.display().to_string(),
        source,
    };
    let name = path.file_name().ok_or_else(|| {
        failed(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file name",
        ))
    })?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = create_private(&temp)?;
        file.write_all(html.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        // Best effort: the temporary file is ours, and the error that matters is the first.
        let _ = fs::remove_file(&temp);
    }
    result.map_err(failed)
}

/// Creates `path`, which must not exist, readable and writable by its owner only.
fn create_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_with_mode_0600_replacing_a_looser_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.html");
        fs::write(&path, "old").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        }
        write_private(&path, "<p>new</p>").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "<p>new</p>");
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["r.html"], "no temporary file is left");
    }

    #[test]
    fn a_failed_write_names_the_file_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("r.html");
        let err = write_private(&path, "x").unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("write the report to {}: ", path.display())),
            "{err}"
        );
        // A directory cannot be replaced by a report.
        let err = write_private(dir.path(), "x").unwrap_err();
        assert!(matches!(err, ReportError::Write { .. }), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_default_name_carries_the_run() {
        assert_eq!(default_path(12), PathBuf::from("report-12.html"));
    }
}
