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
