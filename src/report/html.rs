//! The report page: one self-contained HTML document with its stylesheet, charts and filter
//! script inline, and every text from the audit log escaped.
//!
//! Text from the log (plan cells, error messages, the server's URL) is written only through
//! [`escape`], in element content and quoted attribute values, never into the script or the
//! stylesheet. A Content-Security-Policy allows exactly the page's own stylesheet and script by
//! their hashes and nothing else, so even a mistake in escaping could not run a script or fetch
//! anything: the page works offline, from a mail attachment or an archive, as it was written.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::data::ReportData;
use super::svg;
use super::timeline::{self, percentile};
use crate::audit::{RowInfo, RunInfo};

/// The page's stylesheet.
const CSS: &str = include_str!("page.css");
/// The page's only script: the row filter.
const JS: &str = include_str!("page.js");

/// The outcomes in the order the page shows them, with their labels.
const OUTCOMES: [(&str, &str); 7] = [
    ("applied", "Applied"),
    ("noop", "No-op"),
    ("failed", "Failed"),
    ("in_doubt", "In doubt"),
    ("skipped", "Skipped"),
    ("conflict", "Conflict"),
    ("pending", "Pending"),
];

/// Escapes `text` for HTML element content and for attribute values in double or single
/// quotes: `&`, `<`, `>`, `"` and `'` become character references. Borrowed when there is
/// nothing to escape.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The Content-Security-Policy source for `text`, an inline stylesheet or script.
fn csp_hash(text: &str) -> String {
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
    )
}

/// The label of an outcome, or the outcome itself for one this version does not know.
fn outcome_label(outcome: &str) -> &str {
    OUTCOMES
        .iter()
        .find(|(o, _)| *o == outcome)
        .map_or(outcome, |(_, label)| label)
}

/// A class-name suffix for an outcome: the outcome when it is a plain word, else `other`, so
/// no value can break out of a class list.
fn outcome_class(outcome: &str) -> &str {
    if !outcome.is_empty() && outcome.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        outcome
    } else {
        "other"
    }
}

/// A log timestamp for people: `2026-11-23 10:21:03.123 UTC`; anything else as it is.
fn when(ts: &str) -> String {
    match (timeline::parse_ms(ts), ts.strip_suffix('Z')) {
        (Some(_), Some(body)) => format!("{} UTC", body.replacen('T', " ", 1)),
        _ => ts.to_string(),
    }
}

/// A length of time for people: `0.4 s`, `12.3 s`, `4 min 05 s`, `2 h 03 min`.
pub(crate) fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min {:02} s", ms / 60_000, ms / 1000 % 60)
    } else {
        format!("{} h {:02} min", ms / 3_600_000, ms / 60_000 % 60)
    }
}

/// A latency for people: one decimal below 10 ms, whole milliseconds above.
fn latency(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// Whether `url` names this machine, where plain HTTP is no exposure.
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Renders the report of `data`; `generated_at` is the time the footer states.
pub fn render(data: &ReportData, generated_at: &str) -> String {
    let run = &data.run;
    let mut out = String::with_capacity(32 * 1024 + data.rows.len() * 400);
    let csp = format!(
        "default-src 'none'; style-src {}; script-src {}; img-src data:; base-uri 'none'; form-action 'none'",
        csp_hash(CSS),
        csp_hash(JS)
    );
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n\
         <meta name=\"generator\" content=\"embatch {version}\">\n\
         <title>embatch run {id} report</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        version = env!("CARGO_PKG_VERSION"),
        id = run.run_id,
    );
    header(&mut out, data);
    alerts(&mut out, data);
    outcomes(&mut out, data);
    details(&mut out, data);
    requests(&mut out, data);
    rows(&mut out, &data.rows);
    let _ = write!(
        out,
        "<footer>Generated by embatch {} on {} from the audit log's views run_summary, \
         change_log and request_log. Times are UTC.</footer>\n<script>{JS}</script>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        escape(generated_at),
    );
    out
}

/// The title, the status and one sentence about the run.
fn header(out: &mut String, data: &ReportData) {
    let run = &data.run;
    let status = outcome_class(&run.status);
    let _ = write!(
        out,
        "<header class=\"top\">\n<div class=\"brand\">embatch · audit report</div>\n\
         <h1>Run {} <span class=\"status status-{status}\" id=\"status\">{}</span></h1>\n<p class=\"lede\">",
        run.run_id,
        escape(&run.status)
    );
    let _ = write!(out, "<strong>{}</strong>", escape(&run.kind));
    if let Some(parent) = run.parent_run_id {
        let _ = write!(out, " of run {parent}");
    }
    if let Some(file) = &run.plan_file {
        let _ = write!(out, " of <code>{}</code>", escape(file));
    }
    let _ = write!(
        out,
        " by <strong>{}</strong> on <code>{}</code>, started {}",
        escape(&run.operator),
        escape(&run.server_url),
        escape(&when(&run.started_at))
    );
    match took(run) {
        Some(took) => {
            let _ = write!(out, ", took {took}.");
        }
        None => out.push('.'),
    }
    out.push_str("</p>\n</header>\n");
}

/// Warnings an auditor must not miss: no certificate check, plain HTTP to another machine, a
/// run that did not close.
fn alerts(out: &mut String, data: &ReportData) {
    let run = &data.run;
    if data.insecure {
        out.push_str(
            "<div class=\"alert alert-danger\" id=\"insecure\" role=\"alert\"><strong>TLS \
             certificate verification was OFF for this run (--insecure).</strong>Any certificate \
             was accepted, so nothing proves which server received the logon and the changes.</div>\n",
        );
    }
    if let Ok(url) = url::Url::parse(&run.server_url)
        && url.scheme() == "http"
        && !is_loopback(&url)
    {
        out.push_str(
            "<div class=\"alert alert-warning\" id=\"plain-http\" role=\"alert\"><strong>This run \
             used plain HTTP.</strong>The logon and the changes crossed the network unencrypted.</div>\n",
        );
    }
    match run.status.as_str() {
        "crashed" => {
            let _ = writeln!(
                out,
                "<div class=\"alert alert-warning\" role=\"alert\"><strong>The process making this \
                 run stopped without closing it.</strong>Rows not run are pending; \
                 <code>embatch resume {}</code> finishes the run.</div>",
                run.run_id
            );
        }
        "running" => out.push_str(
            "<div class=\"alert alert-warning\" role=\"alert\"><strong>This run was still in \
             progress when the report was made.</strong>Its counts may have changed since.</div>\n",
        ),
        _ => {}
    }
}

/// One card per count of `run_summary`.
fn outcomes(out: &mut String, data: &ReportData) {
    let counts = &data.run.counts;
    out.push_str("<section id=\"outcomes\">\n<h2>Outcome</h2>\n<div class=\"cards\">\n");
    let card = |out: &mut String, id: &str, class: &str, label: &str, n: u64| {
        let _ = writeln!(
            out,
            "<div class=\"card {class}{}\" id=\"count-{id}\" data-count=\"{n}\"><span class=\"n\">{n}</span><span class=\"l\">{label}</span></div>",
            if n == 0 { " zero" } else { "" }
        );
    };
    card(out, "rows", "card-total", "Rows", counts.rows);
    for (outcome, label) in OUTCOMES {
        let n = match outcome {
            "applied" => counts.applied,
            "noop" => counts.noop,
            "failed" => counts.failed,
            "in_doubt" => counts.in_doubt,
            "skipped" => counts.skipped,
            "conflict" => counts.conflict,
            _ => counts.pending,
        };
        card(out, outcome, &format!("card-{outcome}"), label, n);
    }
    card(
        out,
        "requests",
        "card-requests",
        "Requests",
        counts.requests,
    );
    out.push_str("</div>\n</section>\n");
}

/// The run's recorded facts, one per line.
fn details(out: &mut String, data: &ReportData) {
    let run = &data.run;
    let plain_http = run.server_url.starts_with("http://");
    let tls = if data.insecure {
        "<span class=\"bad\" id=\"tls-verify\">OFF: --insecure, any certificate accepted</span>"
            .to_string()
    } else if plain_http {
        "<span id=\"tls-verify\">none: plain HTTP</span>".to_string()
    } else if run.tls_verify {
        "<span class=\"good\" id=\"tls-verify\">verified</span>".to_string()
    } else {
        "<span class=\"bad\" id=\"tls-verify\">not verified</span>".to_string()
    };
    let none = "<span class=\"none\">none</span>";
    let opt = |v: &Option<String>, code: bool| match v {
        Some(v) if code => format!("<code>{}</code>", escape(v)),
        Some(v) => escape(v).into_owned(),
        None => none.to_string(),
    };
    let took = took(run).unwrap_or_else(|| none.to_string());
    let server: Vec<(&str, String)> = vec![
        ("Kind", escape(&run.kind).into_owned()),
        (
            "Parent run",
            run.parent_run_id
                .map_or_else(|| none.to_string(), |p| p.to_string()),
        ),
        ("Status", escape(&run.status).into_owned()),
        ("Operator", escape(&run.operator).into_owned()),
        (
            "Server",
            format!("<code>{}</code>", escape(&run.server_url)),
        ),
        ("Wire format", escape(&run.wire).into_owned()),
        ("TLS verification", tls),
        ("Tool version", escape(&run.tool_version).into_owned()),
    ];
    let plan: Vec<(&str, String)> = vec![
        ("Plan file", opt(&run.plan_file, true)),
        ("Plan SHA-256", opt(&run.plan_sha256, true)),
        ("Started", escape(&when(&run.started_at)).into_owned()),
        (
            "Ended",
            run.ended_at
                .as_deref()
                .map_or_else(|| none.to_string(), |e| escape(&when(e)).into_owned()),
        ),
        ("Duration", took),
        ("Options", options(&data.options)),
    ];
    out.push_str("<section id=\"details\">\n<h2>Run details</h2>\n<div class=\"meta-grid\">\n");
    for facts in [server, plan] {
        out.push_str("<dl class=\"meta\">\n");
        for (label, value) in facts {
            let _ = writeln!(out, "<dt>{label}</dt><dd>{value}</dd>");
        }
        out.push_str("</dl>\n");
    }
    out.push_str("</div>\n</section>\n");
}

/// The run's options: a JSON object as a small table, anything else as recorded.
fn options(json: &str) -> String {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(json) else {
        return format!("<code>{}</code>", escape(json));
    };
    if map.is_empty() {
        return "<span class=\"none\">none</span>".into();
    }
    let mut out = String::from("<table class=\"options\" id=\"options\">");
    for (key, value) in &map {
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "none".into(),
            other => other.to_string(),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"mono\">{}</td></tr>",
            escape(key),
            escape(&text)
        );
    }
    out.push_str("</table>");
    out
}

/// The request totals and the two charts.
fn requests(out: &mut String, data: &ReportData) {
    let samples = data.samples();
    let t = timeline::Timeline::build(&samples, super::data::MAX_BUCKETS);
    out.push_str("<section id=\"requests\">\n<h2>Requests</h2>\n<p class=\"summary\">");
    if data.attempts.is_empty() {
        out.push_str("No HTTP requests were recorded for this run.");
    } else {
        let count = |class| samples.iter().filter(|s| s.class == class).count();
        let mut durations: Vec<f64> = data
            .attempts
            .iter()
            .filter_map(|a| a.duration_ms)
            .filter(|d| d.is_finite())
            .collect();
        durations.sort_by(f64::total_cmp);
        let _ = write!(
            out,
            "<strong>{}</strong> requests ({}) over {}; peak {:.0}/s. \
             {} answered, {} throttled (429/503), {} with an error or no answer.",
            data.attempts.len(),
            match data.retries() {
                1 => "1 retry".to_string(),
                n => format!("{n} retries"),
            },
            duration(t.span_s() as i64 * 1000),
            t.peak_rate(),
            count(timeline::AttemptClass::Ok),
            count(timeline::AttemptClass::Throttled),
            count(timeline::AttemptClass::Error),
        );
        if let (Some(p50), Some(p95), Some(p99), Some(max)) = (
            percentile(&durations, 50.0),
            percentile(&durations, 95.0),
            percentile(&durations, 99.0),
            durations.last(),
        ) {
            let _ = write!(
                out,
                " Latency p50 {}, p95 {}, p99 {}, max {}.",
                latency(p50),
                latency(p95),
                latency(p99),
                latency(*max)
            );
        }
    }
    out.push_str("</p>\n");
    let origin = samples
        .iter()
        .map(|s| s.at_ms)
        .min()
        .and_then(|first| {
            data.attempts
                .iter()
                .find(|a| timeline::parse_ms(&a.started_at) == Some(first))
        })
        .map(|a| {
            format!(
                "<p class=\"axis-note\">Time axis: since the first request, at {}.</p>\n",
                escape(&when(&a.started_at))
            )
        })
        .unwrap_or_default();
    let per = if t.width_s > 1 {
        format!(" (averaged over {} s)", t.width_s)
    } else {
        String::new()
    };
    let _ = write!(
        out,
        "<div class=\"chart-box\"><div class=\"chart-head\"><h3>Requests per second{per}</h3>\
         <div class=\"legend\"><span class=\"k-ok\">answered</span><span class=\"k-throttled\">throttled</span>\
         <span class=\"k-error\">error or no answer</span></div></div>\n{}\n</div>\n\
         <div class=\"chart-box\"><div class=\"chart-head\"><h3>Latency per {}</h3>\
         <div class=\"legend\"><span class=\"k-p50\">p50</span><span class=\"k-p99\">p99</span></div></div>\n{}\n</div>\n{origin}</section>\n",
        svg::requests_chart(&t),
        if t.width_s > 1 {
            format!("{} s", t.width_s)
        } else {
            "second".into()
        },
        svg::latency_chart(&t),
    );
}

/// How long the run took, when it ended and both times parse.
fn took(run: &RunInfo) -> Option<String> {
    let end = timeline::parse_ms(run.ended_at.as_deref()?)?;
    Some(duration(end - timeline::parse_ms(&run.started_at)?))
}

/// An optional text, escaped; nothing when absent.
fn text(v: &Option<String>) -> Cow<'_, str> {
    v.as_deref().map(escape).unwrap_or_default()
}

/// The rows table with its filter bar (shown by the script; without it, every row shows).
fn rows(out: &mut String, rows: &[RowInfo]) {
    out.push_str("<section id=\"rows-section\">\n<h2>Rows</h2>\n");
    // Counted in one pass; the known outcomes first in their usual order, then any other in
    // order of first appearance.
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut others: Vec<&str> = Vec::new();
    for r in rows {
        let n = counts.entry(&r.outcome).or_insert(0);
        if *n == 0 && !OUTCOMES.iter().any(|(o, _)| *o == r.outcome) {
            others.push(&r.outcome);
        }
        *n += 1;
    }
    let outcomes: Vec<(&str, usize)> = OUTCOMES
        .iter()
        .map(|(o, _)| *o)
        .chain(others)
        .filter_map(|o| counts.get(o).map(|&n| (o, n)))
        .collect();
    out.push_str("<div class=\"filters\" id=\"filters\" hidden>\n");
    for (outcome, n) in &outcomes {
        let _ = writeln!(
            out,
            "<label class=\"chip\"><input type=\"checkbox\" value=\"{}\" checked><span class=\"badge b-{}\">{}</span><span class=\"c\">{n}</span></label>",
            escape(outcome),
            outcome_class(outcome),
            escape(outcome_label(outcome))
        );
    }
    out.push_str(
        "<button type=\"button\" id=\"show-all\">All</button>\
         <button type=\"button\" id=\"show-problems\">Problems only</button>\
         <input type=\"search\" id=\"q\" placeholder=\"Filter by any text…\" aria-label=\"Filter rows by text\">\n</div>\n",
    );
    let _ = writeln!(
        out,
        "<p class=\"shown\" id=\"shown\">{} row{}</p>",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    out.push_str(
        "<div class=\"table-wrap\"><table class=\"rows\" id=\"rows\">\n<thead><tr><th>Line</th>\
         <th>Account</th><th>Action</th><th>Target</th><th>Outcome</th><th>Error / note</th>\
         <th>Ticket</th><th>Comment</th></tr></thead>\n<tbody>\n",
    );
    for r in rows {
        let class = outcome_class(&r.outcome);
        let _ = write!(
            out,
            "<tr class=\"o-{class}\" data-outcome=\"{outcome}\"><td class=\"num\">{line}</td><td",
            outcome = escape(&r.outcome),
            line = r.line
        );
        if let Some(id) = &r.account_id {
            let _ = write!(out, " title=\"{}\"", escape(id));
        }
        let _ = write!(
            out,
            ">{}</td><td class=\"action\">{}</td><td class=\"target\">{}",
            escape(&r.account),
            escape(&r.action),
            escape(&r.target)
        );
        if let Some(name) = &r.object_name {
            let _ = write!(out, "<span class=\"sub\">{}</span>", escape(name));
        }
        let _ = writeln!(
            out,
            "</td><td><span class=\"badge b-{class}\">{}</span></td><td class=\"note\">{}</td><td class=\"ticket\">{}</td><td>{}</td></tr>",
            escape(outcome_label(&r.outcome)),
            text(&r.error),
            text(&r.ticket),
            text(&r.comment)
        );
    }
    out.push_str("</tbody>\n</table></div>\n</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::audit::{AttemptInfo, RunCounts};

    const PAYLOAD: &str = "<script>alert(1)</script>";

    fn run() -> RunInfo {
        RunInfo {
            run_id: 7,
            kind: "apply".into(),
            parent_run_id: None,
            status: "failed".into(),
            started_at: "2026-11-23T10:21:03.123Z".into(),
            ended_at: Some("2026-11-23T10:21:05.623Z".into()),
            operator: "TECH\\ops".into(),
            server_url: "https://em.example.com:9398/api".into(),
            wire: "xml".into(),
            tls_verify: true,
            plan_file: Some("plan<1>.csv".into()),
            plan_sha256: Some("ab".repeat(32)),
            tool_version: "0.1.0".into(),
            counts: RunCounts {
                rows: 2,
                applied: 1,
                noop: 0,
                failed: 1,
                skipped: 0,
                in_doubt: 0,
                conflict: 0,
                pending: 0,
                requests: 3,
            },
        }
    }

    fn row(outcome: &str, comment: &str) -> RowInfo {
        RowInfo {
            row_no: 0,
            line: 2,
            account: "TECH\\\"quoted\" & <b>".into(),
            account_id: Some("\"><img src=x>".into()),
            action: "assign-role".into(),
            target: "Portal User".into(),
            object_name: Some("O'Brien's <scope>".into()),
            outcome: outcome.into(),
            error: Some(format!("EM refused: {PAYLOAD}")),
            ticket: Some("CHG-1".into()),
            comment: Some(comment.into()),
            finished_at: None,
        }
    }

    fn attempt(at: &str, status: i64, attempt: u32) -> AttemptInfo {
        AttemptInfo {
            attempt,
            status: Some(status),
            error: None,
            started_at: at.into(),
            duration_ms: Some(12.5),
        }
    }

    fn data() -> ReportData {
        ReportData {
            run: run(),
            insecure: false,
            options: r#"{"rate":10,"wire":"xml","max_failures":null,"x<y":"<z>"}"#.into(),
            rows: vec![row("applied", "fine"), row("failed", PAYLOAD)],
            attempts: vec![
                attempt("2026-11-23T10:21:03.500Z", 200, 1),
                attempt("2026-11-23T10:21:03.900Z", 503, 1),
                attempt("2026-11-23T10:21:05.100Z", 201, 2),
            ],
        }
    }

    /// The page without its stylesheet and script, which are ours: what remains is markup
    /// built around the log's text.
    fn markup(page: &str) -> String {
        let without_style = page.replace(CSS, "");
        without_style.replace(JS, "")
    }

    #[test]
    fn escapes_every_character_that_could_open_markup() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&amp;</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
        assert!(matches!(
            escape("TECH\\alice"),
            Cow::Borrowed("TECH\\alice")
        ));
        assert_eq!(escape("Zoë ✓"), "Zoë ✓");
        assert_eq!(escape(""), "");
    }

    #[test]
    fn no_text_from_the_log_becomes_markup() {
        let page = render(&data(), "2026-11-23 10:30:00 UTC");
        let m = markup(&page);
        assert!(!page.contains(PAYLOAD), "the payload is escaped");
        assert!(m.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert_eq!(
            page.matches("<script").count(),
            1,
            "only the page's own script"
        );
        assert!(!m.contains("<img"), "{m}");
        assert!(!m.contains("<b>"));
        assert!(m.contains("title=\"&quot;&gt;&lt;img src=x&gt;\""));
        assert!(m.contains("TECH\\&quot;quoted&quot; &amp; &lt;b&gt;"));
        assert!(m.contains("O&#39;Brien&#39;s &lt;scope&gt;"));
        assert!(m.contains("<code>plan&lt;1&gt;.csv</code>"));
        assert!(m.contains("<td>x&lt;y</td><td class=\"mono\">&lt;z&gt;</td>"));
    }

    #[test]
    fn the_page_is_self_contained() {
        let page = render(&data(), "now");
        let m = markup(&page);
        for external in ["<link", " src=\"", "href=\"http", "@import", "url("] {
            assert!(!page.contains(external), "{external}");
        }
        assert!(
            !m.contains("http://"),
            "no reference but the server's URL in text"
        );
        // The policy allows exactly the inline stylesheet and script, by hash.
        assert!(page.contains(&format!("style-src {};", csp_hash(CSS))));
        assert!(page.contains(&format!("script-src {};", csp_hash(JS))));
        assert!(page.contains("default-src 'none'"));
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.trim_end().ends_with("</html>"));
    }

    #[test]
    fn shows_the_counts_the_metadata_and_the_charts() {
        let page = render(&data(), "2026-11-23 10:30:00 UTC");
        for (id, n) in [
            ("rows", 2),
            ("applied", 1),
            ("failed", 1),
            ("noop", 0),
            ("requests", 3),
        ] {
            assert!(
                page.contains(&format!("id=\"count-{id}\" data-count=\"{n}\"")),
                "{id}"
            );
        }
        assert!(page.contains("took 2.5 s"));
        assert!(page.contains("<span class=\"good\" id=\"tls-verify\">verified</span>"));
        assert!(!page.contains("id=\"insecure\""));
        assert!(page.contains(&"ab".repeat(32)));
        assert!(page.contains("2026-11-23 10:21:03.123 UTC"));
        assert!(page.contains("<svg id=\"chart-requests\""));
        assert!(page.contains("data-requests=\"3\""));
        assert!(page.contains("<svg id=\"chart-latency\""));
        assert!(page.contains("<strong>3</strong> requests (1 retry) over 3.0 s; peak 2/s."));
        assert!(page.contains("1 throttled (429/503)"));
        assert_eq!(page.matches("<tr class=\"o-").count(), 2);
        assert!(page.contains("<tr class=\"o-failed\" data-outcome=\"failed\">"));
        // The filter offers the outcomes present, hidden until the script shows it.
        assert!(page.contains("<div class=\"filters\" id=\"filters\" hidden>"));
        assert_eq!(page.matches("type=\"checkbox\"").count(), 2);
    }

    #[test]
    fn an_insecure_run_says_so_prominently() {
        let mut d = data();
        d.insecure = true;
        d.run.tls_verify = false;
        let page = render(&d, "now");
        let alert = page.find("id=\"insecure\"").expect("the alert");
        assert!(
            alert < page.find("id=\"outcomes\"").unwrap(),
            "above everything else"
        );
        assert!(page.contains("TLS certificate verification was OFF"));
        assert!(page.contains("OFF: --insecure"));
    }

    #[test]
    fn plain_http_to_another_machine_is_warned_about() {
        let mut d = data();
        d.run.server_url = "http://em.example.com:9399/api".into();
        assert!(render(&d, "now").contains("id=\"plain-http\""));
        d.run.server_url = "http://127.0.0.1:9399/api".into();
        let page = render(&d, "now");
        assert!(!page.contains("id=\"plain-http\""));
        assert!(page.contains("none: plain HTTP"));
    }

    #[test]
    fn a_run_without_requests_or_rows_still_renders() {
        let mut d = data();
        d.rows.clear();
        d.attempts.clear();
        d.run.ended_at = None;
        d.run.status = "crashed".into();
        let page = render(&d, "now");
        assert!(page.contains("No HTTP requests were recorded"));
        assert!(page.contains("No requests were recorded for this run."));
        assert!(page.contains("<p class=\"shown\" id=\"shown\">0 rows</p>"));
        assert!(page.contains("embatch resume 7"));
        assert!(page.contains("status-crashed"));
    }

    #[test]
    fn durations_and_outcome_classes() {
        assert_eq!(duration(400), "0.4 s");
        assert_eq!(duration(12_345), "12.3 s");
        assert_eq!(duration(245_000), "4 min 05 s");
        assert_eq!(duration(7_380_000), "2 h 03 min");
        assert_eq!(outcome_class("in_doubt"), "in_doubt");
        assert_eq!(outcome_class("x\" onclick"), "other");
        assert_eq!(outcome_label("noop"), "No-op");
        assert_eq!(
            when("2026-11-23T10:21:03.123Z"),
            "2026-11-23 10:21:03.123 UTC"
        );
        assert_eq!(when("not a time"), "not a time");
    }
}
