//! The report's PNG plots, drawn with plotters from the run's CSV files.
//!
//! Text is rendered with ab_glyph from DejaVu Sans, loaded at run time from Debian's
//! `fonts-dejavu-core` (`cargo xtask doctor` installs it): no system font library is linked.
//! Without the font the plots are skipped, and the report says why; a plot whose CSV is missing
//! (its harness did not run) is skipped the same way.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::prelude::*;
use plotters::style::FontStyle;

use batchkv_benches::claims::{CLAIMS, ClaimId, claim};
use batchkv_benches::fmt::{count, rate};
use batchkv_benches::rows::{AdaptiveChunkRow, BatcherRow, MvccMetric, MvccSide, StoreMetric};

use crate::data::Data;

const FONT: &str = batchkv_benches::PLOT_FONT;
const FONT_BOLD: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";
const SANS: &str = "sans-serif";

/// One plot of the report: drawn into `file` (in the report directory), or skipped.
#[derive(Debug)]
pub struct Plot {
    pub file: &'static str,
    pub title: &'static str,
    pub caption: String,
    /// Why it was not drawn.
    pub skipped: Option<String>,
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Registers DejaVu Sans with plotters, once; the error says what is missing.
fn fonts() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let load = |path: &str| -> Result<&'static [u8], String> {
            let bytes = std::fs::read(path).map_err(|e| {
                format!(
                    "the font {path} is missing ({e}); install Debian's fonts-dejavu-core \
                     (`cargo xtask doctor` does, as root) and run `cargo xtask bench --report-only`"
                )
            })?;
            // plotters keeps fonts for the whole process.
            Ok(Box::leak(bytes.into_boxed_slice()))
        };
        let regular = load(FONT)?;
        let bold = load(FONT_BOLD).unwrap_or(regular);
        plotters::style::register_font(SANS, FontStyle::Normal, regular)
            .map_err(|_| format!("{FONT} is not a usable TrueType font"))?;
        plotters::style::register_font(SANS, FontStyle::Bold, bold)
            .map_err(|_| format!("{FONT_BOLD} is not a usable TrueType font"))?;
        Ok(())
    })
    .clone()
}

/// Draws every plot it has data for into `dir`.
pub fn all(dir: &Path, d: &Data) -> Vec<Plot> {
    type Draw = fn(&Path, &Data) -> Result<Option<String>>;
    let plots: [(&'static str, &'static str, &str, Draw); 8] = [
        (
            "engine-writes.png",
            "Batch write throughput vs batch size",
            "Mono (one WriteBatch), Chunked (5,000-op chunks) and Adaptive (chunk size steered by \
             the RSD of per-chunk throughput) beside raw rust-rocksdb with the same options, per \
             durability mode; db_bench's fillrandom with 1,000-put batches and the reference \
             system's claimed figures where they exist.",
            engine_writes,
        ),
        (
            "engine-adaptive-chunks.png",
            "Adaptive chunk size over time",
            "The chunk controller during the largest adaptive write of the run (last measured \
             repetition): the size of each chunk and its throughput, per durability mode.",
            adaptive_chunks,
        ),
        (
            "group-commit.png",
            "Group commit: throughput and p99 vs producers, per wait policy",
            "batchkv-batcher with closed-loop producers into an fsync-like sink (1-3 ms per \
             flush) and a CPU-bound one (1 µs per item), for each wait policy.",
            group_commit,
        ),
        (
            "store-put.png",
            "Store puts: throughput and p99 vs client threads, per durability mode",
            "The whole write path (batcher, codec, MVCC, engine) with closed-loop clients, beside \
             raw rust-rocksdb single puts with the same options.",
            store_put,
        ),
        (
            "overhead.png",
            "MVCC and pipeline overhead vs raw RocksDB",
            "Each layer's throughput over raw RocksDB (or the layer below) measured in the same \
             run: 1.0 means no overhead.",
            overhead,
        ),
        (
            "db-bench.png",
            "rust-rocksdb and batchkv vs RocksDB's db_bench",
            "db_bench fillrandom (C++, Debian's RocksDB) beside the same sustained writes through \
             rust-rocksdb, and single puts through the batchkv Store, measured in the same run.",
            db_bench,
        ),
        (
            "server.png",
            "batchkv serve vs etcd 3.4 over gRPC: throughput and p99 vs clients",
            "One closed-loop load generator (Rust etcd-client) against both servers in the same \
             run, both fsyncing before they answer: puts, point gets, 1,000-key prefix ranges and \
             compare-and-swap txns, clients sharing up to 16 connections.",
            server,
        ),
        (
            "workloads.png",
            "Mixed workloads: the Store over raw rust-rocksdb, same run",
            "YCSB A-F, 80/20 and 50/50 mixes, point reads in key order and at random with the \
             block cache warm and cold, at 1 and 16 client threads: the Store's throughput over \
             raw rust-rocksdb doing the same logical work.",
            workloads,
        ),
    ];
    let font = fonts();
    plots
        .into_iter()
        .map(|(file, title, caption, draw)| {
            let skipped = match &font {
                Err(e) => Some(e.clone()),
                Ok(()) => match draw(&dir.join(file), d) {
                    Ok(skip) => skip,
                    Err(e) => Some(format!("drawing failed: {e:#}")),
                },
            };
            if let Some(why) = &skipped {
                println!("bench: plot {file} skipped: {why}");
            }
            Plot {
                file,
                title,
                caption: caption.to_owned(),
                skipped,
            }
        })
        .collect()
}

const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const RED: RGBColor = RGBColor(214, 39, 40);
const PURPLE: RGBColor = RGBColor(148, 103, 189);
const BROWN: RGBColor = RGBColor(140, 86, 75);
const GRAY: RGBColor = RGBColor(90, 90, 90);

/// How a series or a legend key is drawn.
#[derive(Clone, Copy, PartialEq)]
enum Mark {
    /// A line with a dot on each point.
    Line,
    /// A line alone (steps, many points).
    Step,
    /// A dashed line with a dot on each point.
    Dashed,
    /// A horizontal dotted line across the panel (a target or a claim).
    Target,
    /// Crosses, no line (claimed figures).
    Cross,
    /// Triangles, no line (reference points).
    Triangle,
    /// A shaded band (a claimed range).
    Band,
    /// A filled bar.
    Bar,
}

struct Series {
    label: String,
    color: RGBColor,
    mark: Mark,
    points: Vec<(f64, f64)>,
    /// Text beside each point (none when empty).
    notes: Vec<String>,
}

impl Series {
    fn new(label: impl Into<String>, color: RGBColor, mark: Mark, points: Vec<(f64, f64)>) -> Self {
        Series {
            label: label.into(),
            color,
            mark,
            points,
            notes: Vec::new(),
        }
    }

    fn notes(mut self, notes: Vec<String>) -> Self {
        self.notes = notes;
        self
    }
}

/// One chart: its series and its axes.
struct Panel {
    caption: String,
    x_desc: String,
    y_desc: String,
    series: Vec<Series>,
}

/// A figure: a title and subtitle, panels in a grid, one legend for all of them below.
fn figure(
    path: &Path,
    size: (u32, u32),
    title: &str,
    subtitle: &str,
    grid: (usize, usize),
    draw: impl FnOnce(&[Area<'_>]) -> Result<Vec<(String, RGBColor, Mark)>>,
) -> Result<()> {
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (head, rest) = root.split_vertically(76);
    head.draw_text(
        title,
        &(SANS, 28).into_font().style(FontStyle::Bold).color(&BLACK),
        (20, 12),
    )
    .map_err(err)?;
    head.draw_text(subtitle, &(SANS, 17).into_font().color(&GRAY), (20, 48))
        .map_err(err)?;
    let (body, foot) = rest.split_vertically(rest.dim_in_pixel().1 - 70);
    let panels = body.split_evenly(grid);
    let keys = draw(&panels)?;
    legend(&foot, &keys)?;
    root.present().map_err(err)?;
    Ok(())
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{e}")
}

/// A legend strip: each key's mark and label, in rows.
fn legend(area: &Area<'_>, keys: &[(String, RGBColor, Mark)]) -> Result<()> {
    let font = (SANS, 16).into_font().color(&BLACK);
    let (w, _) = area.dim_in_pixel();
    let (mut x, mut y) = (24i32, 8i32);
    for (label, color, mark) in keys {
        let (tw, _) = area.estimate_text_size(label, &font).map_err(err)?;
        let need = 44 + tw as i32 + 28;
        if x + need > w as i32 && x > 24 {
            x = 24;
            y += 28;
        }
        let c = *color;
        let mid = y + 9;
        match mark {
            Mark::Line | Mark::Step | Mark::Dashed | Mark::Target => {
                let style = c.stroke_width(3);
                if *mark == Mark::Step {
                    area.draw(&PathElement::new(vec![(x, mid), (x + 34, mid)], style))
                        .map_err(err)?;
                } else if *mark == Mark::Line {
                    area.draw(&PathElement::new(vec![(x, mid), (x + 34, mid)], style))
                        .map_err(err)?;
                    area.draw(&Circle::new((x + 17, mid), 4, c.filled()))
                        .map_err(err)?;
                } else {
                    for s in (0..34).step_by(if *mark == Mark::Dashed { 12 } else { 6 }) {
                        let len = if *mark == Mark::Dashed { 7 } else { 3 };
                        area.draw(&PathElement::new(
                            vec![(x + s, mid), (x + (s + len).min(34), mid)],
                            style,
                        ))
                        .map_err(err)?;
                    }
                }
            }
            Mark::Cross => {
                area.draw(&Cross::new((x + 17, mid), 7, c.stroke_width(3)))
                    .map_err(err)?;
            }
            Mark::Triangle => {
                area.draw(&TriangleMarker::new((x + 17, mid), 8, c.filled()))
                    .map_err(err)?;
            }
            Mark::Band | Mark::Bar => {
                let fill = if *mark == Mark::Band {
                    c.mix(0.25).filled()
                } else {
                    c.filled()
                };
                area.draw(&Rectangle::new([(x + 2, mid - 7), (x + 32, mid + 7)], fill))
                    .map_err(err)?;
            }
        }
        area.draw_text(label, &font, (x + 42, y)).map_err(err)?;
        x += need;
    }
    Ok(())
}

/// An axis: linear, or logarithmic with its labelled values.
#[derive(Clone)]
enum Axis {
    Lin(Range<f64>),
    Log(Range<f64>, Vec<f64>),
}

impl Axis {
    fn range(&self) -> Range<f64> {
        match self {
            Axis::Lin(r) | Axis::Log(r, _) => r.clone(),
        }
    }

    /// A log axis over `lo..hi` labelled at 1-2-5 (or finer) steps.
    fn log(lo: f64, hi: f64) -> Axis {
        Axis::Log(lo..hi, log_ticks(lo, hi))
    }

    /// A log axis labelled at `ticks` (the values the data has, such as thread counts).
    fn log_at(ticks: Vec<f64>) -> Axis {
        let lo = ticks.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ticks.iter().copied().fold(0.0, f64::max);
        Axis::Log((lo / 1.5)..(hi * 1.5), ticks)
    }
}

/// Labels for a log axis: powers of ten, or 1-2-5, or 1..9 per decade, whichever first gives
/// at least four labels.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let sets: [&[f64]; 3] = [
        &[1.0],
        &[1.0, 2.0, 5.0],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
    ];
    let mut out = Vec::new();
    for set in sets {
        out = decades(lo, hi, set);
        if out.len() >= 4 {
            break;
        }
    }
    out
}

/// `set` x every power of ten, within `lo..=hi`.
fn decades(lo: f64, hi: f64, set: &[f64]) -> Vec<f64> {
    let mut out = Vec::new();
    if !(lo > 0.0 && hi > lo) {
        return out;
    }
    let mut p = 10f64.powf(lo.log10().floor());
    while p <= hi {
        for m in set {
            let v = p * m;
            if v >= lo && v <= hi {
                out.push(v);
            }
        }
        p *= 10.0;
    }
    out
}

/// Draws one panel on `area` with the axes `x` and `y`.
fn panel(area: &Area<'_>, p: &Panel, x: &Axis, y: &Axis) -> Result<()> {
    let desc = |d: &str, a: &Axis| match a {
        Axis::Lin(_) => d.to_owned(),
        Axis::Log(..) => match d.strip_suffix(')') {
            Some(head) => format!("{head}, log scale)"),
            None => format!("{d} (log scale)"),
        },
    };
    let descs = (desc(&p.x_desc, x), desc(&p.y_desc, y));
    let light = |r: &Range<f64>| {
        decades(
            r.start,
            r.end,
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
        )
    };
    let bounds = (x.range(), y.range());
    let (xd, yd) = (descs.0.as_str(), descs.1.as_str());
    match (x, y) {
        (Axis::Lin(xr), Axis::Lin(yr)) => {
            panel_on(area, p, (xd, yd), xr.clone(), yr.clone(), bounds)
        }
        (Axis::Log(xr, xt), Axis::Lin(yr)) => panel_on(
            area,
            p,
            (xd, yd),
            xr.clone()
                .log_scale()
                .with_key_points(xt.clone())
                .with_light_points(light(xr)),
            yr.clone(),
            bounds,
        ),
        (Axis::Lin(xr), Axis::Log(yr, yt)) => panel_on(
            area,
            p,
            (xd, yd),
            xr.clone(),
            yr.clone()
                .log_scale()
                .with_key_points(yt.clone())
                .with_light_points(light(yr)),
            bounds,
        ),
        (Axis::Log(xr, xt), Axis::Log(yr, yt)) => panel_on(
            area,
            p,
            (xd, yd),
            xr.clone()
                .log_scale()
                .with_key_points(xt.clone())
                .with_light_points(light(xr)),
            yr.clone()
                .log_scale()
                .with_key_points(yt.clone())
                .with_light_points(light(yr)),
            bounds,
        ),
    }
}

fn panel_on<X, Y>(
    area: &Area<'_>,
    p: &Panel,
    (x_desc, y_desc): (&str, &str),
    x: X,
    y: Y,
    bounds: (Range<f64>, Range<f64>),
) -> Result<()>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(
            &p.caption,
            (SANS, 20).into_font().style(FontStyle::Bold).color(&BLACK),
        )
        .margin(14)
        .margin_right(28)
        .x_label_area_size(58)
        .y_label_area_size(86)
        .build_cartesian_2d(x, y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&si)
        .y_label_formatter(&si)
        .x_labels(10)
        .y_labels(8)
        .max_light_lines(4)
        .label_style((SANS, 15).into_font().color(&BLACK))
        .axis_desc_style((SANS, 16).into_font().color(&BLACK))
        .bold_line_style(RGBColor(205, 205, 205))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()
        .map_err(err)?;
    let (xb, _) = bounds;
    for s in &p.series {
        let c = s.color;
        match s.mark {
            Mark::Step => {
                chart
                    .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(3)))
                    .map_err(err)?;
            }
            Mark::Line => {
                chart
                    .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(3)))
                    .map_err(err)?;
                chart
                    .draw_series(s.points.iter().map(|&pt| Circle::new(pt, 4, c.filled())))
                    .map_err(err)?;
            }
            Mark::Dashed => {
                chart
                    .draw_series(DashedLineSeries::new(
                        s.points.iter().copied(),
                        8,
                        6,
                        c.stroke_width(3),
                    ))
                    .map_err(err)?;
                chart
                    .draw_series(s.points.iter().map(|&pt| Circle::new(pt, 4, c.filled())))
                    .map_err(err)?;
            }
            Mark::Target => {
                for &(_, yv) in &s.points {
                    chart
                        .draw_series(DashedLineSeries::new(
                            [(xb.start, yv), (xb.end, yv)],
                            3,
                            4,
                            c.stroke_width(2),
                        ))
                        .map_err(err)?;
                }
            }
            Mark::Cross => {
                chart
                    .draw_series(
                        s.points
                            .iter()
                            .map(|&pt| Cross::new(pt, 8, c.stroke_width(3))),
                    )
                    .map_err(err)?;
            }
            Mark::Triangle => {
                chart
                    .draw_series(
                        s.points
                            .iter()
                            .map(|&pt| TriangleMarker::new(pt, 9, c.filled())),
                    )
                    .map_err(err)?;
            }
            Mark::Band => {
                for pair in s.points.chunks(2) {
                    if let [(_, lo), (_, hi)] = pair {
                        chart
                            .draw_series(std::iter::once(Rectangle::new(
                                [(xb.start, *lo), (xb.end, *hi)],
                                c.mix(0.22).filled(),
                            )))
                            .map_err(err)?;
                    }
                }
            }
            Mark::Bar => {}
        }
        // Notes beside points (a claimed figure's value).
        let font = (SANS, 14).into_font().color(&c);
        for (&pt, note) in s.points.iter().zip(&s.notes) {
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at(pt) + Text::new(note.clone(), (10, -8), font.clone()),
                ))
                .map_err(err)?;
        }
    }
    Ok(())
}

/// Axis labels: 0, 500, 2.5K, 100K, 1.5M.
fn si(v: &f64) -> String {
    let v = *v;
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    };
    if v.abs() >= 1e6 {
        format!("{}M", trim(format!("{:.2}", v / 1e6)))
    } else if v.abs() >= 1e3 {
        format!("{}K", trim(format!("{:.1}", v / 1e3)))
    } else if v.abs() >= 1.0 || v == 0.0 {
        trim(format!("{v:.1}"))
    } else {
        trim(format!("{v:.3}"))
    }
}

fn max_y(panels: &[&Panel]) -> f64 {
    panels
        .iter()
        .flat_map(|p| p.series.iter())
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
}

/// (min, max) of the finite positive values of `f` over every point of `panels`.
fn span(panels: &[&Panel], f: impl Fn(&(f64, f64)) -> f64) -> Option<(f64, f64)> {
    let vals: Vec<f64> = panels
        .iter()
        .flat_map(|p| p.series.iter())
        .filter(|s| !matches!(s.mark, Mark::Target | Mark::Band))
        .flat_map(|s| s.points.iter().map(&f))
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = vals.iter().copied().fold(0.0, f64::max);
    (lo.is_finite() && hi > 0.0).then_some((lo, hi))
}

/// The legend keys of every series of `panels`, each label once.
fn keys(panels: &[&Panel]) -> Vec<(String, RGBColor, Mark)> {
    let mut out: Vec<(String, RGBColor, Mark)> = Vec::new();
    for s in panels.iter().flat_map(|p| p.series.iter()) {
        if !out.iter().any(|k| k.0 == s.label) {
            out.push((s.label.clone(), s.color, s.mark));
        }
    }
    out
}

/// The distinct x values of the points of `panels` (targets and bands aside), sorted.
fn xs(panels: &[&Panel]) -> Vec<f64> {
    let mut v: Vec<f64> = panels
        .iter()
        .flat_map(|p| p.series.iter())
        .filter(|s| !matches!(s.mark, Mark::Target | Mark::Band))
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .filter(|x| x.is_finite() && *x > 0.0)
        .collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

/// Debian's db_bench is built with assertions, which its own output warns make it slow.
fn db_bench_caveat(d: &Data) -> &'static str {
    if d.run.db_bench_assertions {
        " (Debian build, assertions on)"
    } else {
        ""
    }
}

fn quick_note(d: &Data) -> &'static str {
    if d.engine_writes.iter().any(|w| w.size == 500) {
        ""
    } else {
        " (quick run: fewer sizes and repetitions)"
    }
}

fn engine_writes(path: &Path, d: &Data) -> Result<Option<String>> {
    if d.engine_writes.is_empty() {
        return Ok(Some(
            "engine-writes.csv is missing (the engine bench did not run)".to_owned(),
        ));
    }
    let strategies = [
        (
            "raw-mono",
            "raw rust-rocksdb, same options (reference)",
            GRAY,
            Mark::Dashed,
        ),
        ("mono", "Mono", BLUE, Mark::Line),
        ("chunked-5000", "Chunked 5000", ORANGE, Mark::Line),
        ("adaptive", "Adaptive", GREEN, Mark::Line),
    ];
    // The reference system's claims that name a batch write: (mode, batch size, ops/s).
    let claims: Vec<(&str, f64, f64)> = CLAIMS
        .iter()
        .filter_map(|c| c.write.map(|w| (w.mode, w.ops as f64, c.value)))
        .collect();
    let range = claim(ClaimId::WalRange);
    let range_low = range.low.expect("the WAL-on claim is a range");
    let modes = [
        ("no-wal", "WAL off"),
        ("wal", "WAL on (no fsync)"),
        ("sync", "WAL + fsync per write"),
    ];
    let panels: Vec<Panel> = modes
        .iter()
        .map(|&(mode, caption)| {
            let mut series: Vec<Series> = strategies
                .iter()
                .map(|&(s, label, color, mark)| {
                    let mut pts: Vec<(f64, f64)> = d
                        .engine_writes
                        .iter()
                        .filter(|w| w.mode == mode && w.strategy == s)
                        .map(|w| (w.size as f64, w.ops_per_s_mean))
                        .collect();
                    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                    Series::new(label, color, mark, pts)
                })
                .collect();
            if mode == "wal" {
                series.insert(
                    0,
                    Series::new(
                        format!(
                            "reference system's claimed range, WAL on ({}-{})",
                            rate(range_low),
                            rate(range.value)
                        ),
                        RED,
                        Mark::Band,
                        vec![(0.0, range_low), (0.0, range.value)],
                    ),
                );
            }
            let mine: Vec<_> = claims.iter().filter(|c| c.0 == mode).collect();
            series.push(
                Series::new(
                    "reference system's claimed figure (their machine)",
                    RED,
                    Mark::Cross,
                    mine.iter().map(|c| (c.1, c.2)).collect(),
                )
                .notes(
                    mine.iter()
                        .map(|c| format!("{} claimed", rate(c.2)))
                        .collect(),
                ),
            );
            if let Some(db) = d.db_bench(mode, 1000) {
                series.push(
                    Series::new(
                        format!(
                            "RocksDB db_bench fillrandom, 1000-put batches{}",
                            db_bench_caveat(d)
                        ),
                        PURPLE,
                        Mark::Triangle,
                        vec![(1000.0, db.ops_per_s)],
                    )
                    .notes(vec!["db_bench".to_owned()]),
                );
            }
            Panel {
                caption: caption.to_owned(),
                x_desc: "batch size (ops per write)".to_owned(),
                y_desc: "throughput (ops/s)".to_owned(),
                series,
            }
        })
        .collect();
    let refs: Vec<&Panel> = panels.iter().collect();
    let mut sizes: Vec<f64> = d.engine_writes.iter().map(|w| w.size as f64).collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    let subtitle = format!(
        "16-byte keys in random order, 100-byte values; mean ops/s over the repetitions of a whole write{}",
        quick_note(d)
    );
    figure(
        path,
        (1950, 720),
        "Batch write throughput vs batch size: Mono / Chunked / Adaptive x WAL",
        &subtitle,
        (1, 3),
        |areas| {
            for (area, p) in areas.iter().zip(&panels) {
                let ymax = max_y(&[p]) * 1.12;
                panel(area, p, &Axis::log_at(sizes.clone()), &Axis::Lin(0.0..ymax))?;
            }
            Ok(keys(&refs))
        },
    )?;
    Ok(None)
}

fn adaptive_chunks(path: &Path, d: &Data) -> Result<Option<String>> {
    if d.adaptive_chunks.is_empty() {
        return Ok(Some(if d.engine_writes.is_empty() {
            "engine-adaptive.csv is missing (the engine bench did not run)".to_owned()
        } else {
            "engine-adaptive.csv is missing (this engine bench does not write per-chunk figures)"
                .to_owned()
        }));
    }
    let size = d.adaptive_chunks.iter().map(|c| c.size).max().unwrap_or(0);
    let modes = [
        ("no-wal", "WAL off", BLUE),
        ("wal", "WAL on (no fsync)", ORANGE),
        ("sync", "WAL + fsync per chunk", GREEN),
    ];
    // Steps: a chunk's value holds from its start to its end.
    let steps = |mode: &str, f: &dyn Fn(&AdaptiveChunkRow) -> f64| -> Vec<(f64, f64)> {
        d.adaptive_chunks
            .iter()
            .filter(|c| c.mode == mode && c.size == size)
            .flat_map(|c| [(c.start_ms, f(c)), (c.start_ms + c.elapsed_ms, f(c))])
            .collect()
    };
    let make = |caption: &str, y_desc: &str, f: &dyn Fn(&AdaptiveChunkRow) -> f64| Panel {
        caption: caption.to_owned(),
        x_desc: "time since the write began (ms)".to_owned(),
        y_desc: y_desc.to_owned(),
        series: modes
            .iter()
            .map(|&(m, label, color)| Series::new(label, color, Mark::Step, steps(m, f)))
            .filter(|s| !s.points.is_empty())
            .collect(),
    };
    let panels = [
        make(
            "Chunk size chosen by the controller",
            "chunk size (ops)",
            &|c| c.len as f64,
        ),
        make(
            "Throughput of each chunk",
            "chunk throughput (ops/s)",
            &|c| c.ops_per_s,
        ),
    ];
    let refs: Vec<&Panel> = panels.iter().collect();
    let Some((_, x_hi)) = span(&refs, |p| p.0) else {
        return Ok(Some("engine-adaptive.csv has no points".to_owned()));
    };
    let xb = 0.0..x_hi * 1.04;
    figure(
        path,
        (1500, 1000),
        &format!(
            "Adaptive chunk size over time: one write of {} ops",
            count(size as f64)
        ),
        &format!(
            "write_batch_adaptive_with_config, the default config for the write (and any ADAPT_* overrides); each step is one chunk (one WriteBatch), the last one is what remains{}",
            quick_note(d)
        ),
        (2, 1),
        |areas| {
            for (area, p) in areas.iter().zip(&panels) {
                let ymax = max_y(&[p]) * 1.15;
                panel(area, p, &Axis::Lin(xb.clone()), &Axis::Lin(0.0..ymax))?;
            }
            Ok(keys(&refs))
        },
    )?;
    Ok(None)
}

fn group_commit(path: &Path, d: &Data) -> Result<Option<String>> {
    if d.batcher.is_empty() {
        return Ok(Some(
            "batcher.csv is missing (the batcher bench did not run)".to_owned(),
        ));
    }
    let policies = [
        ("fixed-1000us", "Fixed(1 ms) wait", BLUE),
        ("tiered", "Tiered (the reference system's rule)", ORANGE),
        ("adaptive", "Adaptive", GREEN),
    ];
    let sinks = [
        ("fsync-like", "fsync-like sink (1-3 ms per flush)"),
        ("1us-per-item", "CPU-bound sink (1 µs per item)"),
    ];
    let series = |sink: &str, f: &dyn Fn(&BatcherRow) -> f64| -> Vec<Series> {
        policies
            .iter()
            .map(|&(p, label, color)| {
                let mut pts: Vec<(f64, f64)> = d
                    .batcher
                    .iter()
                    .filter(|b| b.sink == sink && b.policy == p)
                    .map(|b| (b.producers as f64, f(b)))
                    .collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                Series::new(label, color, Mark::Line, pts)
            })
            .filter(|s| !s.points.is_empty())
            .collect()
    };
    let mut panels = Vec::new();
    for (sink, caption) in sinks {
        panels.push(Panel {
            caption: format!("{caption}: throughput"),
            x_desc: "producers (closed-loop threads)".to_owned(),
            y_desc: "throughput (ops/s)".to_owned(),
            series: series(sink, &|b| b.ops_per_s),
        });
        let mut p99 = series(sink, &|b| b.p99_us / 1e3);
        p99.push(p99_target());
        panels.push(Panel {
            caption: format!("{caption}: p99 latency"),
            x_desc: "producers (closed-loop threads)".to_owned(),
            y_desc: "p99 latency (ms)".to_owned(),
            series: p99,
        });
    }
    draw_log_grid(
        path,
        "Group commit (batchkv-batcher): throughput and p99 vs producers, per wait policy",
        &format!(
            "each producer submits one item and waits for its answer; default BatchConfig (max 1000 items, max_wait 1 ms){}",
            if d.batcher.iter().any(|b| b.producers == 256) {
                ""
            } else {
                " (quick run)"
            }
        ),
        (2, 2),
        (1700, 1250),
        &panels,
    )?;
    Ok(None)
}

/// The reference system's p99 target, a line across a latency panel in ms.
fn p99_target() -> Series {
    let t = claim(ClaimId::P99Target);
    Series::new(
        format!("reference system's target: {}", t.what),
        BROWN,
        Mark::Target,
        vec![(0.0, t.value)],
    )
}

/// A grid of panels over a log x axis labelled at the data's x values, each with its own y
/// range (logarithmic where it spans a decade or more).
fn draw_log_grid(
    path: &Path,
    title: &str,
    subtitle: &str,
    grid: (usize, usize),
    size: (u32, u32),
    panels: &[Panel],
) -> Result<()> {
    let refs: Vec<&Panel> = panels.iter().collect();
    let x = Axis::log_at(xs(&refs));
    figure(path, size, title, subtitle, grid, |areas| {
        for (area, p) in areas.iter().zip(panels) {
            let (lo, hi) = span(&[p], |p| p.1).ok_or_else(|| anyhow!("no points"))?;
            // Targets count for the range too: they must be visible.
            let targets = p
                .series
                .iter()
                .filter(|s| s.mark == Mark::Target)
                .flat_map(|s| s.points.iter().map(|p| p.1));
            let (lo, hi) = targets.fold((lo, hi), |(l, h), t| (l.min(t), h.max(t)));
            // A log axis where the values span a decade or more.
            let y = if hi / lo >= 10.0 {
                Axis::log(lo / 1.6, hi * 1.6)
            } else {
                Axis::Lin(0.0..hi * 1.15)
            };
            panel(area, p, &x, &y)?;
        }
        Ok(keys(&refs))
    })
}

fn store_put(path: &Path, d: &Data) -> Result<Option<String>> {
    let modes = [
        ("sync", "sync: fsync per group commit", RED),
        ("wal", "wal: WAL, no fsync", BLUE),
        ("none", "none: no WAL", GREEN),
    ];
    let mut thr = Vec::new();
    let mut p99 = Vec::new();
    for (mode, label, color) in modes {
        let ops = d.store_series(&format!("store/put/{mode}/"), StoreMetric::OpsPerS);
        if ops.is_empty() {
            continue;
        }
        thr.push(Series::new(label, color, Mark::Line, ops));
        p99.push(Series::new(
            label,
            color,
            Mark::Line,
            d.store_series(&format!("store/put/{mode}/"), StoreMetric::P99Ns)
                .into_iter()
                .map(|(t, ns)| (t, ns / 1e6))
                .collect(),
        ));
        let raw = d.store_series(&format!("store/raw/put/{mode}/"), StoreMetric::OpsPerS);
        if !raw.is_empty() {
            thr.push(Series::new(
                format!("raw rust-rocksdb single puts, {mode} (reference)"),
                color,
                Mark::Triangle,
                raw,
            ));
        }
        let raw99: Vec<(f64, f64)> = d
            .store_series(&format!("store/raw/put/{mode}/"), StoreMetric::P99Ns)
            .into_iter()
            .map(|(t, ns)| (t, ns / 1e6))
            .collect();
        if !raw99.is_empty() {
            p99.push(Series::new(
                format!("raw rust-rocksdb single puts, {mode} (reference)"),
                color,
                Mark::Triangle,
                raw99,
            ));
        }
    }
    if thr.is_empty() {
        return Ok(Some(
            "store.csv is missing or has no store/put cases (the store bench did not run)"
                .to_owned(),
        ));
    }
    let writes = claim(ClaimId::Writes);
    thr.push(Series::new(
        format!("System G's claim: {}", writes.what),
        PURPLE,
        Mark::Target,
        vec![(0.0, writes.value)],
    ));
    p99.push(p99_target());
    let panels = [
        Panel {
            caption: "Throughput".to_owned(),
            x_desc: "client threads (closed loop)".to_owned(),
            y_desc: "throughput (puts/s)".to_owned(),
            series: thr,
        },
        Panel {
            caption: "p99 latency of one put".to_owned(),
            x_desc: "client threads (closed loop)".to_owned(),
            y_desc: "p99 latency (ms)".to_owned(),
            series: p99,
        },
    ];
    draw_log_grid(
        path,
        "Store puts (batcher + codec + MVCC + engine): throughput and p99 vs client threads",
        "each client puts one key (16 B, 100-byte value) and waits for its answer; per durability mode, beside raw rust-rocksdb",
        (1, 2),
        (1800, 780),
        &panels,
    )?;
    Ok(None)
}

/// (label, ratio, group) bars of the overhead plot.
fn overhead_bars(d: &Data) -> Vec<(String, f64, usize)> {
    let mut bars = Vec::new();
    for (s, label) in [
        ("mono", "engine Mono"),
        ("chunked-5000", "engine Chunked 5000"),
        ("adaptive", "engine Adaptive"),
    ] {
        if let Some((g, n)) = d.engine_vs_raw(s, None) {
            bars.push((
                format!("{label} / raw rust-rocksdb (geo. mean, {n} writes)"),
                g,
                0,
            ));
        }
    }
    for r in &d.engine_reads {
        bars.push((
            format!("engine {} / raw rust-rocksdb", r.read),
            r.engine_ops_per_s / r.raw_ops_per_s,
            0,
        ));
    }
    if let (Some(e), Some(r)) = (
        d.mvcc(
            "mvcc/apply/1000/insert",
            MvccSide::RawEngine,
            MvccMetric::OpsPerS,
        ),
        d.mvcc(
            "mvcc/apply/1000/insert",
            MvccSide::RawRocksdb,
            MvccMetric::OpsPerS,
        ),
    ) {
        bars.push((
            "raw engine batch, 1000 puts / raw rust-rocksdb".to_owned(),
            e / r,
            0,
        ));
    }
    for entry in ["1", "100", "1000"] {
        for kind in ["insert", "update"] {
            let case = format!("mvcc/apply/{entry}/{kind}");
            if let (Some(m), Some(r)) = (
                d.mvcc(&case, MvccSide::Mvcc, MvccMetric::OpsPerS),
                d.mvcc(&case, MvccSide::RawRocksdb, MvccMetric::OpsPerS),
            ) {
                bars.push((
                    format!("MVCC apply, {entry}-put entries, {kind} / raw rust-rocksdb"),
                    m / r,
                    1,
                ));
            }
        }
    }
    for (case, label, reference) in [
        ("mvcc/get/latest", "MVCC get, latest", MvccSide::RawRocksdb),
        (
            "mvcc/get/old",
            "MVCC get, old revision",
            MvccSide::RawRocksdb,
        ),
    ] {
        if let (Some(m), Some(r)) = (
            d.mvcc(case, MvccSide::Mvcc, MvccMetric::NsPerOp),
            d.mvcc(case, reference, MvccMetric::NsPerOp),
        ) {
            bars.push((format!("{label} / raw rust-rocksdb get"), r / m, 1));
        }
    }
    if let (Some(m), Some(r)) = (
        d.mvcc("mvcc/range/1000", MvccSide::Mvcc, MvccMetric::UsPerOp),
        d.mvcc("mvcc/range/1000", MvccSide::RawEngine, MvccMetric::UsPerOp),
    ) {
        bars.push((
            "MVCC range of 1000 keys / raw engine range".to_owned(),
            r / m,
            1,
        ));
    }
    for (mode, threads) in [("sync", 1), ("wal", 1), ("none", 1), ("sync", 64)] {
        if let (Some(o), Some(r)) = (
            d.store(&format!("store/put/{mode}/{threads}"), StoreMetric::OpsPerS),
            d.store(
                &format!("store/raw/put/{mode}/{threads}"),
                StoreMetric::OpsPerS,
            ),
        ) {
            bars.push((
                format!("Store put, {mode}, {threads} thr. / raw rust-rocksdb put"),
                o / r,
                2,
            ));
        }
    }
    for mode in ["wal", "none"] {
        let case = format!("store/codec/apply/{mode}");
        if let (Some(p), Some(direct)) = (
            d.store(&case, StoreMetric::PipelinePutsPerS),
            d.store(&case, StoreMetric::DirectPutsPerS),
        ) {
            bars.push((
                format!("MVCC apply with codec / without, {mode}"),
                p / direct,
                2,
            ));
        }
    }
    bars
}

/// Horizontal bars of ratios, one per row, labels on the left.
fn bars(
    path: &Path,
    title: &str,
    subtitle: &str,
    x_desc: &str,
    rows: &[(String, f64, usize)],
    groups: &[(&str, RGBColor)],
) -> Result<()> {
    let n = rows.len();
    let height = 76 + 70 + 130 + 38 * n as u32;
    let xmax = rows.iter().map(|r| r.1).fold(1.0, f64::max) * 1.18;
    let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    figure(path, (1700, height), title, subtitle, (1, 1), |areas| {
        let area = &areas[0];
        let yb = -0.6..(n as f64 - 0.4);
        let mut chart = ChartBuilder::on(area)
            .margin(14)
            .margin_right(40)
            .x_label_area_size(58)
            .y_label_area_size(560)
            .build_cartesian_2d(0.0..xmax, yb)
            .map_err(err)?;
        let label_of = |v: &f64| {
            let i = v.round();
            if (v - i).abs() > 0.01 || i < 0.0 {
                return String::new();
            }
            // Row 0 at the top.
            let idx = n as i64 - 1 - i as i64;
            usize::try_from(idx)
                .ok()
                .and_then(|k| names.get(k))
                .cloned()
                .unwrap_or_default()
        };
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_label_formatter(&label_of)
            .x_label_formatter(&|x| format!("{x:.1}"))
            .y_labels(n + 2)
            .x_labels(12)
            .max_light_lines(1)
            .disable_y_mesh()
            .label_style((SANS, 15).into_font().color(&BLACK))
            .axis_desc_style((SANS, 16).into_font().color(&BLACK))
            .bold_line_style(RGBColor(215, 215, 215))
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(err)?;
        for (i, (_, ratio, group)) in rows.iter().enumerate() {
            let y = (n - 1 - i) as f64;
            let color = groups.get(*group).map_or(GRAY, |g| g.1);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y - 0.32), (*ratio, y + 0.32)],
                    color.filled(),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{ratio:.2}"),
                    (*ratio + xmax * 0.006, y + 0.22),
                    (SANS, 15).into_font().color(&BLACK),
                )))
                .map_err(err)?;
        }
        chart
            .draw_series(DashedLineSeries::new(
                [(1.0, -0.6), (1.0, n as f64 - 0.4)],
                6,
                4,
                RED.stroke_width(2),
            ))
            .map_err(err)?;
        let mut k: Vec<(String, RGBColor, Mark)> = groups
            .iter()
            .filter(|(_, c)| {
                rows.iter()
                    .any(|r| groups.get(r.2).is_some_and(|g| g.1 == *c))
            })
            .map(|(l, c)| ((*l).to_owned(), *c, Mark::Bar))
            .collect();
        k.push((
            "1.0: as fast as the reference".to_owned(),
            RED,
            Mark::Dashed,
        ));
        Ok(k)
    })
}

fn overhead(path: &Path, d: &Data) -> Result<Option<String>> {
    let rows = overhead_bars(d);
    if rows.is_empty() {
        return Ok(Some(
            "no same-run reference pairs (engine, mvcc and store benches did not run)".to_owned(),
        ));
    }
    bars(
        path,
        "MVCC and pipeline overhead vs raw RocksDB (same run)",
        "throughput of each batchkv layer over raw rust-rocksdb (or the layer below) with the same options and data; > 1 is faster",
        "throughput ratio (1.0 = same as the reference)",
        &rows,
        &[
            ("engine (batchkv-engine)", BLUE),
            ("MVCC (batchkv-mvcc)", GREEN),
            ("whole write path (batchkv Store)", ORANGE),
        ],
    )?;
    Ok(None)
}

fn db_bench(path: &Path, d: &Data) -> Result<Option<String>> {
    if d.db_bench.is_empty() {
        return Ok(Some(
            "db_bench.csv is missing (RocksDB's db_bench is not installed, or was filtered out)"
                .to_owned(),
        ));
    }
    let mut rows = Vec::new();
    for db in &d.db_bench {
        let store_mode = if db.mode == "no-wal" {
            "none"
        } else {
            db.mode.as_str()
        };
        let what = format!(
            "{}, {} (db_bench {} ops/s)",
            if db.batch == 1 {
                "single puts".to_owned()
            } else {
                format!("{}-put batches", count(db.batch as f64))
            },
            match db.mode.as_str() {
                "no-wal" => "WAL off",
                "wal" => "WAL on",
                _ => "WAL + sync",
            },
            rate(db.ops_per_s)
        );
        let raw = if db.batch == 1000 {
            d.store(
                &format!("store/raw/batch1000/{store_mode}"),
                StoreMetric::OpsPerS,
            )
        } else {
            d.store(
                &format!("store/raw/put/{store_mode}/1"),
                StoreMetric::OpsPerS,
            )
        };
        if let Some(r) = raw {
            rows.push((format!("{what}: rust-rocksdb"), r / db.ops_per_s, 0));
        }
        if db.batch == 1
            && let Some(o) = d.store(&format!("store/put/{store_mode}/1"), StoreMetric::OpsPerS)
        {
            rows.push((format!("{what}: Store, 1 client"), o / db.ops_per_s, 1));
        }
    }
    if rows.is_empty() {
        return Ok(Some(
            "no rust-rocksdb figure of the same workload in this run (the store bench did not run)"
                .to_owned(),
        ));
    }
    bars(
        path,
        "rust-rocksdb and batchkv vs RocksDB's db_bench (same run)",
        &format!(
            "sustained writes, 16-byte keys, 100-byte incompressible values, the engine's options; {}{}",
            d.run.db_bench,
            db_bench_caveat(d)
        ),
        "throughput ratio (1.0 = as fast as db_bench)",
        &rows,
        &[
            ("raw rust-rocksdb (the store bench's raw cases)", GRAY),
            ("batchkv Store", BLUE),
        ],
    )?;
    Ok(None)
}

fn server(path: &Path, d: &Data) -> Result<Option<String>> {
    if d.server.is_empty() {
        return Ok(Some(
            "server.csv is missing (the server bench did not run)".to_owned(),
        ));
    }
    let workloads = [
        ("put", BLUE),
        ("get", GREEN),
        ("range", ORANGE),
        ("txn", RED),
    ];
    let mut thr = Vec::new();
    let mut p99 = Vec::new();
    for (w, color) in workloads {
        for (server, mark) in [("batchkv", Mark::Line), ("etcd", Mark::Dashed)] {
            let ops = d.server_series(server, w, |r| r.ops_per_s);
            if ops.is_empty() {
                continue;
            }
            thr.push(Series::new(format!("{w}, {server}"), color, mark, ops));
            p99.push(Series::new(
                format!("{w}, {server}"),
                color,
                mark,
                d.server_series(server, w, |r| r.p99_us / 1e3),
            ));
        }
    }
    let panels = [
        Panel {
            caption: "Throughput (solid: batchkv, dashed: etcd)".to_owned(),
            x_desc: "clients (closed loop)".to_owned(),
            y_desc: "throughput (requests/s)".to_owned(),
            series: thr,
        },
        Panel {
            caption: "p99 latency of one request".to_owned(),
            x_desc: "clients (closed loop)".to_owned(),
            y_desc: "p99 latency (ms)".to_owned(),
            series: p99,
        },
    ];
    draw_log_grid(
        path,
        "batchkv serve vs etcd 3.4 over gRPC: throughput and p99 vs clients",
        &format!(
            "16 B keys, 100 B values, both fsync before answering; up to 16 connections{}",
            if d.run.quick {
                " (quick run: 1 s per point)"
            } else {
                ""
            }
        ),
        (1, 2),
        (1800, 780),
        &panels,
    )?;
    Ok(None)
}

fn workloads(path: &Path, d: &Data) -> Result<Option<String>> {
    let ratios = d.workload_ratios();
    if ratios.is_empty() {
        return Ok(Some(
            "workloads.csv is missing (the workloads bench did not run)".to_owned(),
        ));
    }
    // Group by client threads: 1 first, then 16.
    let rows: Vec<(String, f64, usize)> = ratios
        .into_iter()
        .map(|(case, ratio, threads)| (case, ratio, usize::from(threads > 1)))
        .collect();
    bars(
        path,
        "Mixed workloads: the Store over raw rust-rocksdb (same run)",
        &format!(
            "throughput ratio per case (workload/keys/threads); 16 B keys, 100 B values, Store with \
             Durability::Wal, raw with the WAL on, no sync{}",
            if d.run.quick { " (quick run)" } else { "" }
        ),
        "throughput ratio (1.0 = as fast as raw rust-rocksdb)",
        &rows,
        &[("1 client thread", BLUE), ("16 client threads", ORANGE)],
    )?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use batchkv_benches::rows::{DbBenchRow, EngineWriteRow};

    use super::*;

    #[test]
    fn log_ticks_label_every_range() {
        assert_eq!(log_ticks(1.0, 1000.0), vec![1.0, 10.0, 100.0, 1000.0]);
        assert_eq!(
            log_ticks(2.5, 12.0),
            vec![3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
        );
        assert_eq!(log_ticks(0.05, 2.0), vec![0.05, 0.1, 0.2, 0.5, 1.0, 2.0]);
        assert_eq!(si(&1_500_000.0), "1.5M");
        assert_eq!(si(&20_000.0), "20K");
        assert_eq!(si(&0.05), "0.05");
    }

    /// Draws the plots of a small made-up run: those with data are drawn (where the font is
    /// installed), the others say which file they miss.
    #[test]
    fn draws_what_it_has_data_for() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let mut d = Data::default();
        for (i, mode) in ["no-wal", "wal", "sync"].into_iter().enumerate() {
            for size in [100, 1000, 10_000, 100_000] {
                for strategy in ["raw-mono", "mono", "chunked-5000", "adaptive"] {
                    d.engine_writes.push(EngineWriteRow {
                        mode: mode.to_owned(),
                        size,
                        strategy: strategy.to_owned(),
                        ops_per_s_mean: 3e6 / (1.0 + i as f64) / (size as f64).log10(),
                        rsd_pct: 5.0,
                        reps: 2,
                        chunks: 1,
                        final_chunk: 0,
                    });
                }
            }
            d.db_bench.push(DbBenchRow {
                mode: mode.to_owned(),
                batch: 1000,
                num: 200_000,
                ops_per_s: 400_000.0,
                micros_per_op: 2.5,
            });
        }
        for policy in ["fixed-1000us", "tiered", "adaptive"] {
            for sink in ["fsync-like", "1us-per-item"] {
                for p in [1, 4, 16, 64] {
                    d.batcher.push(BatcherRow {
                        sink: sink.to_owned(),
                        policy: policy.to_owned(),
                        producers: p,
                        ops: 300 * p as u64,
                        secs: 1.0,
                        ops_per_s: 300.0 * p as f64,
                        p50_us: 2000.0,
                        p99_us: 3000.0 + 10.0 * p as f64,
                        mean_batch: p as f64,
                    });
                }
            }
        }
        let plots = all(dir, &d);
        let by_file = |f: &str| plots.iter().find(|p| p.file == f).expect("listed");
        match fonts() {
            Ok(()) => {
                for f in ["engine-writes.png", "group-commit.png", "overhead.png"] {
                    assert_eq!(by_file(f).skipped, None, "{f}");
                    let png = std::fs::read(dir.join(f)).expect("written");
                    assert!(png.starts_with(b"\x89PNG"), "{f} is a PNG");
                }
                let skipped = by_file("store-put.png")
                    .skipped
                    .clone()
                    .expect("no store.csv");
                assert!(skipped.contains("store.csv"), "{skipped}");
                let skipped = by_file("engine-adaptive-chunks.png").skipped.clone();
                assert!(skipped.expect("no data").contains("engine-adaptive.csv"));
            }
            Err(e) => assert!(plots.iter().all(|p| p.skipped.as_ref() == Some(&e))),
        }
    }
}
