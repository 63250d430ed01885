//! Line charts for reports, as SVG and PNG (plotters). Text is drawn with an embedded DejaVu
//! Sans, so no system font or library is needed. Files are written atomically.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

/// A chart that could not be drawn or written.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw {path}: {message}")]
pub struct PlotError {
    pub path: PathBuf,
    pub message: String,
}

/// What plotters or the PNG encoder said went wrong.
#[derive(Debug)]
struct DrawError(String);

impl DrawError {
    fn from(e: impl std::fmt::Display) -> Self {
        DrawError(e.to_string())
    }
}

/// One line: a label, its points, and a band (x, low, high) drawn behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub band: Vec<(f64, f64, f64)>,
}

impl Series {
    pub fn new(label: &str) -> Self {
        Series {
            label: label.into(),
            points: Vec::new(),
            band: Vec::new(),
        }
    }
}

/// A chart: written as `<file>.svg` and `<file>.png`.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    pub file: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_y: bool,
    /// Names of x = 0, 1, 2, ... for a categorical x axis.
    pub categories: Option<Vec<String>>,
    pub series: Vec<Series>,
}

const SIZE: (u32, u32) = (1200, 640);
/// Width of the plot; the legend takes the rest.
const PLOT_WIDTH: u32 = 860;
const FONT: &str = "sans-serif";

/// Okabe–Ito, then Paul Tol's muted scheme: distinguishable with the common colour-vision
/// deficiencies.
const PALETTE: [RGBColor; 12] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(230, 159, 0),
    RGBColor(0, 0, 0),
    RGBColor(136, 34, 85),
    RGBColor(68, 170, 153),
    RGBColor(153, 153, 51),
    RGBColor(51, 34, 136),
    RGBColor(221, 204, 119),
];

/// Legend entries drawn beside the plot; more are summarised in one line.
const LEGEND_MAX: usize = 24;

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font, shipped by the dejavu crate.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

/// Draws `chart` into `dir` as SVG and PNG; returns their paths.
pub fn draw(chart: &Chart, dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    register_font();
    let svg_path = dir.join(format!("{}.svg", chart.file));
    let png_path = dir.join(format!("{}.png", chart.file));
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |e: DrawError| PlotError { path, message: e.0 }
    };

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        render(chart, &root).map_err(fail(&svg_path))?;
        root.present()
            .map_err(|e| fail(&svg_path)(DrawError::from(e)))?;
    }
    let mut pixels = vec![255u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        render(chart, &root).map_err(fail(&png_path))?;
        root.present()
            .map_err(|e| fail(&png_path)(DrawError::from(e)))?;
    }
    let image = image::RgbImage::from_raw(SIZE.0, SIZE.1, pixels).expect("buffer of the size");
    let mut png = Cursor::new(Vec::new());
    image
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| fail(&png_path)(DrawError::from(e)))?;

    for (path, bytes) in [(&svg_path, svg.into_bytes()), (&png_path, png.into_inner())] {
        crate::fs::write_bytes_atomic(path, &bytes).map_err(|e| fail(path)(DrawError::from(e)))?;
    }
    Ok(vec![svg_path, png_path])
}

/// The range of x and of y over points and bands, padded; y positive for a log axis.
fn ranges(chart: &Chart) -> Option<((f64, f64), (f64, f64))> {
    let ok = |y: f64| y.is_finite() && (!chart.log_y || y > 0.0);
    let xs = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = chart.series.iter().flat_map(|s| {
        s.points
            .iter()
            .map(|p| p.1)
            .chain(s.band.iter().flat_map(|b| [b.1, b.2]))
    });
    let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    let (y0, y1) = ys
        .filter(|&y| ok(y))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
            (a.min(y), b.max(y))
        });
    if !(x0.is_finite() && y0.is_finite()) {
        return None;
    }
    let x = match &chart.categories {
        Some(c) => (-0.5, c.len() as f64 - 0.5),
        None if x1 > x0 => (x0, x1),
        None => (x0 - 1.0, x1 + 1.0),
    };
    let y = if chart.log_y {
        (y0 / 1.5, y1 * 1.5)
    } else if chart.categories.is_some() {
        (-0.05, 1.05)
    } else {
        let pad = ((y1 - y0) * 0.05).max(1e-9);
        (y0 - pad, y1 + pad)
    };
    Some((x, y))
}

fn render<DB: DrawingBackend>(
    chart: &Chart,
    root: &DrawingArea<DB, Shift>,
) -> Result<(), DrawError> {
    let err = |e: &dyn std::fmt::Display| DrawError::from(e);
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let Some(((x0, x1), (y0, y1))) = ranges(chart) else {
        return Ok(());
    };
    let (plot, legend) = root.split_horizontally(PLOT_WIDTH);
    if chart.log_y {
        render_on(chart, &plot, x0..x1, (y0..y1).log_scale())?;
    } else {
        render_on(chart, &plot, x0..x1, y0..y1)?;
    }
    // The legend, beside the plot so it hides no data.
    for (i, s) in chart.series.iter().enumerate().take(LEGEND_MAX) {
        let y = 70 + 22 * i as i32;
        let color = PALETTE[i % PALETTE.len()];
        legend
            .draw(&PathElement::new(
                vec![(8, y), (34, y)],
                color.stroke_width(3),
            ))
            .map_err(|e| err(&e))?;
        legend
            .draw(&Text::new(s.label.clone(), (42, y - 8), (FONT, 14)))
            .map_err(|e| err(&e))?;
    }
    if chart.series.len() > LEGEND_MAX {
        let y = 70 + 22 * LEGEND_MAX as i32;
        let more = format!(
            "... {} more (colours repeat)",
            chart.series.len() - LEGEND_MAX
        );
        legend
            .draw(&Text::new(more, (8, y - 8), (FONT, 14)))
            .map_err(|e| err(&e))?;
    }
    Ok(())
}

/// A tick label: powers of ten on a log axis, the shortest decimal otherwise (0.9, 250).
fn tick(v: f64, log: bool) -> String {
    if log {
        let e = v.log10();
        if (e - e.round()).abs() < 1e-6 {
            return format!("1e{}", e.round());
        }
        return format!("{v:.1e}");
    }
    let scale = 10f64.powi(6 - v.abs().max(1e-12).log10().ceil() as i32);
    format!("{}", (v * scale).round() / scale)
}

fn render_on<DB: DrawingBackend, Y>(
    chart: &Chart,
    root: &DrawingArea<DB, Shift>,
    x: std::ops::Range<f64>,
    y: Y,
) -> Result<(), DrawError>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let err = |e: &dyn std::fmt::Display| DrawError::from(e);
    let mut cc = ChartBuilder::on(root)
        .caption(&chart.title, (FONT, 22))
        .margin(18)
        .x_label_area_size(55)
        .y_label_area_size(85)
        .build_cartesian_2d(x, y)
        .map_err(|e| err(&e))?;
    let categories = chart.categories.clone();
    let log_y = chart.log_y;
    let y_format = move |v: &f64| tick(*v, log_y);
    let x_format = move |v: &f64| match &categories {
        Some(c) => {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < c.len() {
                c[i as usize].clone()
            } else {
                String::new()
            }
        }
        None => format!("{v}"),
    };
    let mut mesh = cc.configure_mesh();
    mesh.x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .light_line_style(WHITE.mix(0.0));
    if let Some(c) = &chart.categories {
        mesh.x_labels(c.len() * 4 + 1);
    }
    mesh.draw().map_err(|e| err(&e))?;

    for (i, s) in chart.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        if !s.band.is_empty() {
            let mut polygon: Vec<(f64, f64)> = s.band.iter().map(|b| (b.0, b.1)).collect();
            polygon.extend(s.band.iter().rev().map(|b| (b.0, b.2)));
            cc.draw_series(std::iter::once(Polygon::new(
                polygon,
                color.mix(0.15).filled(),
            )))
            .map_err(|e| err(&e))?;
        }
        cc.draw_series(LineSeries::new(
            s.points.iter().copied(),
            color.stroke_width(2),
        ))
        .map_err(|e| err(&e))?;
        if chart.categories.is_some() || s.points.len() < 30 {
            cc.draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(|e| err(&e))?;
        }
    }
    Ok(())
}
