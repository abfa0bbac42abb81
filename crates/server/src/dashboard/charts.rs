//! SVG charts drawn on the server. Each chart is an image with a title and
//! a description that carries every number, prints its numbers as text, and
//! is followed by the same numbers in a table for screen readers.

use maud::{Markup, html};

const WIDTH: u32 = 420;
const LABEL: u32 = 170;
const BAR: u32 = 190;
const ROW: u32 = 24;

/// A horizontal bar chart of `(label, value)` rows.
pub fn bars(id: &str, title: &str, rows: &[(String, u64)]) -> Markup {
    let max = rows.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let height = ROW * rows.len() as u32 + 4;
    let desc = rows
        .iter()
        .map(|(l, v)| format!("{l}: {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    html! {
        figure .chart {
            svg #(id) viewBox=(format!("0 0 {WIDTH} {height}")) width=(WIDTH) height=(height)
                role="img" aria-labelledby=(format!("{id}-title {id}-desc")) {
                title #(format!("{id}-title")) { (title) }
                desc #(format!("{id}-desc")) { (desc) }
                @for (i, (label, value)) in rows.iter().enumerate() {
                    @let y = i as u32 * ROW + 2;
                    @let w = ((*value as f64 / max as f64) * f64::from(BAR)).round() as u32;
                    text .label x=(LABEL - 8) y=(y + 16) text-anchor="end" { (label) }
                    rect .bar x=(LABEL) y=(y + 3) width=(w.max(if *value > 0 { 2 } else { 0 })) height=(ROW - 8) rx="2" {}
                    text .value x=(LABEL + w + 6) y=(y + 16) { (value) }
                }
            }
            figcaption { (title) }
            table .sr-only {
                caption { (title) }
                thead { tr { th scope="col" { "Series" } th scope="col" { "Value" } } }
                tbody {
                    @for (label, value) in rows {
                        tr { th scope="row" { (label) } td { (value) } }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_chart_carries_every_number_as_text() {
        let svg = bars("c", "Evaluations", &[("SPLIT".into(), 40), ("DEFAULT".into(), 10)]).into_string();
        assert!(svg.contains("role=\"img\""));
        assert!(svg.contains("<desc id=\"c-desc\">SPLIT: 40, DEFAULT: 10</desc>"));
        assert!(svg.contains(">40</text>") && svg.contains(">10</text>"));
        // The largest value spans the whole bar area; others are proportional.
        assert!(svg.contains(&format!("width=\"{BAR}\"")));
        assert!(svg.contains("width=\"48\""));
    }

    #[test]
    fn an_empty_series_draws_no_bars_and_does_not_divide_by_zero() {
        let svg = bars("z", "Nothing", &[("A".into(), 0)]).into_string();
        assert!(svg.contains("width=\"0\""));
    }
}

/// A sparkline of `(label, value)` points (missing values are gaps), with
/// the first, last, lowest and highest values printed beside it.
pub fn sparkline(id: &str, title: &str, points: &[(String, Option<f64>)]) -> Markup {
    const W: f64 = 160.0;
    const H: f64 = 32.0;
    let values: Vec<f64> = points.iter().filter_map(|(_, v)| *v).collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let step = if points.len() > 1 {
        W / (points.len() - 1) as f64
    } else {
        0.0
    };
    let mut path = String::new();
    let mut pen_up = true;
    for (i, (_, v)) in points.iter().enumerate() {
        match v {
            Some(v) => {
                let x = i as f64 * step;
                let y = H - 2.0 - (v - lo) / span * (H - 4.0);
                path.push_str(&format!("{}{x:.1},{y:.1} ", if pen_up { "M" } else { "L" }));
                pen_up = false;
            }
            None => pen_up = true,
        }
    }
    let fmt = |v: f64| format_value(v);
    let desc = points
        .iter()
        .map(|(l, v)| format!("{l}: {}", v.map_or("no data".into(), fmt)))
        .collect::<Vec<_>>()
        .join(", ");
    html! {
        span .spark {
            svg #(id) viewBox=(format!("0 0 {W} {H}")) width=(W) height=(H) role="img"
                aria-labelledby=(format!("{id}-title {id}-desc")) {
                title #(format!("{id}-title")) { (title) }
                desc #(format!("{id}-desc")) { (desc) }
                @if !path.is_empty() { path .line d=(path.trim_end()) fill="none" {} }
            }
            @if let (Some(first), Some(last)) = (values.first(), values.last()) {
                span .muted { " " (fmt(*first)) " → " (fmt(*last)) " (low " (fmt(lo)) ", high " (fmt(hi)) ")" }
            } @else {
                span .muted { " no data" }
            }
        }
    }
}

/// A value with at most four significant decimals.
pub fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

#[cfg(test)]
mod spark_tests {
    use super::*;

    #[test]
    fn a_sparkline_breaks_at_gaps_and_prints_its_numbers() {
        let pts = vec![("d1".into(), Some(1.0)), ("d2".into(), None), ("d3".into(), Some(3.0))];
        let svg = sparkline("s", "Orders", &pts).into_string();
        assert_eq!(svg.matches('M').count(), 2, "a gap lifts the pen: {svg}");
        assert!(svg.contains("d2: no data"));
        assert!(svg.contains("1 → 3 (low 1, high 3)"));
    }

    #[test]
    fn values_print_compactly() {
        assert_eq!(format_value(12.0), "12");
        assert_eq!(format_value(0.12345678), "0.1235");
    }
}

/// One row of an [`intervals`] chart: an estimate with its interval, as
/// fractions (0.05 = 5%).
#[derive(Debug, Clone)]
pub struct IntervalRow {
    /// What the row is (a variation, a metric).
    pub label: String,
    /// The point estimate.
    pub estimate: f64,
    /// The interval's lower end.
    pub lower: f64,
    /// The interval's upper end.
    pub upper: f64,
    /// Whether the row is good (`Some(true)`), bad (`Some(false)`) or
    /// undecided, in the metric's good direction; colours the mark.
    pub verdict: Option<bool>,
}

/// A signed percentage with one decimal (`+3.2%`, `−1.0%`).
pub fn signed_pct(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 {
            "+\u{221e}".into()
        } else {
            "\u{2212}\u{221e}".into()
        };
    }
    if v.is_nan() {
        return "n/a".into();
    }
    let s = format!("{:+.1}%", v * 100.0);
    s.replacen('-', "\u{2212}", 1)
}

/// A forest plot: each row's estimate as a dot on its interval, against a
/// zero line, on one axis symmetric around zero. The numbers are printed
/// beside each row, carried in the description, and repeated in a table.
pub fn intervals(id: &str, title: &str, rows: &[IntervalRow]) -> Markup {
    const W: f64 = 640.0;
    const LEFT: f64 = 150.0;
    const PLOT: f64 = 280.0;
    const ROWH: f64 = 30.0;
    let finite = |v: f64| if v.is_finite() { v.abs() } else { 0.0 };
    let reach = rows
        .iter()
        .map(|r| finite(r.lower).max(finite(r.upper)).max(finite(r.estimate)))
        .fold(0.01_f64, f64::max)
        * 1.1;
    let x = |v: f64| {
        let v = if v.is_finite() { v.clamp(-reach, reach) } else { 0.0 };
        LEFT + (v + reach) / (2.0 * reach) * PLOT
    };
    let height = ROWH * rows.len() as f64 + 28.0;
    let text = |r: &IntervalRow| {
        format!(
            "{} ({} to {})",
            signed_pct(r.estimate),
            signed_pct(r.lower),
            signed_pct(r.upper)
        )
    };
    let desc = rows
        .iter()
        .map(|r| format!("{}: {}", r.label, text(r)))
        .collect::<Vec<_>>()
        .join("; ");
    html! {
        figure .chart {
            svg #(id) viewBox=(format!("0 0 {W} {height}")) width=(W) height=(height) role="img"
                aria-labelledby=(format!("{id}-title {id}-desc")) {
                title #(format!("{id}-title")) { (title) }
                desc #(format!("{id}-desc")) { (desc) }
                line .axis x1=(format!("{:.1}", x(0.0))) x2=(format!("{:.1}", x(0.0))) y1="0" y2=(format!("{:.1}", height - 22.0)) {}
                text .tick x=(format!("{:.1}", x(-reach))) y=(format!("{:.1}", height - 6.0)) text-anchor="start" { (signed_pct(-reach)) }
                text .tick x=(format!("{:.1}", x(0.0))) y=(format!("{:.1}", height - 6.0)) text-anchor="middle" { "0" }
                text .tick x=(format!("{:.1}", x(reach))) y=(format!("{:.1}", height - 6.0)) text-anchor="end" { (signed_pct(reach)) }
                @for (i, r) in rows.iter().enumerate() {
                    @let y = i as f64 * ROWH + ROWH / 2.0;
                    @let class = match r.verdict { Some(true) => "ci good", Some(false) => "ci bad", None => "ci" };
                    text .label x=(format!("{:.1}", LEFT - 8.0)) y=(format!("{:.1}", y + 4.0)) text-anchor="end" { (r.label) }
                    line class=(class) x1=(format!("{:.1}", x(r.lower))) x2=(format!("{:.1}", x(r.upper))) y1=(format!("{y:.1}")) y2=(format!("{y:.1}")) {}
                    circle class=(class) cx=(format!("{:.1}", x(r.estimate))) cy=(format!("{y:.1}")) r="5" {}
                    text .value x=(format!("{:.1}", LEFT + PLOT + 10.0)) y=(format!("{:.1}", y + 4.0)) { (text(r)) }
                }
            }
            figcaption { (title) }
            table .sr-only {
                caption { (title) }
                thead { tr { th scope="col" { "Row" } th scope="col" { "Estimate" } th scope="col" { "Lower" } th scope="col" { "Upper" } } }
                tbody {
                    @for r in rows {
                        tr { th scope="row" { (r.label) } td { (signed_pct(r.estimate)) } td { (signed_pct(r.lower)) } td { (signed_pct(r.upper)) } }
                    }
                }
            }
        }
    }
}

/// A rollout's stages as a step bar: each stage a segment as wide as its
/// share of the way, filled up to the current stage, each labelled with
/// its percentage.
pub fn stages(id: &str, title: &str, percents: &[f64], current: Option<usize>) -> Markup {
    const W: f64 = 420.0;
    const H: f64 = 40.0;
    let n = percents.len().max(1) as f64;
    let step = W / n;
    let state = |i: usize| match current {
        Some(c) if i < c => "done",
        Some(c) if i == c => "current",
        _ => "todo",
    };
    let desc = percents
        .iter()
        .enumerate()
        .map(|(i, p)| format!("stage {}: {}% ({})", i + 1, format_value(*p), state(i)))
        .collect::<Vec<_>>()
        .join(", ");
    html! {
        figure .chart {
            svg #(id) viewBox=(format!("0 0 {W} {H}")) width=(W) height=(H) role="img"
                aria-labelledby=(format!("{id}-title {id}-desc")) {
                title #(format!("{id}-title")) { (title) }
                desc #(format!("{id}-desc")) { (desc) }
                @for (i, p) in percents.iter().enumerate() {
                    @let x0 = i as f64 * step;
                    rect class=(format!("stage {}", state(i))) x=(format!("{:.1}", x0 + 1.0)) y="2" width=(format!("{:.1}", step - 2.0)) height="20" rx="3" {}
                    text .value x=(format!("{:.1}", x0 + step / 2.0)) y="36" text-anchor="middle" { (format_value(*p)) "%" }
                }
            }
            figcaption { (title) ": " (desc) }
        }
    }
}

#[cfg(test)]
mod interval_tests {
    use super::*;

    #[test]
    fn an_interval_chart_prints_each_estimate_and_interval_as_text() {
        let rows = vec![IntervalRow {
            label: "treatment".into(),
            estimate: 0.032,
            lower: -0.01,
            upper: 0.074,
            verdict: None,
        }];
        let svg = intervals("lift", "Lift", &rows).into_string();
        assert!(svg.contains("treatment: +3.2% (\u{2212}1.0% to +7.4%)"), "{svg}");
        assert!(svg.contains("<circle"));
        // The zero line sits in the middle of the symmetric axis.
        assert!(svg.contains("x1=\"290.0\" x2=\"290.0\""), "{svg}");
    }

    #[test]
    fn an_infinite_interval_end_is_drawn_at_the_edge_without_breaking_the_axis() {
        let rows = vec![IntervalRow {
            label: "b".into(),
            estimate: 0.1,
            lower: f64::NEG_INFINITY,
            upper: 0.2,
            verdict: Some(true),
        }];
        let svg = intervals("x", "Lift", &rows).into_string();
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn stages_mark_done_current_and_remaining_steps() {
        let svg = stages("s", "Rollout", &[1.0, 10.0, 50.0, 100.0], Some(1)).into_string();
        assert!(svg.contains("stage 1: 1% (done), stage 2: 10% (current), stage 3: 50% (todo)"));
    }
}
