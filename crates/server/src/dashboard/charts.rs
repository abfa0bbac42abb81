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
