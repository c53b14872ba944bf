//! The audits page's chart: events over time, one stacked bar per time bucket, a colour per
//! effect, drawn on the server as SVG (plotters' SVG backend) from the histogram query, and the
//! bucket width that suits a time range. Only effect names, counts and times reach the drawing;
//! plotters escapes its text all the same, and the title is escaped here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use maud::html;
use plotters::prelude::*;

use crate::events::Effect;

/// The chart's size in pixels (it scales with the page: `viewBox`).
const SIZE: (u32, u32) = (900, 260);

/// The width of the legend's strip, on the right.
const LEGEND_WIDTH: u32 = 90;

/// The bucket widths offered, in minutes: from a minute to a week.
const WIDTHS: [u64; 8] = [1, 5, 15, 60, 180, 360, 1440, 10_080];

/// At most this many bars: enough to see a burst, few enough to read.
const MAX_BARS: u64 = 96;

/// The narrowest width of [`WIDTHS`] that draws `span` in at most [`MAX_BARS`] bars.
pub fn width_for(span: Duration) -> u64 {
    let minutes = span.as_secs().div_ceil(60);
    WIDTHS
        .into_iter()
        .find(|w| minutes.div_ceil(*w) <= MAX_BARS)
        .unwrap_or(WIDTHS[WIDTHS.len() - 1])
}

/// One bar's part: the events of `effect` in the bucket starting at `start`.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub start: SystemTime,
    pub effect: Effect,
    pub count: u64,
}

/// What could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("chart: {0}")]
pub struct ChartError(String);

/// The fill of an effect's bars and legend swatch.
fn colour(effect: Effect) -> RGBColor {
    match effect {
        Effect::Alert => RGBColor(0xe0, 0x9a, 0x1a),
        Effect::Prevent => RGBColor(0xc0, 0x2a, 0x2a),
        Effect::Block => RGBColor(0x6a, 0x10, 0x40),
    }
}

fn seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A tick's label: the time of day, with the date when the chart spans more than a day.
fn tick(at: i64, with_date: bool) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(at.max(0) as u64);
    // `2026-11-29T10:00:00Z`
    let text = humantime::format_rfc3339_seconds(t).to_string();
    if with_date {
        format!("{} {}", &text[5..10], &text[11..16])
    } else {
        text[11..16].to_owned()
    }
}

/// The SVG of `bars` (buckets `width` minutes wide) from `from` to `to`, titled `title`: bars
/// stacked by effect, axes labelled, a legend naming each effect.
pub fn svg(
    bars: &[Bar],
    width: u64,
    from: SystemTime,
    to: SystemTime,
    title: &str,
) -> Result<String, ChartError> {
    let step = (width * 60) as i64;
    let (from, to) = (seconds(from), seconds(to).max(seconds(from) + step));
    // Each bucket's total, for the stacking and the y axis.
    let mut starts: Vec<i64> = bars.iter().map(|b| seconds(b.start)).collect();
    starts.sort_unstable();
    starts.dedup();
    let total = |start: i64, upto: Option<Effect>| -> u64 {
        let order = |e: Effect| Effect::ALL.iter().position(|x| *x == e);
        bars.iter()
            .filter(|b| seconds(b.start) == start)
            .filter(|b| upto.is_none_or(|u| order(b.effect) <= order(u)))
            .map(|b| b.count)
            .sum()
    };
    let top = starts
        .iter()
        .map(|s| total(*s, None))
        .max()
        .unwrap_or(0)
        .max(1);
    let with_date = to - from > 86_400;

    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        let failed = |e: &dyn std::fmt::Display| ChartError(e.to_string());
        root.fill(&WHITE).map_err(|e| failed(&e))?;
        // The legend in a strip of its own on the right, where no bar runs under it.
        let (plot, legend) = root.split_horizontally(SIZE.0 - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&plot)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(from..to, 0u64..top + top.div_ceil(10))
            .map_err(|e| failed(&e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("time (UTC)")
            .y_desc("events")
            .x_labels(8)
            .y_labels(5)
            .x_label_formatter(&|x| tick(*x, with_date))
            .draw()
            .map_err(|e| failed(&e))?;
        for effect in Effect::ALL {
            let fill = colour(effect);
            let rectangles = bars.iter().filter(|b| b.effect == effect).map(|b| {
                let start = seconds(b.start);
                let high = total(start, Some(effect));
                let low = high - b.count;
                // A tenth of the bucket left blank: neighbouring bars stay apart.
                Rectangle::new(
                    [(start, low), (start + step - step / 10, high)],
                    fill.filled(),
                )
            });
            chart.draw_series(rectangles).map_err(|e| failed(&e))?;
        }
        for (i, effect) in Effect::ALL.into_iter().enumerate() {
            let y = 20 + 20 * i as i32;
            let swatch = Rectangle::new([(10, y), (22, y + 12)], colour(effect).filled());
            legend.draw(&swatch).map_err(|e| failed(&e))?;
            let name = Text::new(effect.as_str(), (28, y), ("sans-serif", 14).into_font());
            legend.draw(&name).map_err(|e| failed(&e))?;
        }
        root.present().map_err(|e| failed(&e))?;
    }
    // Named for assistive technology and as a tooltip: the title as the first child.
    let title = html! { title { (title) } }.into_string();
    let open = out
        .find("<svg")
        .and_then(|at| out[at..].find('>').map(|end| at + end))
        .ok_or_else(|| ChartError("no <svg> element drawn".into()))?;
    out.insert_str(open + 1, &title);
    out.insert_str(open, r#" role="img" id="chart""#);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_widths_follow_the_range() {
        for (span, want) in [
            (Duration::from_secs(0), 1),
            (Duration::from_secs(15 * 60), 1),
            (Duration::from_secs(96 * 60), 1),
            (Duration::from_secs(97 * 60), 5),
            (Duration::from_secs(3600), 1),
            (Duration::from_secs(24 * 3600), 15),
            (Duration::from_secs(7 * 24 * 3600), 180),
            (Duration::from_secs(90 * 24 * 3600), 1440),
            (Duration::from_secs(3 * 365 * 24 * 3600), 10_080),
        ] {
            assert_eq!(width_for(span), want, "{span:?}");
        }
    }

    #[test]
    fn the_chart_is_titled_labelled_and_has_a_legend_per_effect() {
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s);
        let bars = [
            Bar {
                start: at(0),
                effect: Effect::Prevent,
                count: 3,
            },
            Bar {
                start: at(0),
                effect: Effect::Alert,
                count: 2,
            },
            Bar {
                start: at(300),
                effect: Effect::Block,
                count: 7,
            },
        ];
        let svg = svg(&bars, 5, at(0), at(3600), "Events <by> effect & time").unwrap();
        assert!(svg.starts_with("<svg "), "{svg}");
        assert!(svg.contains(r#" role="img" id="chart"><title>"#), "{svg}");
        assert!(
            svg.contains("<title>Events &lt;by&gt; effect &amp; time</title>"),
            "{svg}"
        );
        // plotters writes each text on a line of its own.
        for text in [
            "\ntime (UTC)\n",
            "\nevents\n",
            "\nalert\n",
            "\nprevent\n",
            "\nblock\n",
        ] {
            assert!(svg.contains(text), "{text} is not in {svg}");
        }
        // One rectangle per bar part, besides the legend's and the background.
        assert!(svg.matches("<rect").count() >= 3 + 3, "{svg}");
    }

    #[test]
    fn ticks_show_the_date_only_over_a_day() {
        assert_eq!(tick(1_800_000_000, false), "08:00");
        assert_eq!(tick(1_800_000_000, true), "01-15 08:00");
    }
}
