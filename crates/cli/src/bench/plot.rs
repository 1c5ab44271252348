//! The SVG charts of a sweep (plotters' SVG backend: text is written as SVG `<text>`, so no
//! font library is needed). The swept values are evenly spaced on the x axis, at positions
//! 0, 1, 2, ... labelled with the values (sweeps are usually geometric: 1, 4, 16, ...); one
//! line per target and figure.

use super::sweep::{Dimension, Row};
use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordi32;
use plotters::prelude::*;
use std::path::Path;

const SIZE: (u32, u32) = (800, 480);

/// One line of a chart.
struct Line {
    label: String,
    /// (swept value, figure)
    points: Vec<(u64, f64)>,
    color: RGBColor,
    /// Drawn thin with triangles (a tail figure), else thick with dots.
    tail: bool,
}

/// Successful operations per second against the swept value, one line per target.
pub fn throughput(path: &Path, dim: Dimension, rows: &[Row]) -> Result<()> {
    let lines = by_target(rows)
        .into_iter()
        .enumerate()
        .map(|(i, (target, rs))| Line {
            label: format!("{target} ops/s"),
            points: rs.iter().map(|r| (r.value, r.ops_per_s)).collect(),
            color: color(i),
            tail: false,
        })
        .collect::<Vec<_>>();
    let title = format!("throughput vs {}", dim.label());
    draw(
        path,
        &title,
        dim,
        "successful operations / s",
        &lines,
        false,
    )
}

/// p50 and p99 latency (ms, log scale) against the swept value, two lines per target.
pub fn latency(path: &Path, dim: Dimension, rows: &[Row]) -> Result<()> {
    let mut lines = Vec::new();
    for (i, (target, rs)) in by_target(rows).into_iter().enumerate() {
        for (name, tail, get) in [
            ("p50", false, (|r: &Row| r.p50_ms) as fn(&Row) -> f64),
            ("p99", true, |r: &Row| r.p99_ms),
        ] {
            lines.push(Line {
                label: format!("{target} {name}"),
                points: rs.iter().map(|r| (r.value, get(r))).collect(),
                color: color(i),
                tail,
            });
        }
    }
    let title = format!("latency vs {}", dim.label());
    draw(path, &title, dim, "latency (ms, log scale)", &lines, true)
}

/// The rows grouped by target, targets in order of first appearance.
fn by_target(rows: &[Row]) -> Vec<(&str, Vec<&Row>)> {
    let mut groups: Vec<(&str, Vec<&Row>)> = Vec::new();
    for r in rows {
        match groups.iter_mut().find(|(t, _)| *t == r.target) {
            Some((_, g)) => g.push(r),
            None => groups.push((&r.target, vec![r])),
        }
    }
    groups
}

fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 4] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
    ];
    COLORS[i % COLORS.len()]
}

/// A swept value as an axis label.
fn value_label(dim: Dimension, v: u64) -> String {
    match dim {
        Dimension::Value if v >= 1 << 20 && v.is_multiple_of(1 << 20) => format!("{} MiB", v >> 20),
        Dimension::Value if v >= 1 << 10 && v.is_multiple_of(1 << 10) => format!("{} KiB", v >> 10),
        Dimension::Reads => format!("{v}%"),
        _ => v.to_string(),
    }
}

fn draw(
    path: &Path,
    title: &str,
    dim: Dimension,
    y_label: &str,
    lines: &[Line],
    log_y: bool,
) -> Result<()> {
    let mut xs: Vec<u64> = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .collect();
    xs.sort_unstable();
    xs.dedup();
    if xs.is_empty() {
        return Err(anyhow!("nothing to plot"));
    }
    let figures = || lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
    let max = figures().fold(0.0, f64::max).max(1e-3);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    // One empty position either side.
    let x_range = -1..xs.len() as i32;
    if log_y {
        let min = figures().filter(|&f| f > 0.0).fold(max, f64::min).max(1e-3);
        let chart = chart_on(&root, title)
            .build_cartesian_2d(x_range, (min * 0.7..max * 1.5).log_scale())
            .map_err(plot_err)?;
        finish(chart, &xs, dim, y_label, lines)?;
    } else {
        let chart = chart_on(&root, title)
            .build_cartesian_2d(x_range, 0.0..max * 1.15)
            .map_err(plot_err)?;
        finish(chart, &xs, dim, y_label, lines)?;
    }
    root.present()
        .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))
}

fn chart_on<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut b = ChartBuilder::on(root);
    b.caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72);
    b
}

/// Mesh, axis labels, lines and legend on a chart whose x axis is the swept values' index.
fn finish<'a, Y>(
    mut chart: ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordi32, Y>>,
    xs: &[u64],
    dim: Dimension,
    y_label: &str,
    lines: &[Line],
) -> Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let x_label = |i: &i32| {
        usize::try_from(*i)
            .ok()
            .and_then(|i| xs.get(i))
            .map(|&v| value_label(dim, v))
            .unwrap_or_default()
    };
    chart
        .configure_mesh()
        .x_desc(dim.label())
        .y_desc(y_label)
        .x_labels(xs.len() + 2)
        .max_light_lines(1)
        .x_label_formatter(&x_label)
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .map_err(plot_err)?;
    for line in lines {
        let at = |v: u64| xs.partition_point(|&x| x < v) as i32;
        let points: Vec<_> = line.points.iter().map(|&(v, y)| (at(v), y)).collect();
        let style = ShapeStyle::from(line.color).stroke_width(if line.tail { 1 } else { 2 });
        chart
            .draw_series(LineSeries::new(points.clone(), style))
            .map_err(plot_err)?
            .label(&line.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        if line.tail {
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&p| TriangleMarker::new(p, 5, line.color.filled())),
                )
                .map_err(plot_err)?;
        } else {
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&p| Circle::new(p, 4, line.color.filled())),
                )
                .map_err(plot_err)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("plotting: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_labels_use_binary_units_where_exact() {
        assert_eq!(value_label(Dimension::Value, 256), "256");
        assert_eq!(value_label(Dimension::Value, 4096), "4 KiB");
        assert_eq!(value_label(Dimension::Value, 1 << 20), "1 MiB");
        assert_eq!(value_label(Dimension::Reads, 95), "95%");
        assert_eq!(value_label(Dimension::Clients, 1024), "1024");
    }
}
