//! The soak run's PNG: one panel per measure over time, the warm-up shaded. Text is drawn with
//! ab_glyph from the DejaVu Sans file the bench report uses (`batchkv_benches::PLOT_FONT`).

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::soak::Sample;

const SANS: &str = "sans-serif";

fn font() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let path = batchkv_benches::PLOT_FONT;
        let bytes = std::fs::read(path).map_err(|e| {
            format!("the font {path} is missing ({e}); install Debian's fonts-dejavu-core")
        })?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font(SANS, FontStyle::Normal, bytes)
            .map_err(|_| format!("{path} is not a usable TrueType font"))?;
        plotters::style::register_font(SANS, FontStyle::Bold, bytes)
            .map_err(|_| format!("{path} is not a usable TrueType font"))
    })
    .clone()
}

/// One panel: a title, a unit and its series (name, colour, value of a sample).
type Series = (&'static str, RGBColor, fn(&Sample) -> f64);

/// Draws the soak plot into `file`.
///
/// # Errors
/// No font, or drawing failed.
pub fn soak(file: &Path, samples: &[Sample], warmup: Duration) -> Result<(), String> {
    font()?;
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let panels: [(&str, &str, Vec<Series>); 5] = [
        (
            "Throughput",
            "ops/s",
            vec![("ops/s", RGBColor(31, 119, 180), |s| s.ops_per_sec)],
        ),
        (
            "Latency over each interval",
            "ms",
            vec![
                ("p50", RGBColor(44, 160, 44), |s| s.p50_ms),
                ("p99", RGBColor(214, 39, 40), |s| s.p99_ms),
            ],
        ),
        (
            "Resident memory",
            "MiB",
            vec![("RSS", RGBColor(148, 103, 189), |s| s.rss_mib)],
        ),
        (
            "Disk use of the data directory",
            "MiB",
            vec![("disk", RGBColor(140, 86, 75), |s| s.disk_mib)],
        ),
        (
            "Open file descriptors, and the machine's load average",
            "count",
            vec![
                ("fds", RGBColor(255, 127, 14), |s| s.fds as f64),
                ("load (1 min)", RGBColor(127, 127, 127), |s| s.load),
            ],
        ),
    ];
    let root = BitMapBackend::new(file, (1400, 1900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (head, body) = root.split_vertically(60);
    head.draw_text(
        &format!(
            "batchkv soak: {:.0} min, a sample every {:.0} s (grey: warm-up, not judged)",
            samples.last().map_or(0.0, |s| s.t / 60.0),
            samples.first().map_or(0.0, |s| s.t)
        ),
        &(SANS, 26).into_font().style(FontStyle::Bold).color(&BLACK),
        (20, 18),
    )
    .map_err(|e| err(&e))?;
    let areas = body.split_evenly((panels.len(), 1));
    let x_max = samples.last().map_or(1.0, |s| s.t / 60.0).max(0.1);
    let warm = warmup.as_secs_f64() / 60.0;
    for ((title, unit, series), area) in panels.iter().zip(areas.iter()) {
        let y_max = samples
            .iter()
            .flat_map(|s| series.iter().map(move |(_, _, f)| f(s)))
            .fold(0.0f64, f64::max)
            .max(1e-3)
            * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(*title, (SANS, 20).into_font().style(FontStyle::Bold))
            .margin(12)
            .margin_right(30)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("minutes")
            .y_desc(*unit)
            .label_style((SANS, 14))
            .axis_desc_style((SANS, 15))
            .bold_line_style(RGBColor(210, 210, 210))
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, 0.0), (warm.min(x_max), y_max)],
                RGBColor(235, 235, 235).filled(),
            )))
            .map_err(|e| err(&e))?;
        for (name, color, f) in series {
            let color = *color;
            chart
                .draw_series(LineSeries::new(
                    samples.iter().map(|s| (s.t / 60.0, f(s))),
                    color.stroke_width(2),
                ))
                .map_err(|e| err(&e))?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .label_font((SANS, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}
