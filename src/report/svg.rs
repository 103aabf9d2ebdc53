//! The report's two charts as inline SVG: requests per second (stacked by kind of answer) and
//! latency (p50 and p99 per bucket), drawn from a [`Timeline`] on one shared time axis.
//!
//! The SVG carries no style of its own beyond class names, so the page's stylesheet decides
//! the colours, and no text from the audit log: only numbers and times this module formats.

use std::fmt::Write as _;

use super::timeline::{Bucket, Timeline};

/// The drawing's size in SVG units; the page scales it to its width.
const WIDTH: f64 = 960.0;
/// The drawing's height.
const HEIGHT: f64 = 220.0;
/// Room for the value labels left of the plot.
const LEFT: f64 = 60.0;
/// A margin right of the plot, so the last time label is not cut.
const RIGHT: f64 = 20.0;
/// A margin above the plot, so the top value label is not cut.
const TOP: f64 = 12.0;
/// Room for the time labels under the plot.
const BOTTOM: f64 = 28.0;
/// The widest a bar gets, so a run of a few seconds shows bars, not blocks.
const MAX_BAR: f64 = 36.0;
/// Up to this many buckets, each latency value is also drawn as a dot.
const DOTS_UP_TO: usize = 90;

/// Round steps for the time axis, in seconds.
const TIME_STEPS: [u64; 17] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
];

/// The plot area and the scales of one chart.
struct Frame {
    span_s: f64,
    y_max: f64,
    /// The seconds one bucket covers.
    bucket_s: f64,
    /// The plot width one bucket takes.
    slot: f64,
}

impl Frame {
    /// The frame of a chart of `t` whose values reach `peak`, shown with `unit`, with its axes
    /// drawn into `out`. Both charts share it, so their time axes line up on the page.
    fn draw(out: &mut String, t: &Timeline, peak: f64, unit: &str) -> Frame {
        let y_ticks = value_ticks(peak, 4);
        let frame = Frame {
            span_s: t.span_s() as f64,
            y_max: *y_ticks
                .last()
                .expect("value_ticks always returns two ticks or more"),
            bucket_s: t.width_s as f64,
            slot: Frame::plot_width() / t.buckets.len() as f64,
        };
        axes(out, &frame, &y_ticks, unit);
        frame
    }

    fn plot_width() -> f64 {
        WIDTH - LEFT - RIGHT
    }

    fn plot_height() -> f64 {
        HEIGHT - TOP - BOTTOM
    }

    /// The x coordinate of `secs` after the origin.
    fn x(&self, secs: f64) -> f64 {
        LEFT + secs / self.span_s * Frame::plot_width()
    }

    /// The y coordinate of `value`.
    fn y(&self, value: f64) -> f64 {
        TOP + Frame::plot_height() * (1.0 - value / self.y_max)
    }
}

/// The chart of requests per second: one bar per bucket, stacked ok / throttled / error.
///
/// The `svg` element carries `data-buckets` and `data-requests`, the number of buckets and of
/// attempts it shows, for tests and tools that read the page.
pub fn requests_chart(t: &Timeline) -> String {
    let mut out = open_svg(
        "chart-requests",
        "Requests per second",
        &format!(
            "data-buckets=\"{}\" data-requests=\"{}\"",
            t.buckets.len(),
            t.requests()
        ),
    );
    if t.buckets.is_empty() {
        return empty(out);
    }
    let frame = Frame::draw(&mut out, t, t.peak_rate(), "/s");
    let (width, slot) = (frame.bucket_s, frame.slot);
    // A gap between bars only where there is room for one; dense charts are a solid area.
    let bar = if slot >= 4.0 { slot - 1.0 } else { slot }.min(MAX_BAR);
    let inset = (slot - bar) / 2.0;
    for (i, b) in t.buckets.iter().enumerate() {
        if b.requests() == 0 {
            continue;
        }
        let x = frame.x(i as f64 * width) + inset;
        let _ = write!(out, "<g><title>{}</title>", bucket_label(t, i, b));
        let mut base = 0.0;
        for (count, class) in [
            (b.ok, "bar-ok"),
            (b.throttled, "bar-throttled"),
            (b.error, "bar-error"),
        ] {
            if count == 0 {
                continue;
            }
            let top = base + count as f64 / width;
            let (y0, y1) = (frame.y(top), frame.y(base));
            let _ = write!(
                out,
                "<rect class=\"{class}\" x=\"{x:.2}\" y=\"{y0:.2}\" width=\"{bar:.2}\" height=\"{:.2}\"/>",
                y1 - y0
            );
            base = top;
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    out
}

/// The chart of latency: the p50 and p99 of each bucket's completed attempts, as two lines
/// broken where a bucket has none.
///
/// The `svg` element carries `data-points`, the number of buckets with a latency.
pub fn latency_chart(t: &Timeline) -> String {
    let points: Vec<(usize, f64, f64)> = t
        .buckets
        .iter()
        .enumerate()
        .filter_map(|(i, b)| Some((i, b.p50_ms?, b.p99_ms?)))
        .collect();
    let mut out = open_svg(
        "chart-latency",
        "Latency per second, p50 and p99, in milliseconds",
        &format!("data-points=\"{}\"", points.len()),
    );
    if points.is_empty() {
        return empty(out);
    }
    let max = points.iter().map(|p| p.2).fold(0.0, f64::max);
    let frame = Frame::draw(&mut out, t, max, " ms");
    let (width, slot) = (frame.bucket_s, frame.slot);
    let centre = |i: usize| frame.x((i as f64 + 0.5) * width);

    // Transparent columns under the lines carry the tooltips, so they work on any bucket.
    for &(i, p50, p99) in &points {
        let _ = write!(
            out,
            "<rect class=\"hit\" x=\"{:.2}\" y=\"{TOP}\" width=\"{slot:.2}\" height=\"{:.2}\"><title>{}: p50 {} ms, p99 {} ms</title></rect>",
            frame.x(i as f64 * width),
            Frame::plot_height(),
            span_label(t, i),
            ms(p50),
            ms(p99)
        );
    }
    for (class, pick) in [
        (
            "line-p99",
            (|p: &(usize, f64, f64)| p.2) as fn(&(usize, f64, f64)) -> f64,
        ),
        ("line-p50", |p| p.1),
    ] {
        let mut path = String::new();
        let mut previous: Option<usize> = None;
        let mut alone = Vec::new();
        for (n, p) in points.iter().enumerate() {
            let joined = previous.is_some_and(|prev| prev + 1 == p.0);
            let _ = write!(
                path,
                "{}{:.2} {:.2} ",
                if joined { "L" } else { "M" },
                centre(p.0),
                frame.y(pick(p))
            );
            let next_joined = points.get(n + 1).is_some_and(|q| q.0 == p.0 + 1);
            if !joined && !next_joined {
                alone.push(p);
            }
            previous = Some(p.0);
        }
        let _ = write!(out, "<path class=\"{class}\" d=\"{}\"/>", path.trim_end());
        // A lone point draws no line, and a few points read better as dots.
        let dots: Vec<&(usize, f64, f64)> = if t.buckets.len() <= DOTS_UP_TO {
            points.iter().collect()
        } else {
            alone
        };
        for p in dots {
            let _ = write!(
                out,
                "<circle class=\"{class} dot\" cx=\"{:.2}\" cy=\"{:.2}\" r=\"2.5\"/>",
                centre(p.0),
                frame.y(pick(p))
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// The opening tag and accessible title of a chart.
fn open_svg(id: &str, title: &str, data: &str) -> String {
    format!(
        "<svg id=\"{id}\" class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-labelledby=\"{id}-title\" preserveAspectRatio=\"xMidYMid meet\" {data}>\
         <title id=\"{id}-title\">{title}</title>"
    )
}

/// Closes a chart that has nothing to show, with a note saying so.
fn empty(mut out: String) -> String {
    let _ = write!(
        out,
        "<text class=\"empty\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">No requests were recorded for this run.</text></svg>",
        WIDTH / 2.0,
        HEIGHT / 2.0
    );
    out
}

/// Grid lines and value labels for `y_ticks`, the time axis and its labels.
fn axes(out: &mut String, frame: &Frame, y_ticks: &[f64], unit: &str) {
    let step = y_ticks.get(1).copied().unwrap_or(1.0);
    for &v in y_ticks {
        let y = frame.y(v);
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.2}\" y1=\"{y:.2}\" y2=\"{y:.2}\"/>\
             <text class=\"tick\" x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"end\">{}{unit}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            number(v, step)
        );
    }
    let base = frame.y(0.0);
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{:.2}\" y1=\"{base:.2}\" y2=\"{base:.2}\"/>",
        WIDTH - RIGHT
    );
    for secs in time_ticks(frame.span_s as u64, 8) {
        let x = frame.x(secs as f64);
        let _ = write!(
            out,
            "<line class=\"axis\" x1=\"{x:.2}\" x2=\"{x:.2}\" y1=\"{base:.2}\" y2=\"{:.2}\"/>\
             <text class=\"tick\" x=\"{x:.2}\" y=\"{:.2}\" text-anchor=\"middle\">{}</text>",
            base + 4.0,
            base + 17.0,
            clock(secs, frame.span_s as u64)
        );
    }
}

/// Evenly spaced round values from 0 to at least `max`, about `target` steps: 1, 2 or 5 times
/// a power of ten. Always two values or more, so a chart of zeros still has a scale.
pub(crate) fn value_ticks(max: f64, target: usize) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = match raw / magnitude {
        n if n <= 1.0 => 1.0,
        n if n <= 2.0 => 2.0,
        n if n <= 5.0 => 5.0,
        _ => 10.0,
    } * magnitude;
    let steps = ((max / step) - 1e-9).ceil().max(1.0) as usize;
    (0..=steps).map(|i| i as f64 * step).collect()
}

/// Round times from 0 to `span_s` for the time axis, at most `target` steps apart.
pub(crate) fn time_ticks(span_s: u64, target: u64) -> Vec<u64> {
    let step = TIME_STEPS
        .iter()
        .copied()
        .find(|s| span_s / s <= target)
        .unwrap_or_else(|| span_s.div_ceil(target).max(1));
    (0..=span_s / step).map(|i| i * step).collect()
}

/// `secs` after the origin as the time axis labels it: seconds for a short chart, m:ss up to
/// an hour, h:mm:ss beyond.
pub(crate) fn clock(secs: u64, span_s: u64) -> String {
    if span_s < 60 {
        format!("{secs} s")
    } else if span_s < 3600 {
        format!("{}:{:02}", secs / 60, secs % 60)
    } else {
        format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    }
}

/// `v` with as many decimals as the tick step needs.
fn number(v: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{v:.0}")
    } else {
        let decimals = (-step.log10()).ceil() as usize;
        format!("{v:.decimals$}")
    }
}

/// A latency for a tooltip: whole milliseconds, or one decimal below 10 ms.
fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// The time range of bucket `i`, e.g. `0:12–0:13`.
fn span_label(t: &Timeline, i: usize) -> String {
    let span = t.span_s();
    let start = i as u64 * t.width_s;
    format!("{}–{}", clock(start, span), clock(start + t.width_s, span))
}

/// The tooltip of a bar: its time range and its counts.
fn bucket_label(t: &Timeline, i: usize, b: &Bucket) -> String {
    let mut text = format!(
        "{}: {} request{}",
        span_label(t, i),
        b.requests(),
        if b.requests() == 1 { "" } else { "s" }
    );
    if t.width_s > 1 {
        let _ = write!(text, " ({:.1}/s)", b.requests() as f64 / t.width_s as f64);
    }
    let _ = write!(text, ", {} ok", b.ok);
    if b.throttled > 0 {
        let _ = write!(text, ", {} throttled", b.throttled);
    }
    if b.error > 0 {
        let _ = write!(text, ", {} error", b.error);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::timeline::{AttemptClass, Sample};

    const T0: i64 = 1_795_000_000_000;

    fn sample(at_s: f64, ms: Option<f64>, class: AttemptClass) -> Sample {
        Sample {
            at_ms: T0 + (at_s * 1000.0) as i64,
            duration_ms: ms,
            class,
        }
    }

    /// Two busy seconds, an idle one, and a second with a throttled and an unfinished attempt.
    fn timeline() -> Timeline {
        let mut s = Vec::new();
        for i in 0..8 {
            s.push(sample(
                0.1 * i as f64,
                Some(10.0 + i as f64),
                AttemptClass::Ok,
            ));
        }
        for i in 0..4 {
            s.push(sample(1.0 + 0.2 * i as f64, Some(40.0), AttemptClass::Ok));
        }
        s.push(sample(3.2, Some(5.0), AttemptClass::Throttled));
        s.push(sample(3.4, None, AttemptClass::Error));
        Timeline::build(&s, 600)
    }

    fn count(svg: &str, needle: &str) -> usize {
        svg.matches(needle).count()
    }

    #[test]
    fn the_requests_chart_stacks_one_bar_per_busy_bucket() {
        let svg = requests_chart(&timeline());
        assert!(svg.starts_with("<svg id=\"chart-requests\""), "{svg}");
        assert!(svg.ends_with("</svg>"));
        assert!(svg.contains("data-buckets=\"4\" data-requests=\"14\""));
        // Seconds 0 and 1 are all ok; second 3 has a throttled and an error segment.
        assert_eq!(count(&svg, "class=\"bar-ok\""), 2);
        assert_eq!(count(&svg, "class=\"bar-throttled\""), 1);
        assert_eq!(count(&svg, "class=\"bar-error\""), 1);
        assert_eq!(
            count(&svg, "<title"),
            1 + 3,
            "a title for the chart and each bar"
        );
        assert!(
            svg.contains("<title>0 s–1 s: 8 requests, 8 ok</title>"),
            "{svg}"
        );
        assert!(svg.contains("3 s–4 s: 2 requests, 0 ok, 1 throttled, 1 error"));
        // The peak of 8/s is the top of the scale.
        assert!(
            svg.contains(">8/s</text>") && !svg.contains(">10/s<"),
            "{svg}"
        );
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn the_tallest_bar_reaches_its_value_on_the_scale() {
        let svg = requests_chart(&timeline());
        // 8 requests on a 0..8 scale fill the plot; the 4 of the next second fill half of it.
        for share in [1.0, 0.5] {
            let height = format!("height=\"{:.2}\"", Frame::plot_height() * share);
            assert!(svg.contains(&height), "{height} in {svg}");
        }
    }

    #[test]
    fn the_latency_chart_draws_p50_and_p99_broken_at_idle_seconds() {
        let svg = latency_chart(&timeline());
        assert!(svg.starts_with("<svg id=\"chart-latency\""));
        assert!(svg.contains("data-points=\"3\""), "{svg}");
        let paths: Vec<&str> = svg
            .split("<path ")
            .skip(1)
            .map(|p| p.split("/>").next().unwrap())
            .collect();
        assert_eq!(paths.len(), 2);
        for p in &paths {
            // Seconds 0 and 1 joined, a new move for second 3 after the idle second 2.
            assert_eq!(p.matches('M').count(), 2, "{p}");
            assert_eq!(p.matches('L').count(), 1, "{p}");
        }
        assert!(paths[0].starts_with("class=\"line-p99\""));
        assert!(paths[1].starts_with("class=\"line-p50\""));
        // Few buckets: every point is also a dot, for both lines.
        assert_eq!(count(&svg, "<circle"), 6);
        assert!(svg.contains("0 s–1 s: p50 13 ms, p99 17 ms"), "{svg}");
        assert!(svg.contains("3 s–4 s: p50 5.0 ms, p99 5.0 ms"), "{svg}");
    }

    #[test]
    fn an_empty_timeline_says_so() {
        let t = Timeline::build(&[], 600);
        for svg in [requests_chart(&t), latency_chart(&t)] {
            assert!(svg.contains("No requests were recorded"), "{svg}");
            assert!(!svg.contains("<rect") && !svg.contains("<path"));
        }
    }

    #[test]
    fn value_ticks_are_round_and_cover_the_maximum() {
        assert_eq!(value_ticks(8.0, 4), [0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(value_ticks(9.0, 4), [0.0, 5.0, 10.0]);
        assert_eq!(value_ticks(170.0, 4), [0.0, 50.0, 100.0, 150.0, 200.0]);
        assert_eq!(value_ticks(0.0, 4), [0.0, 0.5, 1.0]);
        assert_eq!(value_ticks(f64::NAN, 4), [0.0, 0.5, 1.0]);
        let small = value_ticks(0.3, 4);
        assert_eq!(small.len(), 4);
        assert!((small[3] - 0.3).abs() < 1e-9, "{small:?}");
        assert_eq!(number(small[1], small[1]), "0.1");
    }

    #[test]
    fn time_ticks_and_their_labels() {
        assert_eq!(time_ticks(4, 8), [0, 1, 2, 3, 4]);
        assert_eq!(time_ticks(45, 8), [0, 10, 20, 30, 40]);
        assert_eq!(time_ticks(600, 8), [0, 120, 240, 360, 480, 600]);
        assert_eq!(clock(7, 45), "7 s");
        assert_eq!(clock(125, 600), "2:05");
        assert_eq!(clock(3725, 7200), "1:02:05");
    }
}
