//! The start-up banner: where the emulator listens, a logon that works, curl lines to try,
//! how to trust its certificate, and the faults it injects.

use super::{EmulatorConfig, Faults, seed};

/// Quotes `text` for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The start-up banner: the URL and a logon that works, with curl lines to try.
pub fn banner(base_url: &str, config: &EmulatorConfig) -> String {
    let base = base_url.trim_end_matches('/');
    let root = base.strip_suffix("/api").unwrap_or(base);
    let tls = config.tls || base.starts_with("https:");
    let insecure = if tls { "-k " } else { "" };
    let seeded = config.seed.as_ref().map_or(0, |s| s.accounts.len());
    let mut lines = vec![
        format!("Enterprise Manager emulator listening on {base}/"),
        format!(
            "Log on as {} with password {} (Portal Administrator); {v}/{v} is a Portal User without /security.",
            config.admin_user,
            config.admin_password,
            v = seed::VIEWER
        ),
        format!(
            "Accounts: {} ({} seeded, {} generated, plus {}).",
            1 + seeded + config.accounts,
            seeded,
            config.accounts,
            seed::BUILTIN_ADMINISTRATORS
        ),
        "Try:".to_owned(),
        format!(
            "  curl {insecure}-si -X POST -u {} '{base}/sessionMngr/?v=latest'",
            shell_quote(&format!("{}:{}", config.admin_user, config.admin_password))
        ),
        format!(
            "  curl {insecure}-s -H 'X-RestSvcSessionId: <the X-RestSvcSessionId header from the logon>' '{base}/security/accounts'"
        ),
    ];
    if tls {
        let fingerprint = config
            .tls_material
            .as_ref()
            .and_then(|m| m.fingerprint().ok());
        match fingerprint {
            Some(fp) => {
                lines.push(format!(
                    "TLS (--tls): the certificate is self-signed, hence curl -k; its SHA-256 \
                     fingerprint is {fp}. Trust it by that fingerprint:"
                ));
                lines.push(format!(
                    "  EMBATCH_PASSWORD={} embatch snapshot --all --format csv --url {} --user {} \
                     --ca-fingerprint {fp}",
                    shell_quote(&config.admin_password),
                    shell_quote(base),
                    shell_quote(&config.admin_user)
                ));
                lines.push(
                    "or write it with --cert-out FILE and give FILE to embatch --ca-cert (or curl \
                     --cacert)."
                        .to_owned(),
                );
            }
            None => lines.push(
                "TLS (--tls): the certificate is self-signed, hence curl -k; write it with \
                 --cert-out FILE and give FILE to embatch --ca-cert (or curl --cacert)."
                    .to_owned(),
            ),
        }
    }
    lines.push(format!(
        "Inspect: {root}/_emulator/state, {root}/_emulator/journal, {root}/_emulator/requests"
    ));
    if let Some(faults) = describe_faults(&config.faults) {
        lines.push(format!("Injected faults: {faults}."));
    }
    lines.join("\n")
}

/// The active faults in a few words, or none when no fault is active.
fn describe_faults(f: &Faults) -> Option<String> {
    let pct = |p: f64| format!("{}%", (p * 1000.0).round() / 10.0);
    let mut parts = Vec::new();
    if f.latency_ms > 0 || f.jitter_ms > 0 {
        parts.push(format!(
            "latency {} ms + up to {} ms",
            f.latency_ms, f.jitter_ms
        ));
    }
    for (p, what) in [
        (f.error_500, "500"),
        (f.error_503, "503"),
        (f.error_429, "429"),
        (f.drop_before, "dropped before acting"),
        (f.drop_after, "dropped after acting"),
    ] {
        if p > 0.0 {
            parts.push(format!("{what} on {}", pct(p)));
        }
    }
    if let Some(n) = f.max_rps {
        parts.push(format!("at most {n} requests/s"));
    }
    if let Some(n) = f.expire_after {
        parts.push(format!("sessions expire after {n} requests"));
    }
    if parts.is_empty() {
        return None;
    }
    if f.error_503 > 0.0 || f.error_429 > 0.0 || f.max_rps.is_some() {
        parts.push(format!("Retry-After {} s", f.retry_after_secs));
    }
    parts.push(match f.seed {
        Some(seed) => format!("dice seed {seed}"),
        None => "random dice".to_owned(),
    });
    Some(parts.join(", "))
}
