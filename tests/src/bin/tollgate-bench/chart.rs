//! One SVG line chart: requests/s (the medians) against the concurrency level, one line per
//! server and kind of object. Written by hand, as the shell runner's awk wrote it, so that the
//! charts in `bench/` keep their look; it draws and escapes, and does no statistics.

use std::fmt::Write;

/// One line of the chart: a label for the legend, its colour and SVG dash pattern, and a value
/// for each level (`None` where there is none: the line skips the point).
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub(crate) label: String,
    pub(crate) colour: &'static str,
    pub(crate) dash: &'static str,
    pub(crate) values: Vec<Option<f64>>,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// The top of the y axis: the largest value rounded up to the next step of its power of ten
/// (82,280 → 90,000; 9,000 → 10,000).
pub(crate) fn axis_top(max: f64) -> f64 {
    if !(max > 0.0 && max.is_finite()) {
        return 1.0;
    }
    let step = 10f64.powi(max.log10().floor() as i32);
    step * ((max / step).floor() + 1.0)
}

/// The SVG of a chart titled `title` with the x axis at `levels` (evenly spaced, in order).
pub(crate) fn svg(title: &str, levels: &[u32], lines: &[Line]) -> String {
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let max = lines
        .iter()
        .flat_map(|l| l.values.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b));
    let top = axis_top(max);
    let gaps = levels.len().saturating_sub(1).max(1) as f64;
    let x = |i: usize| LEFT + plot_width * i as f64 / gaps;
    let y = |v: f64| TOP + plot_height - plot_height * v / top;
    let mut out = String::new();
    let mut put = |line: String| {
        out.push_str(&line);
        out.push('\n');
    };
    put(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         font-family=\"sans-serif\" font-size=\"12\">"
    ));
    put(format!(
        "<rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"white\"/>"
    ));
    put(format!(
        "<text x=\"{LEFT}\" y=\"22\" font-size=\"14\">{}</text>",
        escape(title)
    ));
    for k in 0..=4 {
        let at = TOP + plot_height - plot_height * f64::from(k) / 4.0;
        put(format!(
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{at:.1}\" y2=\"{at:.1}\" stroke=\"#ddd\"/>",
            LEFT + plot_width
        ));
        put(format!(
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT - 6.0,
            at + 4.0,
            (top * f64::from(k) / 4.0).trunc()
        ));
    }
    for (i, level) in levels.iter().enumerate() {
        put(format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{level}</text>",
            x(i),
            TOP + plot_height + 18.0
        ));
    }
    put(format!(
        "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">concurrent connections</text>",
        LEFT + plot_width / 2.0,
        HEIGHT - 8.0
    ));
    let middle = TOP + plot_height / 2.0;
    put(format!(
        "<text x=\"16\" y=\"{middle:.1}\" transform=\"rotate(-90 16 {middle:.1})\" \
         text-anchor=\"middle\">requests/s (median)</text>"
    ));
    for (s, line) in lines.iter().enumerate() {
        let mut points = String::new();
        for (i, value) in line.values.iter().enumerate().take(levels.len()) {
            if let Some(v) = value {
                let _ = write!(points, "{:.1},{:.1} ", x(i), y(*v));
            }
        }
        put(format!(
            "<polyline points=\"{points}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" \
             stroke-dasharray=\"{}\"/>",
            line.colour, line.dash
        ));
        let legend = TOP + 10.0 + 20.0 * s as f64;
        put(format!(
            "<line x1=\"{}\" x2=\"{}\" y1=\"{legend}\" y2=\"{legend}\" stroke=\"{}\" \
             stroke-width=\"2\" stroke-dasharray=\"{}\"/>",
            LEFT + plot_width + 10.0,
            LEFT + plot_width + 36.0,
            line.colour,
            line.dash
        ));
        put(format!(
            "<text x=\"{}\" y=\"{}\">{}</text>",
            LEFT + plot_width + 42.0,
            legend + 4.0,
            escape(&line.label)
        ));
    }
    put("</svg>".to_owned());
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(label: &str, values: &[Option<f64>]) -> Line {
        Line {
            label: label.to_owned(),
            colour: "#1f77b4",
            dash: "6 4",
            values: values.to_vec(),
        }
    }

    /// The `points` attribute of every polyline, in order.
    fn polylines(svg: &str) -> Vec<String> {
        svg.lines()
            .filter(|l| l.starts_with("<polyline"))
            .map(|l| {
                l.split("points=\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .expect("points")
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn axis_tops() {
        let check = |max: f64, expected: f64| assert_eq!(axis_top(max), expected, "{max}");
        check(82280.0, 90000.0);
        check(9000.0, 10000.0);
        check(99999.0, 100000.0);
        check(1.5, 2.0);
        check(0.0, 1.0);
        check(f64::NAN, 1.0);
    }

    #[test]
    fn points_fall_where_the_values_say() {
        // Plot: x from 80 to 450, y from 350 (0) to 40 (the top, 100 here).
        let svg = svg(
            "t",
            &[1, 8, 32],
            &[
                line("a", &[Some(0.0), Some(50.0), Some(90.0)]),
                line("b", &[None, Some(90.0), None]),
            ],
        );
        assert_eq!(
            polylines(&svg),
            ["80.0,350.0 265.0,195.0 450.0,71.0 ", "265.0,71.0 "]
        );
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\""));
        assert!(svg.ends_with("</svg>\n"));
        // The y axis: 0, 25, 50, 75, 100; the levels below the plot.
        for tick in [">0<", ">25<", ">50<", ">75<", ">100<", ">1<", ">8<", ">32<"] {
            assert!(svg.contains(tick), "no {tick} in\n{svg}");
        }
        assert_eq!(svg.matches("<text").count(), 1 + 5 + 3 + 2 + 2);
    }

    #[test]
    fn one_level_and_no_values_still_draw() {
        // 10 on an axis up to 20: half way up.
        let svg = svg("t", &[32], &[line("a", &[Some(10.0)]), line("b", &[None])]);
        assert_eq!(polylines(&svg), ["80.0,195.0 ", ""]);
        let empty = svg_of_nothing();
        assert!(empty.contains("</svg>"));
        assert!(!empty.contains("NaN") && !empty.contains("inf"), "{empty}");
    }

    fn svg_of_nothing() -> String {
        svg("nothing", &[], &[line("a", &[])])
    }

    #[test]
    fn text_is_escaped() {
        let svg = svg("a <b> & \"c\"", &[1], &[line("x<y", &[Some(1.0)])]);
        assert!(
            svg.contains(">a &lt;b&gt; &amp; &quot;c&quot;</text>"),
            "{svg}"
        );
        assert!(svg.contains(">x&lt;y</text>"), "{svg}");
    }
}
