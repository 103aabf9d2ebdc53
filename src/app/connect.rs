//! How to reach EM: the client configuration from the connection settings (and, for
//! replay, undo and resume, from the recorded run), the password from where it may come, and
//! the warnings about trusting the wire.

use std::io::IsTerminal;
use std::path::Path;

use url::Url;

use crate::audit::RunInfo;
use crate::console::errln;
use crate::em::{ClientConfig, Secret, Wire};
use crate::settings::{ConnectSettings, PasswordSource};
use crate::text;

use super::AppError;

pub(super) fn read_password(source: &PasswordSource) -> Result<Secret, AppError> {
    match source {
        PasswordSource::File(path) => read_password_file(path),
        PasswordSource::EnvOrPrompt => {
            if let Ok(p) = std::env::var("EMBATCH_PASSWORD")
                && !p.is_empty()
            {
                return Ok(Secret::new(p));
            }
            if std::io::stdin().is_terminal() {
                let p = rpassword::prompt_password("EM password: ")
                    .map_err(|e| AppError::Usage(format!("cannot read the password: {e}")))?;
                return Ok(Secret::new(p));
            }
            Err(AppError::Usage(
                "no password: set EMBATCH_PASSWORD or pass --password-file (stdin is not a terminal to prompt on)".into(),
            ))
        }
    }
}

/// The most bytes a password file may hold. A password is one line; a file larger than this is
/// not a password file, and one that never ends (`/dev/zero`) must not be read forever.
pub const MAX_PASSWORD_FILE_BYTES: u64 = 4096;

/// The password on the first line of the file at `path`. The file may be a pipe
/// (`--password-file <(pass show em)`); a regular file that others may read or write gets a
/// warning, as ssh gives for a private key, since the password is then not only the
/// operator's.
pub(super) fn read_password_file(path: &Path) -> Result<Secret, AppError> {
    use std::io::Read as _;
    let shown = || text::printable(&path.display().to_string()).into_owned();
    let cannot =
        |e: std::io::Error| AppError::Usage(format!("cannot read password file {}: {e}", shown()));
    let file = std::fs::File::open(path).map_err(cannot)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        // Asked of the file opened, so that what is warned about is what is read.
        let meta = file.metadata().map_err(cannot)?;
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_file() && mode & 0o077 != 0 {
            errln!(
                "embatch: warning: password file {} is open to others (mode {mode:04o}); \
                 restrict it with `chmod 600`",
                shown()
            );
        }
    }
    let mut bytes = Vec::new();
    file.take(MAX_PASSWORD_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_PASSWORD_FILE_BYTES {
        return Err(AppError::Usage(format!(
            "password file {} holds more than {MAX_PASSWORD_FILE_BYTES} bytes; it must hold the \
             password on its first line and little else",
            shown()
        )));
    }
    let content = String::from_utf8(bytes)
        .map_err(|_| AppError::Usage(format!("password file {} is not UTF-8 text", shown())))?;
    let line = content.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(AppError::Usage(format!(
            "password file {} is empty",
            shown()
        )));
    }
    Ok(Secret::new(line.to_string()))
}

/// The client configuration; the server, user and wire format come from `run` when the
/// command line leaves them out.
pub(super) fn client_config(
    c: &ConnectSettings,
    run: Option<&RunInfo>,
) -> Result<ClientConfig, AppError> {
    let url = match (&c.url, run) {
        (Some(url), _) => url.clone(),
        (None, Some(run)) => Url::parse(&run.server_url).map_err(|e| {
            AppError::Usage(format!(
                "run {} recorded the server '{}', which is not a URL ({e}); pass --url",
                run.run_id, run.server_url
            ))
        })?,
        (None, None) => {
            return Err(AppError::Usage(
                "no server given: pass --url or set EMBATCH_URL".into(),
            ));
        }
    };
    if c.tls.ca_fingerprint.is_some() && url.scheme() != "https" {
        return Err(AppError::Usage(format!(
            "--ca-fingerprint pins the server's TLS certificate, but {} is plain http, which has \
             none; use the https:// URL",
            text::printable(url.as_str())
        )));
    }
    let user = match (&c.user, run) {
        (Some(user), _) => user.clone(),
        (None, Some(run)) => run.operator.clone(),
        (None, None) => {
            return Err(AppError::Usage(
                "no user given: pass --user or set EMBATCH_USER".into(),
            ));
        }
    };
    let wire = c.wire.unwrap_or_else(|| {
        if run.is_some_and(|r| r.wire == "json") {
            Wire::Json
        } else {
            Wire::Xml
        }
    });
    let password = read_password(&c.password)?;
    if credentials_in_clear(&url) {
        errln!(
            "embatch: warning: {} is plain http to {}, which is not this machine: the password \
             crosses the network in Basic credentials that anyone on the way can read; use https",
            text::printable(url.as_str()),
            text::printable(url.host_str().unwrap_or("?"))
        );
    }
    if c.tls.insecure {
        errln!(
            "embatch: warning: --insecure: the server's certificate is not checked; this run is recorded as insecure"
        );
    }
    Ok(ClientConfig {
        timeout: c.timeout,
        ..ClientConfig::new(url, user, password, wire, c.tls.clone())
    })
}

/// Whether logging on to `url` sends the password where others may read it: over plain http to
/// a host that is not this machine. Loopback is 127.0.0.0/8, ::1 (also as ::ffff:127.x.y.z) and
/// the name `localhost`; any other name may resolve anywhere.
pub(super) fn credentials_in_clear(url: &Url) -> bool {
    if url.scheme() != "http" {
        return false;
    }
    match url.host() {
        Some(url::Host::Ipv4(ip)) => !ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => {
            !(ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
        }
        Some(url::Host::Domain(name)) => {
            let name = name.strip_suffix('.').unwrap_or(name);
            !name.eq_ignore_ascii_case("localhost")
        }
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_off_this_machine_sends_credentials_in_clear() {
        let in_clear = |url: &str| credentials_in_clear(&Url::parse(url).unwrap());
        for url in [
            "http://127.0.0.1:9398/api",
            "http://127.8.9.10/api",
            "http://localhost:9398/api",
            "http://LOCALHOST/api",
            "http://localhost./api",
            "http://[::1]:9398/api",
            "http://[::ffff:127.0.0.1]/api",
            "https://em.example.com:9398/api",
            "https://10.0.0.5/api",
        ] {
            assert!(!in_clear(url), "{url}");
        }
        for url in [
            "http://em.example.com:9398/api",
            "http://10.0.0.5:9398/api",
            "http://128.0.0.1/api",
            "http://[fe80::1]/api",
            "http://localhost.example.com/api",
            "http://0.0.0.0/api",
        ] {
            assert!(in_clear(url), "{url}");
        }
    }
}
