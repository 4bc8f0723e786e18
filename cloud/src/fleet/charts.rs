//! The fleet page's charts, drawn on the server as inline SVG (no script, nothing to build):
//! a device's day as sparklines, a share bar (the fleet's versions), a rollout's waves, and the
//! fleet's week online and offline.
//!
//! Invariants:
//! - pure functions: figures in, maud markup out; nothing here reads a clock or the database;
//! - every chart carries its figures as text (a caption with the last, lowest and highest value, a
//!   legend, or a table): the SVG is for eyes, the text for screen readers and for copying;
//! - bounded output whatever the input: at most [`SPARK_BUCKETS`] buckets a sparkline,
//!   [`SHARE_PARTS`] parts a share bar, [`MAX_WAVES`] waves, [`WEEK_HOURS`] columns a week;
//! - figures come in as integers (what PostgreSQL stores) and are scaled in `f64`, so no NaN or
//!   infinity can reach a coordinate; every number is written by maud, which escapes it.

use maud::{Markup, html};

use super::rollout::WaveCount;

/// A sparkline's buckets over its window: ten minutes over a day.
pub const SPARK_BUCKETS: usize = 144;
/// A share bar's parts: the largest ones, then one "other" for the rest.
pub const SHARE_PARTS: usize = 6;
/// A rollout's waves drawn (the canaries and up to 100 percentages).
pub const MAX_WAVES: usize = 101;
/// The week's columns, one an hour.
pub const WEEK_HOURS: usize = 7 * 24;

const SPARK_WIDTH: f64 = 300.0;
const SPARK_HEIGHT: f64 = 48.0;
const SPARK_PAD: f64 = 3.0;
const WEEK_HEIGHT: f64 = 60.0;

/// Colours for shapes on white, each at least 3:1 against it (WCAG's contrast for graphics) and
/// told apart from its neighbours.
pub const PALETTE: [&str; 7] = [
    "#1450a3", "#1e7b34", "#8a4b00", "#6f3fa0", "#a3123a", "#00667a", "#4d5566",
];
pub const GOOD: &str = "#1e7b34";
pub const BAD: &str = "#b3261e";
pub const BUSY: &str = "#1450a3";
pub const WAITING: &str = "#c4cad4";

/// How a sparkline's figures read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Secs,
    Millis,
    Bytes,
}

impl Unit {
    pub fn format(self, value: i64) -> String {
        match self {
            Unit::Count => value.to_string(),
            Unit::Secs if value < 0 => format!("{value} s"),
            Unit::Secs => super::human(value),
            Unit::Millis => format!("{value} ms"),
            Unit::Bytes => {
                const MIB: f64 = 1024.0 * 1024.0;
                let mib = value as f64 / MIB;
                if mib.abs() >= 1024.0 {
                    format!("{:.1} GiB", mib / 1024.0)
                } else {
                    format!("{mib:.0} MiB")
                }
            }
        }
    }
}

/// A coordinate with one decimal: short, and always a plain number.
fn coord(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.1}")
    } else {
        "0".to_owned()
    }
}

/// Where a value sits between `lo` and `hi` (0 at `lo`, 1 at `hi`).
fn share(value: i64, lo: i64, hi: i64) -> f64 {
    let span = hi as f64 - lo as f64;
    if span > 0.0 {
        ((value as f64 - lo as f64) / span).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// One bucket of a sparkline: its lowest and highest value, in the order they came.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    first: i64,
    second: i64,
    low: i64,
    high: i64,
}

/// A sparkline of `points` (unix seconds, value) over `window` (unix seconds, start and end),
/// captioned with its last, lowest and highest value; `id` names the caption (unique on the
/// page). Points outside the window are left out; a bucket with no point breaks the line (the
/// device was quiet). Each bucket draws its lowest and highest value, so a spike survives.
pub fn sparkline(
    id: &str,
    title: &str,
    unit: Unit,
    window: (i64, i64),
    points: &[(i64, i64)],
) -> Markup {
    let (start, end) = (window.0, window.1.max(window.0));
    let span = end.saturating_sub(start).max(1);
    let mut buckets: Vec<Option<Bucket>> = vec![None; SPARK_BUCKETS];
    let mut last = None;
    let (mut lowest, mut highest) = (i64::MAX, i64::MIN);
    for &(at, value) in points {
        if at < start || at > end {
            continue;
        }
        let index = (share(at, start, start.saturating_add(span)) * SPARK_BUCKETS as f64) as usize;
        let index = index.min(SPARK_BUCKETS - 1);
        let bucket = buckets[index].get_or_insert(Bucket {
            first: value,
            second: value,
            low: value,
            high: value,
        });
        if value < bucket.low || value > bucket.high {
            bucket.low = bucket.low.min(value);
            bucket.high = bucket.high.max(value);
            // The extremes in the order they came: the earlier one first.
            bucket.first = if value == bucket.low {
                bucket.high
            } else {
                bucket.low
            };
            bucket.second = value;
        }
        if last.is_none_or(|(when, _)| at >= when) {
            last = Some((at, value));
        }
        lowest = lowest.min(value);
        highest = highest.max(value);
    }
    let caption = match last {
        None => format!("{title}: no figures in the last 24 hours"),
        Some((_, value)) => format!(
            "{title}: now {}, lowest {}, highest {}",
            unit.format(value),
            unit.format(lowest),
            unit.format(highest)
        ),
    };
    // Zero is always on the scale: a chart of 1000 to 1001 does not look like a cliff.
    let lo = lowest.min(0);
    let hi = highest.max(0).max(lo.saturating_add(1));
    let y = |value: i64| {
        SPARK_HEIGHT - SPARK_PAD - share(value, lo, hi) * (SPARK_HEIGHT - 2.0 * SPARK_PAD)
    };
    let step = SPARK_WIDTH / SPARK_BUCKETS as f64;
    let mut path = String::new();
    let mut drawing = false;
    for (index, bucket) in buckets.iter().enumerate() {
        let Some(bucket) = bucket else {
            drawing = false;
            continue;
        };
        let x = (index as f64 + 0.5) * step;
        let command = if drawing { 'L' } else { 'M' };
        path.push_str(&format!(
            "{command}{} {}L{} {}",
            coord(x),
            coord(y(bucket.first)),
            coord(x + 0.01),
            coord(y(bucket.second))
        ));
        let lone = !drawing && buckets.get(index + 1).is_none_or(Option::is_none);
        if lone {
            // A bucket alone: a dot wide enough to see.
            path.push_str("h1.5");
        }
        drawing = true;
    }
    // Zero: a dashed line when the figures go below it, else the chart's floor.
    let zero = coord(y(0));
    let dash = if lo < 0 { "3 3" } else { "none" };
    html! {
        figure.spark {
            svg role="img" aria-labelledby=(id) viewBox={ "0 0 " (SPARK_WIDTH) " " (SPARK_HEIGHT) }
                preserveAspectRatio="none" width="100%" height=(SPARK_HEIGHT) {
                line x1="0" x2=(SPARK_WIDTH) y1=(zero) y2=(zero) stroke="#8a94a6"
                    stroke-dasharray=(dash) vector-effect="non-scaling-stroke" {}
                @if !path.is_empty() {
                    path d=(path) fill="none" stroke=(PALETTE[0]) stroke-width="1.5"
                        stroke-linecap="round" stroke-linejoin="round"
                        vector-effect="non-scaling-stroke" {}
                }
            }
            figcaption id=(id) { (caption) }
        }
    }
}

/// The parts of a whole, largest first, at most [`SHARE_PARTS`] (the rest as one "other").
fn top_parts(parts: &[(String, usize)]) -> Vec<(String, usize)> {
    let mut sorted: Vec<&(String, usize)> = parts.iter().filter(|(_, n)| *n > 0).collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if sorted.len() <= SHARE_PARTS {
        return sorted.into_iter().cloned().collect();
    }
    let (shown, rest) = sorted.split_at(SHARE_PARTS - 1);
    let mut out: Vec<(String, usize)> = shown.iter().map(|part| (*part).clone()).collect();
    let others = rest
        .iter()
        .fold(0_usize, |sum, (_, n)| sum.saturating_add(*n));
    out.push((format!("{} others", rest.len()), others));
    out
}

/// A whole split in parts (the fleet by version) as one bar, with a legend that says each
/// part's count and share; `id` names the legend (unique on the page).
pub fn share_bar(id: &str, title: &str, parts: &[(String, usize)]) -> Markup {
    let parts = top_parts(parts);
    let total = parts
        .iter()
        .fold(0_usize, |sum, (_, n)| sum.saturating_add(*n));
    let pct = |n: usize| {
        if total == 0 {
            0
        } else {
            (n as f64 * 100.0 / total as f64).round() as u64
        }
    };
    let mut x = 0.0;
    let mut rects = Vec::new();
    for (index, (_, n)) in parts.iter().enumerate() {
        let width = if total == 0 {
            0.0
        } else {
            *n as f64 * 1000.0 / total as f64
        };
        rects.push((coord(x), coord(width), PALETTE[index % PALETTE.len()]));
        x += width;
    }
    html! {
        figure.share {
            svg role="img" aria-labelledby=(id) viewBox="0 0 1000 20" preserveAspectRatio="none"
                width="100%" height="20" {
                rect width="1000" height="20" fill=(WAITING) {}
                @for (x, width, colour) in &rects {
                    rect x=(x) width=(width) height="20" fill=(colour) {}
                }
            }
            figcaption id=(id) {
                span.sr { (title) ": " }
                @if parts.is_empty() { "none yet" }
                ul.legend {
                    @for (index, (label, n)) in parts.iter().enumerate() {
                        li {
                            span.swatch style={ "background:" (PALETTE[index % PALETTE.len()]) } {}
                            b { (label) } " " (n) " (" (pct(*n)) " %)"
                        }
                    }
                }
            }
        }
    }
}

/// A wave's name: the canaries, or its number and percentage.
fn wave_label(wave: i32, percentages: &[i32]) -> String {
    if wave == 0 {
        return "canaries".to_owned();
    }
    let share = usize::try_from(wave - 1)
        .ok()
        .and_then(|index| percentages.get(index));
    match share {
        Some(share) => format!("wave {wave} ({share} %)"),
        None => format!("wave {wave}"),
    }
}

/// A rollout's waves as a table: each wave's devices succeeded, failed, in progress and waiting,
/// as numbers and as a bar; `current` is the wave it has reached.
pub fn waves_chart(waves: &[WaveCount], percentages: &[i32], current: i32) -> Markup {
    let segments = |w: &WaveCount| {
        let whole = w.devices.max(1) as f64;
        let mut x = 0.0;
        let mut out = Vec::new();
        for (n, colour) in [
            (w.succeeded, GOOD),
            (w.failed, BAD),
            (w.busy, BUSY),
            (w.pending, WAITING),
        ] {
            let width = n.max(0) as f64 * 100.0 / whole;
            out.push((coord(x), coord(width.min(100.0)), colour));
            x = (x + width).min(100.0);
        }
        out
    };
    html! {
        div.scroll tabindex="0" role="region" aria-label="Waves" { table.waves {
            caption { "Waves: where each wave's devices are" }
            thead { tr {
                th scope="col" { "Wave" } th scope="col" { "Devices" }
                th scope="col" { "Succeeded" } th scope="col" { "Failed" }
                th scope="col" { "In progress" } th scope="col" { "Waiting" }
                th scope="col" { span.sr { "Bar" } }
            } }
            tbody {
                @for w in waves.iter().take(MAX_WAVES) {
                    tr class=[(w.wave == current).then_some("current")] {
                        th scope="row" {
                            (wave_label(w.wave, percentages))
                            @if w.wave == current { " " small { "(now)" } }
                        }
                        td { (w.devices) } td { (w.succeeded) }
                        td class=[(w.failed > 0).then_some("bad")] { (w.failed) }
                        td { (w.busy) } td { (w.pending) }
                        td.barcell {
                            svg aria-hidden="true" focusable="false" viewBox="0 0 100 10"
                                preserveAspectRatio="none" width="100%" height="12" {
                                @for (x, width, colour) in segments(w) {
                                    rect x=(x) width=(width) height="10" fill=(colour) {}
                                }
                            }
                        }
                    }
                }
            }
        } }
    }
}

/// One hour of the fleet: unix seconds of its start, and the worst sample's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct HourCount {
    pub hour: i64,
    pub devices: i64,
    pub online: i64,
    pub offline: i64,
}

/// A day (or hour) for people, in UTC: "2026-12-06" or "2026-12-06 14:00".
fn utc(unix: i64, with_hour: bool) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(at) if with_hour => format!(
            "{:04}-{:02}-{:02} {:02}:00",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour()
        ),
        Ok(at) => format!(
            "{:04}-{:02}-{:02}",
            at.year(),
            u8::from(at.month()),
            at.day()
        ),
        Err(_) => unix.to_string(),
    }
}

/// The fleet's week, one column an hour ending with the hour starting at `end_hour` (unix
/// seconds): online in green under offline in red, the worst sample of each hour. Captioned with
/// now and the worst hour, with a day-by-day table for screen readers.
pub fn week_chart(id: &str, end_hour: i64, hours: &[HourCount]) -> Markup {
    let first = end_hour.saturating_sub((WEEK_HOURS as i64 - 1) * 3600);
    let mut columns: Vec<Option<HourCount>> = vec![None; WEEK_HOURS];
    for hour in hours {
        if hour.hour < first || hour.hour > end_hour {
            continue;
        }
        let index = usize::try_from((hour.hour - first) / 3600).unwrap_or(0);
        if let Some(column) = columns.get_mut(index) {
            *column = Some(*hour);
        }
    }
    let known: Vec<HourCount> = columns.iter().flatten().copied().collect();
    let top = known
        .iter()
        .map(|h| h.online.max(0).saturating_add(h.offline.max(0)))
        .max()
        .unwrap_or(0)
        .max(1);
    let now = known.last().copied();
    let worst = known
        .iter()
        .copied()
        .max_by(|a, b| a.offline.cmp(&b.offline).then_with(|| b.hour.cmp(&a.hour)));
    // Day by day (UTC): the fewest online and the most offline of its hours.
    let mut days: Vec<(String, i64, i64)> = Vec::new();
    for hour in &known {
        let day = utc(hour.hour, false);
        match days.last_mut() {
            Some((last, online, offline)) if *last == day => {
                *online = (*online).min(hour.online);
                *offline = (*offline).max(hour.offline);
            }
            _ => days.push((day, hour.online, hour.offline)),
        }
    }
    let bar = |value: i64| share(value.max(0), 0, top) * WEEK_HEIGHT;
    html! {
        figure.week {
            svg role="img" aria-labelledby=(id) viewBox={ "0 0 " (WEEK_HOURS) " " (WEEK_HEIGHT) }
                preserveAspectRatio="none" width="100%" height=(WEEK_HEIGHT) {
                @for (index, column) in columns.iter().enumerate() {
                    @if let Some(h) = column {
                        @let (online, offline) = (bar(h.online), bar(h.offline));
                        rect x=(index) width="1" y=(coord(WEEK_HEIGHT - online))
                            height=(coord(online)) fill=(GOOD) {}
                        rect x=(index) width="1" y=(coord(WEEK_HEIGHT - online - offline))
                            height=(coord(offline)) fill=(BAD) {}
                    }
                }
            }
            figcaption id=(id) {
                "Online and offline over the last 7 days, an hour a column (UTC). "
                @match now {
                    None => "No counts yet: they are taken every few minutes.",
                    Some(now) => {
                        "Latest hour: " (now.online) " online, " (now.offline) " offline. "
                        @if let Some(worst) = worst.filter(|w| w.offline > 0) {
                            "Most offline: " (worst.offline) " at " (utc(worst.hour, true)) "."
                        } @else {
                            "None offline all week."
                        }
                    }
                }
            }
            @if !days.is_empty() {
                details {
                    summary { "Day by day" }
                    table {
                        thead { tr {
                            th scope="col" { "Day (UTC)" } th scope="col" { "Fewest online" }
                            th scope="col" { "Most offline" }
                        } }
                        tbody { @for (day, online, offline) in &days {
                            tr { th scope="row" { (day) } td { (online) } td { (offline) } }
                        } }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn wave(wave: i32, devices: i64, succeeded: i64, failed: i64) -> WaveCount {
        WaveCount {
            wave,
            devices,
            succeeded,
            failed,
            busy: 0,
            pending: devices - succeeded - failed,
        }
    }

    /// The numbers in an SVG's attributes: all plain finite numbers.
    fn coordinates_are_numbers(html: &str) {
        for attribute in [" x=\"", " y=\"", " width=\"", " height=\"", " d=\""] {
            for part in html.split(attribute).skip(1) {
                let value = part.split('"').next().unwrap_or_default();
                assert!(
                    !value.contains("NaN") && !value.contains("inf"),
                    "{attribute}{value}"
                );
            }
        }
    }

    #[test]
    fn a_sparkline_says_now_lowest_and_highest() {
        let points = [(100, 5), (200, 12), (300, 0), (400, 3)];
        let html = sparkline("b", "Backlog", Unit::Count, (0, 86_400), &points).into_string();
        assert!(
            html.contains("Backlog: now 3, lowest 0, highest 12"),
            "{html}"
        );
        assert!(html.contains("aria-labelledby=\"b\""), "{html}");
        assert!(html.contains("<path d=\"M"), "{html}");
        let empty = sparkline("e", "Skew", Unit::Millis, (0, 86_400), &[]).into_string();
        assert!(empty.contains("Skew: no figures"), "{empty}");
        assert!(!empty.contains("<path"), "{empty}");
    }

    #[test]
    fn a_gap_breaks_the_line_and_a_spike_survives() {
        let mut points: Vec<(i64, i64)> = (0..60).map(|i| (i * 60, 1)).collect();
        points.push((30 * 60 + 1, 1000));
        points.extend((0..60).map(|i| (20 * 3600 + i * 60, 1)));
        let html = sparkline("g", "Backlog", Unit::Count, (0, 86_400), &points).into_string();
        let path = html.split(" d=\"").nth(1).expect("a path");
        assert_eq!(path.matches('M').count(), 2, "two runs: {path}");
        assert!(html.contains("highest 1000"), "{html}");
        // The spike's bucket reaches the top of the chart.
        assert!(path.contains(&format!(" {}", coord(SPARK_PAD))), "{path}");
    }

    #[test]
    fn units_read_like_people_say_them() {
        assert_eq!(Unit::Bytes.format(5 * 1024 * 1024), "5 MiB");
        assert_eq!(Unit::Bytes.format(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(Unit::Secs.format(7200), "2 h 0 min");
        assert_eq!(Unit::Millis.format(-40), "-40 ms");
    }

    #[test]
    fn a_share_bar_folds_the_tail_into_others() {
        let parts: Vec<(String, usize)> = (0..10).map(|i| (format!("1.{i}.0"), 10 + i)).collect();
        let html = share_bar("v", "Versions", &parts).into_string();
        assert_eq!(html.matches("<li>").count(), SHARE_PARTS, "{html}");
        assert!(html.contains("5 others"), "{html}");
        assert!(html.contains("<b>1.9.0</b> 19 ("), "{html}");
        let none = share_bar("n", "Versions", &[]).into_string();
        assert!(none.contains("none yet"), "{none}");
    }

    #[test]
    fn the_waves_table_counts_each_wave() {
        let html = waves_chart(&[wave(0, 3, 3, 0), wave(1, 12, 9, 2)], &[10, 100], 1).into_string();
        assert!(html.contains("canaries"), "{html}");
        assert!(html.contains("wave 1 (10 %)"), "{html}");
        assert!(html.contains("<td class=\"bad\">2</td>"), "{html}");
        assert!(html.contains("(now)"), "{html}");
    }

    #[test]
    fn the_week_names_its_worst_hour() {
        let end = 1_780_000_000 / 3600 * 3600;
        let hours = [
            HourCount {
                hour: end - 7200,
                devices: 10,
                online: 10,
                offline: 0,
            },
            HourCount {
                hour: end - 3600,
                devices: 10,
                online: 7,
                offline: 3,
            },
            HourCount {
                hour: end,
                devices: 10,
                online: 9,
                offline: 1,
            },
            // Outside the week: left out.
            HourCount {
                hour: end - 8 * 86_400,
                devices: 10,
                online: 0,
                offline: 10,
            },
        ];
        let html = week_chart("w", end, &hours).into_string();
        assert!(html.contains("Latest hour: 9 online, 1 offline."), "{html}");
        assert!(html.contains("Most offline: 3 at "), "{html}");
        assert_eq!(html.matches("<rect").count(), 6, "{html}");
        let empty = week_chart("w", end, &[]).into_string();
        assert!(empty.contains("No counts yet"), "{empty}");
    }

    fn extreme() -> impl Strategy<Value = i64> {
        prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            Just(0_i64),
            Just(-1_i64),
            any::<i64>(),
            -1000_i64..1000,
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn any_sparkline_renders_bounded_with_its_text(
            window in (extreme(), extreme()),
            points in prop::collection::vec((extreme(), extreme()), 0..400),
        ) {
            let html = sparkline("p", "Figure", Unit::Bytes, window, &points).into_string();
            prop_assert!(html.contains("<figcaption id=\"p\">Figure: "));
            coordinates_are_numbers(&html);
            // At most two corners a bucket, and a dot for a lone one.
            prop_assert!(html.len() < 200 + SPARK_BUCKETS * 80 + 400, "{} bytes", html.len());
        }

        #[test]
        fn any_share_bar_and_week_render_with_their_text(
            parts in prop::collection::vec((".{0,20}", any::<usize>()), 0..50),
            end in extreme(),
            hours in prop::collection::vec((extreme(), extreme(), extreme(), extreme()), 0..300),
        ) {
            let html = share_bar("s", "Versions", &parts).into_string();
            prop_assert!(html.contains("<figcaption id=\"s\">"));
            prop_assert!(html.matches("<li>").count() <= SHARE_PARTS);
            coordinates_are_numbers(&html);
            let hours: Vec<HourCount> = hours
                .into_iter()
                .map(|(hour, devices, online, offline)| HourCount { hour, devices, online, offline })
                .collect();
            let html = week_chart("w", end, &hours).into_string();
            prop_assert!(html.contains("<figcaption id=\"w\">Online and offline"));
            prop_assert!(html.matches("<rect").count() <= 2 * WEEK_HOURS);
            coordinates_are_numbers(&html);
        }

        #[test]
        fn any_waves_render_bounded(
            waves in prop::collection::vec(
                (any::<i32>(), extreme(), extreme(), extreme(), extreme(), extreme()), 0..150),
            percentages in prop::collection::vec(any::<i32>(), 0..5),
            current in any::<i32>(),
        ) {
            let waves: Vec<WaveCount> = waves
                .into_iter()
                .map(|(wave, devices, succeeded, failed, busy, pending)| WaveCount {
                    wave, devices, succeeded, failed, busy, pending,
                })
                .collect();
            let html = waves_chart(&waves, &percentages, current).into_string();
            prop_assert!(html.contains("<caption>"));
            prop_assert!(html.matches("<tr").count() <= MAX_WAVES + 1);
            coordinates_are_numbers(&html);
        }
    }
}
