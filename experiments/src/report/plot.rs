//! Figures for reports, sized for a paper: small multiples of line charts (one panel per value
//! of a facet key, shared axes), drawn with plotters as SVG and PNG (300 dpi) and converted
//! from the SVG to a vector PDF with its font embedded (svg2pdf), with the plotted data as CSV
//! beside them. Text is drawn with an embedded DejaVu Sans, so no system font or library is
//! needed. Files are written atomically.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Once, OnceLock};

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::{text_anchor, FontTransform};
use svg2pdf::usvg;

/// A chart that could not be drawn or written.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw {path}: {message}")]
pub struct PlotError {
    pub path: PathBuf,
    pub message: String,
}

/// What plotters, the converter or an encoder said went wrong.
#[derive(Debug)]
pub(super) struct DrawError(String);

impl DrawError {
    pub(super) fn from(e: impl std::fmt::Display) -> Self {
        DrawError(e.to_string())
    }
}

/// One line: the values of its chart's `keys`, its points, and a band (x, low, high) drawn
/// behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub keys: Vec<String>,
    pub points: Vec<(f64, f64)>,
    pub band: Vec<(f64, f64, f64)>,
}

impl Series {
    pub fn new(keys: Vec<String>) -> Self {
        Series {
            keys,
            points: Vec::new(),
            band: Vec::new(),
        }
    }
}

/// A chart: written as `<file>.pdf`, `.svg`, `.png` and its data as `<file>.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    pub file: String,
    /// What the figure shows (for the report's listing; a paper's caption says it).
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// A log x axis (points at x <= 0 are left out).
    pub log_x: bool,
    pub log_y: bool,
    /// A horizontal reference line at this y (e.g. 0 for exponents, whose sign matters), kept
    /// within the y range.
    pub reference_y: Option<f64>,
    /// Names of x = 0, 1, 2, ... for a categorical x axis.
    pub categories: Option<Vec<String>>,
    /// The keys that tell the series apart (each series has one value of each).
    pub keys: Vec<String>,
    /// The CSV's names of x, y, the band's low and high end.
    pub columns: [String; 4],
    pub series: Vec<Series>,
}

/// A figure file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlotFormat {
    Pdf,
    Svg,
    Png,
}

impl PlotFormat {
    pub fn ext(self) -> &'static str {
        match self {
            PlotFormat::Pdf => "pdf",
            PlotFormat::Svg => "svg",
            PlotFormat::Png => "png",
        }
    }
}

impl FromStr for PlotFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pdf" => Ok(PlotFormat::Pdf),
            "svg" => Ok(PlotFormat::Svg),
            "png" => Ok(PlotFormat::Png),
            _ => Err("expected pdf, svg or png (e.g. --plot-format pdf,png)".into()),
        }
    }
}

/// Which key gets one panel per value.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Facet {
    /// `cell` when the series differ in it, else one panel.
    #[default]
    Auto,
    /// One panel.
    None,
    Key(String),
}

impl FromStr for Facet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" => Err("--facet needs a key (e.g. --facet cell) or `none`".into()),
            "none" => Ok(Facet::None),
            "auto" => Ok(Facet::Auto),
            k => Ok(Facet::Key(k.into())),
        }
    }
}

/// A figure's width in inches, parsed from `3.4in`, `8.6cm`, `86mm` or `245pt`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FigureWidth(pub f64);

impl Default for FigureWidth {
    /// One column of a two-column paper.
    fn default() -> Self {
        FigureWidth(3.4)
    }
}

impl FromStr for FigureWidth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let units = [("in", 1.0), ("cm", 2.54), ("mm", 25.4), ("pt", 72.27)];
        let Some((number, per_inch)) = units
            .iter()
            .find_map(|&(u, per)| t.strip_suffix(u).map(|n| (n, per)))
        else {
            let unit = t.trim_start_matches(|c: char| !c.is_ascii_alphabetic());
            return Err(if unit.is_empty() {
                format!("`{s}` needs a unit: e.g. 3.4in, 8.6cm, 86mm or 245pt")
            } else {
                format!("`{s}` has an unknown unit `{unit}`; use in, cm, mm or pt (e.g. 3.4in)")
            });
        };
        let value: f64 = number
            .trim()
            .parse()
            .map_err(|_| format!("`{number}` is not a number; e.g. 3.4in or 8.6cm"))?;
        let inches = value / per_inch;
        if !(1.0..=20.0).contains(&inches) {
            return Err(format!(
                "`{s}` is {inches:.2} in; give between 1in and 20in (3.4in is one \
                 column of a two-column paper, 7in the full page width)"
            ));
        }
        Ok(FigureWidth(inches))
    }
}

/// How figures are drawn and which files are written.
#[derive(Clone, Debug, PartialEq)]
pub struct FigureOptions {
    pub formats: Vec<PlotFormat>,
    pub facet: Facet,
    pub width: FigureWidth,
}

impl Default for FigureOptions {
    fn default() -> Self {
        FigureOptions {
            formats: vec![PlotFormat::Pdf, PlotFormat::Svg, PlotFormat::Png],
            facet: Facet::Auto,
            width: FigureWidth::default(),
        }
    }
}

/// Pixels per inch of the PNG, and the unit every size below is drawn in.
pub const DPI: f64 = 300.0;
const FONT: &str = "sans-serif";
/// The embedded font's family name, as fontdb reads it from the font.
const FONT_FAMILY: &str = "DejaVu Sans";

/// Drawing units (PNG pixels) of a length in points.
pub(super) fn pt(points: f64) -> f64 {
    points * DPI / 72.0
}

/// A text style of `points` points. plotters writes an SVG font size of size / 1.24.
pub(super) fn font(points: f64) -> TextStyle<'static> {
    (FONT, pt(points) * 1.24).into()
}

pub(super) const TICK_PT: f64 = 7.0;
pub(super) const LABEL_PT: f64 = 8.0;
const LEGEND_PT: f64 = 7.0;
/// Line width: thin enough that neighbouring lines stay apart.
const LINE_PT: f64 = 0.8;

/// Okabe & Ito's palette, distinguishable with the common colour-vision deficiencies (its
/// yellow, hard to see on white, last).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
];

/// Line styles: solid, dashed, dotted, dash-dot-like short dashes.
const STYLES: usize = 4;

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font, shipped by the dejavu crate.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

/// A legend: what a colour or a line style stands for.
#[derive(Clone, Debug, PartialEq)]
pub struct Legend {
    pub title: String,
    pub entries: Vec<String>,
}

/// One panel: its title (the facet's value) and the series drawn in it.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub title: Option<String>,
    pub series: Vec<usize>,
}

/// Which series goes into which panel, with which colour and line style.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub panels: Vec<Panel>,
    pub colour: Vec<usize>,
    pub style: Vec<usize>,
    pub colour_legend: Option<Legend>,
    pub style_legend: Option<Legend>,
}

/// The distinct values of key `k` over the series, in order of appearance.
fn values(chart: &Chart, k: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in &chart.series {
        if !out.contains(&s.keys[k]) {
            out.push(s.keys[k].clone());
        }
    }
    out
}

impl Layout {
    /// Panels by the facet key; of the other keys that vary, the one with the fewest values
    /// (at most four) gets line styles and the rest colours.
    pub fn new(chart: &Chart, facet: &Facet) -> Layout {
        let varying: Vec<usize> = (0..chart.keys.len())
            .filter(|&k| values(chart, k).len() > 1)
            .collect();
        let facet = match facet {
            Facet::None => None,
            Facet::Auto => varying.iter().copied().find(|&k| chart.keys[k] == "cell"),
            Facet::Key(name) => varying.iter().copied().find(|&k| &chart.keys[k] == name),
        };
        let panels = match facet {
            None => vec![Panel {
                title: None,
                series: (0..chart.series.len()).collect(),
            }],
            Some(f) => values(chart, f)
                .into_iter()
                .map(|v| Panel {
                    title: Some(format!("{}={v}", chart.keys[f])),
                    series: (0..chart.series.len())
                        .filter(|&i| chart.series[i].keys[f] == v)
                        .collect(),
                })
                .collect(),
        };
        let mut rest: Vec<usize> = varying.into_iter().filter(|&k| Some(k) != facet).collect();
        let style_key = if rest.len() >= 2 {
            let pick = rest
                .iter()
                .copied()
                .rev()
                .min_by_key(|&k| values(chart, k).len())
                .filter(|&k| values(chart, k).len() <= STYLES);
            rest.retain(|&k| Some(k) != pick);
            pick
        } else {
            None
        };
        let combo = |s: &Series| {
            rest.iter()
                .map(|&k| s.keys[k].clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut colour_entries: Vec<String> = Vec::new();
        let colour = chart
            .series
            .iter()
            .map(|s| {
                let c = combo(s);
                colour_entries
                    .iter()
                    .position(|e| *e == c)
                    .unwrap_or_else(|| {
                        colour_entries.push(c);
                        colour_entries.len() - 1
                    })
            })
            .collect();
        let colour_legend = (!rest.is_empty()).then(|| Legend {
            title: rest
                .iter()
                .map(|&k| chart.keys[k].as_str())
                .collect::<Vec<_>>()
                .join(", "),
            entries: colour_entries,
        });
        let (style, style_legend) = match style_key {
            Some(k) => {
                let v = values(chart, k);
                (
                    chart
                        .series
                        .iter()
                        .map(|s| v.iter().position(|e| *e == s.keys[k]).unwrap_or(0))
                        .collect(),
                    Some(Legend {
                        title: chart.keys[k].clone(),
                        entries: v,
                    }),
                )
            }
            None => (vec![0; chart.series.len()], None),
        };
        Layout {
            panels,
            colour,
            style,
            colour_legend,
            style_legend,
        }
    }
}

/// The ticks of a log axis over the data's range: from the decade at or below the smallest
/// value to the one at or above the largest, a tick at every decade and a label at every one
/// (when they fit) or at every multiple of `step` decades, so that no part of the data is more
/// than `step` decades from a label.
#[derive(Clone, Debug, PartialEq)]
pub struct LogTicks {
    /// The axis runs from 10^lo to 10^hi.
    pub lo: i32,
    pub hi: i32,
    pub step: i32,
}

impl LogTicks {
    pub fn new(min: f64, max: f64, max_labels: usize) -> LogTicks {
        LogTicks::from_exponents(min.log10(), max.log10(), max_labels)
    }

    /// The ticks over 10^min_exp to 10^max_exp (the data's range in log10 units).
    pub fn from_exponents(min_exp: f64, max_exp: f64, max_labels: usize) -> LogTicks {
        let lo = min_exp.floor() as i32;
        let hi = (max_exp.ceil() as i32).max(lo + 1);
        let count = |k: i32| (hi.div_euclid(k) - (lo + k - 1).div_euclid(k) + 1) as usize;
        let step = [1, 2, 3, 5, 10, 20, 50, 100]
            .into_iter()
            .find(|&k| count(k) <= max_labels.max(2))
            .unwrap_or(100);
        LogTicks { lo, hi, step }
    }

    /// The labelled decades.
    pub fn labelled(&self) -> Vec<i32> {
        (self.lo..=self.hi)
            .filter(|e| e.rem_euclid(self.step) == 0)
            .collect()
    }
}

/// `10` with a superscript exponent: 10⁻²⁴.
pub fn decade_label(e: i32) -> String {
    const SUP: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    let mut s = String::from("10");
    if e < 0 {
        s.push('⁻');
    }
    for d in e.unsigned_abs().to_string().bytes() {
        s.push(SUP[(d - b'0') as usize]);
    }
    s
}

/// A tick label on a linear axis: the shortest decimal (0.9, 250).
pub(super) fn tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let scale = 10f64.powi(6 - v.abs().max(1e-12).log10().ceil() as i32);
    format!("{}", (v * scale).round() / scale)
}

/// About `n` round ticks (1, 2, 2.5 or 5 times a power of ten) within `lo..=hi`; on an
/// `integer` axis (steps, lags, indices) whole numbers only, and no 2.5.
pub(super) fn nice_ticks(lo: f64, hi: f64, n: usize, integer: bool) -> Vec<f64> {
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let mantissas: &[f64] = if integer {
        &[1.0, 2.0, 5.0, 10.0]
    } else {
        &[1.0, 2.0, 2.5, 5.0, 10.0]
    };
    let step = mantissas
        .iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * mag);
    let step = if integer { step.max(1.0) } else { step };
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// The axes every panel shares: ranges (in log10 units on a log axis) and ticks.
struct Axes {
    x: (f64, f64),
    y: (f64, f64),
    x_ticks: Vec<f64>,
    y_ticks: Vec<f64>,
    /// Decades that get a label (log axis).
    x_labelled: Option<Vec<i32>>,
    y_labelled: Option<Vec<i32>>,
}

/// Horizontal offsets that keep series of a categorical chart apart (`j` of `n` in a panel).
fn dodge(j: usize, n: usize) -> f64 {
    if n < 2 {
        return 0.0;
    }
    let width = (0.5f64 / n as f64).min(0.08);
    (j as f64 - (n - 1) as f64 / 2.0) * width
}

/// Sizes of the figure, in drawing units.
struct Geometry {
    width: u32,
    height: u32,
    cols: usize,
    rows: usize,
    panel_h: u32,
    legend_h: u32,
    y_desc_w: u32,
    x_desc_h: u32,
}

pub(super) fn text_width(text: &str, points: f64) -> f64 {
    font(points)
        .font
        .box_size(text)
        .map_or(text.chars().count() as f64 * pt(points) * 0.6, |b| {
            b.0 as f64
        })
}

/// Legend rows: each a list of (legend index, entry index or `None` for the title).
fn legend_rows(legends: &[&Legend], width: f64) -> Vec<Vec<(usize, Option<usize>)>> {
    let sample = pt(16.0);
    let gap = pt(8.0);
    let mut rows = Vec::new();
    for (l, legend) in legends.iter().enumerate() {
        let mut row = vec![(l, None)];
        let mut used = text_width(&format!("{}:", legend.title), LEGEND_PT) + gap;
        for (e, entry) in legend.entries.iter().enumerate() {
            let w = sample + pt(3.0) + text_width(entry, LEGEND_PT) + gap;
            if used + w > width && row.len() > 1 {
                rows.push(std::mem::take(&mut row));
                used = pt(12.0);
            }
            row.push((l, Some(e)));
            used += w;
        }
        rows.push(row);
    }
    rows
}

impl Geometry {
    fn new(width: FigureWidth, panels: usize, legend_rows: usize) -> Geometry {
        let width_in = width.0;
        // Panels at least 1.6 in wide, side by side.
        let cols = ((width_in / 1.6).floor() as usize).clamp(1, panels.max(1));
        let rows = panels.max(1).div_ceil(cols);
        let panel_w = width_in / cols as f64;
        let panel_h = (panel_w * 0.95).clamp(1.5, 2.6);
        let legend_h = if legend_rows == 0 {
            0.0
        } else {
            pt(4.0) + legend_rows as f64 * pt(LEGEND_PT * 1.6)
        };
        let y_desc_w = pt(LABEL_PT * 1.5);
        let x_desc_h = pt(LABEL_PT * 1.6);
        Geometry {
            width: (width_in * DPI).round() as u32,
            height: (rows as f64 * panel_h * DPI + legend_h + x_desc_h).round() as u32,
            cols,
            rows,
            panel_h: (panel_h * DPI).round() as u32,
            legend_h: legend_h.round() as u32,
            y_desc_w: y_desc_w.round() as u32,
            x_desc_h: x_desc_h.round() as u32,
        }
    }
}

/// Draws `chart` into `dir` in the formats of `opts`, with its data as CSV; returns the paths.
pub fn draw(chart: &Chart, dir: &Path, opts: &FigureOptions) -> Result<Vec<PathBuf>, PlotError> {
    let layout = Layout::new(chart, &opts.facet);
    let legends: Vec<&Legend> = [&layout.colour_legend, &layout.style_legend]
        .into_iter()
        .flatten()
        .collect();
    let legend_rows = legend_rows(&legends, opts.width.0 * DPI);
    let geo = Geometry::new(opts.width, layout.panels.len(), legend_rows.len());
    let figure = LineFigure {
        chart,
        layout,
        legend_rows,
        geo,
    };
    write_figure(&figure, dir, &chart.file, &opts.formats, chart_csv(chart))
}

/// A figure that draws itself on any plotters backend (SVG for the SVG and PDF, bitmap for
/// the PNG).
pub(super) trait Render {
    /// Width and height in drawing units (PNG pixels).
    fn size(&self) -> (u32, u32);
    fn render<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawError>;
}

/// A line chart with its layout, ready to render.
struct LineFigure<'a> {
    chart: &'a Chart,
    layout: Layout,
    legend_rows: Vec<Vec<(usize, Option<usize>)>>,
    geo: Geometry,
}

impl Render for LineFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (self.geo.width, self.geo.height)
    }

    fn render<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawError> {
        render(self.chart, &self.layout, &self.legend_rows, &self.geo, root)
    }
}

/// Writes `figure` into `dir` as `<file>.pdf`, `.svg` and `.png` (those of `formats`) and its
/// data `csv` as `<file>.csv`, each atomically; returns the paths, the CSV last.
pub(super) fn write_figure(
    figure: &impl Render,
    dir: &Path,
    file: &str,
    formats: &[PlotFormat],
    csv: Result<String, DrawError>,
) -> Result<Vec<PathBuf>, PlotError> {
    register_font();
    let path = |ext: &str| dir.join(format!("{file}.{ext}"));
    let fail = |p: &Path| {
        let p = p.to_path_buf();
        move |e: DrawError| PlotError {
            path: p,
            message: e.0,
        }
    };
    let size = figure.size();
    let mut files = Vec::new();
    let mut out: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let csv_path = path("csv");
    out.push((csv_path.clone(), csv.map_err(fail(&csv_path))?.into_bytes()));
    let wants = |f: PlotFormat| formats.contains(&f);
    if wants(PlotFormat::Svg) || wants(PlotFormat::Pdf) {
        let svg_path = path("svg");
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
            figure.render(&root).map_err(fail(&svg_path))?;
            root.present()
                .map_err(|e| fail(&svg_path)(DrawError::from(e)))?;
        }
        let svg = physical_size(svg, size);
        if wants(PlotFormat::Pdf) {
            let pdf_path = path("pdf");
            out.push((pdf_path.clone(), svg_to_pdf(&svg).map_err(fail(&pdf_path))?));
        }
        if wants(PlotFormat::Svg) {
            out.push((svg_path, svg.into_bytes()));
        }
    }
    if wants(PlotFormat::Png) {
        let png_path = path("png");
        let mut pixels = vec![255u8; (size.0 * size.1 * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
            figure.render(&root).map_err(fail(&png_path))?;
            root.present()
                .map_err(|e| fail(&png_path)(DrawError::from(e)))?;
        }
        let image = image::RgbImage::from_raw(size.0, size.1, pixels).expect("buffer of the size");
        let mut png = Cursor::new(Vec::new());
        image
            .write_to(&mut png, image::ImageFormat::Png)
            .map_err(|e| fail(&png_path)(DrawError::from(e)))?;
        out.push((png_path, png.into_inner()));
    }
    // Image files first, the CSV last in the listing: the order a reader looks for them.
    out.rotate_left(1);
    for (p, bytes) in out {
        crate::fs::write_bytes_atomic(&p, &bytes).map_err(|e| fail(&p)(DrawError::from(e)))?;
        files.push(p);
    }
    Ok(files)
}

/// The SVG with its size in inches (plotters writes pixels), so that it and the PDF made from
/// it come out at the figure's width.
fn physical_size(svg: String, (w, h): (u32, u32)) -> String {
    let px = format!("width=\"{w}\" height=\"{h}\"");
    let inches = format!(
        "width=\"{:.4}in\" height=\"{:.4}in\"",
        w as f64 / DPI,
        h as f64 / DPI
    );
    svg.replacen(&px, &inches, 1)
}

/// The usvg options: the embedded DejaVu Sans as every family, so no system font is needed.
fn usvg_options() -> usvg::Options<'static> {
    static FONTS: OnceLock<Arc<usvg::fontdb::Database>> = OnceLock::new();
    let fonts = FONTS.get_or_init(|| {
        let mut db = usvg::fontdb::Database::new();
        db.load_font_data(dejavu::sans::regular().to_vec());
        db.set_sans_serif_family(FONT_FAMILY);
        db.set_serif_family(FONT_FAMILY);
        Arc::new(db)
    });
    usvg::Options {
        font_family: FONT_FAMILY.into(),
        fontdb: fonts.clone(),
        ..usvg::Options::default()
    }
}

/// A one-page vector PDF of `svg`, its text as text in the embedded (subset) font.
fn svg_to_pdf(svg: &str) -> Result<Vec<u8>, DrawError> {
    let tree = usvg::Tree::from_str(svg, &usvg_options()).map_err(DrawError::from)?;
    // usvg reads the inch size at 96 px per inch; the page keeps it.
    let page = svg2pdf::PageOptions { dpi: 96.0 };
    svg2pdf::to_pdf(&tree, svg2pdf::ConversionOptions::default(), page).map_err(DrawError::from)
}

/// The plotted data: one row per point of every series, with its keys, x (a category's name
/// on a categorical axis), y and the band.
fn chart_csv(chart: &Chart) -> Result<String, DrawError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let header = chart.keys.iter().chain(chart.columns.iter());
    w.write_record(header).map_err(DrawError::from)?;
    for s in &chart.series {
        for (i, &(x, y)) in s.points.iter().enumerate() {
            let x = match &chart.categories {
                Some(c) => c.get(x.round() as usize).cloned().unwrap_or_default(),
                None => tick_exact(x),
            };
            let (lo, hi) = s
                .band
                .iter()
                .find(|b| b.0 == s.points[i].0)
                .map_or((f64::NAN, f64::NAN), |b| (b.1, b.2));
            let mut row: Vec<String> = s.keys.clone();
            row.push(x);
            row.extend([y, lo, hi].map(|v| {
                if v.is_nan() {
                    String::new()
                } else {
                    v.to_string()
                }
            }));
            w.write_record(&row).map_err(DrawError::from)?;
        }
    }
    let bytes = w.into_inner().map_err(DrawError::from)?;
    String::from_utf8(bytes).map_err(DrawError::from)
}

/// An x value as written in the CSV (integers without a decimal point).
pub(super) fn tick_exact(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        x.to_string()
    }
}

/// The shared axes of every panel, in drawing coordinates (log10 on a log axis).
fn axes(chart: &Chart, panel_h: f64) -> Option<Axes> {
    let ok_x = |x: f64| x.is_finite() && (!chart.log_x || x > 0.0);
    let ok_y = |y: f64| y.is_finite() && (!chart.log_y || y > 0.0);
    let points = || {
        chart
            .series
            .iter()
            .flat_map(|s| s.points.iter().filter(|p| ok_x(p.0)))
    };
    let ys = chart
        .series
        .iter()
        .flat_map(|s| {
            s.points
                .iter()
                .filter(|p| ok_x(p.0))
                .map(|p| p.1)
                .chain(s.band.iter().filter(|b| ok_x(b.0)).flat_map(|b| [b.1, b.2]))
        })
        .chain(chart.reference_y);
    let range = |values: &mut dyn Iterator<Item = f64>| {
        values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        })
    };
    let (x0, x1) = range(&mut points().map(|p| p.0));
    let (y0, y1) = range(&mut ys.filter(|&y| ok_y(y)));
    if !(x0.is_finite() && y0.is_finite()) {
        return None;
    }
    let (x, x_ticks, x_labelled) = match &chart.categories {
        Some(c) => (
            (-0.5, c.len() as f64 - 0.5),
            (0..c.len()).map(|i| i as f64).collect(),
            None,
        ),
        None if chart.log_x => {
            let t = LogTicks::new(x0, x1, 6);
            // Over a few decades, unlabelled ticks at 2..9 times each decade too, so that values
            // between the labels (k = 4, 16, 64) can be read.
            let per_decade = if t.hi - t.lo <= 3 { 9 } else { 1 };
            let ticks = (t.lo..t.hi)
                .flat_map(|e| (1..=per_decade).map(move |m| f64::from(e) + f64::from(m).log10()))
                .chain([f64::from(t.hi)])
                .collect();
            ((t.lo as f64, t.hi as f64), ticks, Some(t.labelled()))
        }
        None => {
            let x = if x1 > x0 {
                (x0, x1)
            } else {
                (x0 - 1.0, x1 + 1.0)
            };
            let integer = points().all(|p| p.0.fract() == 0.0);
            (x, nice_ticks(x.0, x.1, 4, integer), None)
        }
    };
    // Room for one label per 1.8 label heights of the plot's height.
    let max_labels = ((panel_h * 0.75) / (pt(TICK_PT) * 1.8)).floor() as usize;
    if chart.log_y {
        let t = LogTicks::new(y0, y1, max_labels);
        return Some(Axes {
            x,
            y: (t.lo as f64, t.hi as f64),
            x_ticks,
            y_ticks: (t.lo..=t.hi).map(f64::from).collect(),
            x_labelled,
            y_labelled: Some(t.labelled()),
        });
    }
    let y = if chart.categories.is_some() {
        (-0.05, 1.05)
    } else {
        let pad = ((y1 - y0) * 0.05).max(1e-9);
        (y0 - pad, y1 + pad)
    };
    Some(Axes {
        x,
        y,
        x_ticks,
        y_ticks: nice_ticks(y.0, y.1, max_labels.clamp(2, 6), false),
        x_labelled,
        y_labelled: None,
    })
}

fn render<DB: DrawingBackend>(
    chart: &Chart,
    layout: &Layout,
    legend_rows: &[Vec<(usize, Option<usize>)>],
    geo: &Geometry,
    root: &DrawingArea<DB, Shift>,
) -> Result<(), DrawError> {
    let err = |e: &dyn std::fmt::Display| DrawError::from(e);
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let Some(axes) = axes(chart, geo.panel_h as f64) else {
        return Ok(());
    };
    let (grid, legend) = root.split_vertically(geo.height - geo.legend_h);
    let (grid, x_desc) = grid.split_vertically(geo.height - geo.legend_h - geo.x_desc_h);
    let (y_desc, grid) = grid.split_horizontally(geo.y_desc_w);
    let (gw, gh) = grid.dim_in_pixel();
    // The axis titles, once for all panels.
    y_desc
        .draw(&Text::new(
            chart.y_label.clone(),
            (geo.y_desc_w as i32 / 2, gh as i32 / 2),
            font(LABEL_PT)
                .transform(FontTransform::Rotate270)
                .pos(text_anchor::Pos::new(
                    text_anchor::HPos::Center,
                    text_anchor::VPos::Center,
                )),
        ))
        .map_err(|e| err(&e))?;
    x_desc
        .draw(&Text::new(
            chart.x_label.clone(),
            ((geo.y_desc_w + gw / 2) as i32, geo.x_desc_h as i32 / 2),
            font(LABEL_PT).pos(text_anchor::Pos::new(
                text_anchor::HPos::Center,
                text_anchor::VPos::Center,
            )),
        ))
        .map_err(|e| err(&e))?;
    let cells = grid.split_evenly((geo.rows, geo.cols));
    let y_label_w = axes
        .y_ticks
        .iter()
        .map(|&v| text_width(&tick_label(&axes.y_labelled, v), TICK_PT))
        .fold(0.0, f64::max)
        + pt(4.0);
    for (panel, area) in layout.panels.iter().zip(&cells) {
        draw_panel(chart, layout, &axes, panel, area, y_label_w as u32)?;
    }
    draw_legend(layout, legend_rows, &legend)?;
    Ok(())
}

/// A tick's label: on a log axis (`labelled` decades) 10ⁿ or nothing, else the number.
fn tick_label(labelled: &Option<Vec<i32>>, v: f64) -> String {
    match labelled {
        Some(labelled) => {
            let e = v.round() as i32;
            if (v - f64::from(e)).abs() < 1e-9 && labelled.contains(&e) {
                decade_label(e)
            } else {
                String::new()
            }
        }
        None => tick(v),
    }
}

fn colour_of(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// The line's style: solid, dashed, dotted or short dashes (dash and gap in drawing units).
fn dashes(style: usize) -> Option<(i32, i32)> {
    let w = pt(LINE_PT);
    match style % STYLES {
        0 => None,
        1 => Some(((w * 4.0) as i32, (w * 2.5) as i32)),
        2 => Some((w as i32, (w * 1.8) as i32)),
        _ => Some(((w * 1.8) as i32, (w * 1.8) as i32)),
    }
}

/// A linear axis with exactly the given ticks (plotters' `WithKeyPoints` over f64 cannot take a
/// label formatter).
struct Ticked {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ticked {
    fn new((lo, hi): (f64, f64), ticks: &[f64]) -> Self {
        Ticked {
            inner: (lo..hi).into(),
            ticks: ticks.to_vec(),
        }
    }
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

fn draw_panel<DB: DrawingBackend>(
    chart: &Chart,
    layout: &Layout,
    axes: &Axes,
    panel: &Panel,
    area: &DrawingArea<DB, Shift>,
    y_label_w: u32,
) -> Result<(), DrawError> {
    let err = |e: &dyn std::fmt::Display| DrawError::from(e);
    let mut builder = ChartBuilder::on(area);
    builder
        .margin_top(pt(3.0) as i32)
        .margin_right(pt(5.0) as i32)
        .x_label_area_size(pt(TICK_PT * 1.7) as i32)
        .y_label_area_size(y_label_w as i32);
    if let Some(title) = &panel.title {
        builder.caption(title, font(LABEL_PT));
    }
    let mut cc = builder
        .build_cartesian_2d(
            Ticked::new(axes.x, &axes.x_ticks),
            Ticked::new(axes.y, &axes.y_ticks),
        )
        .map_err(|e| err(&e))?;
    let categories = chart.categories.clone();
    let x_format = move |v: &f64| match &categories {
        Some(c) => c.get(v.round() as usize).cloned().unwrap_or_default(),
        None => tick_label(&axes.x_labelled, *v),
    };
    let y_format = |v: &f64| tick_label(&axes.y_labelled, *v);
    cc.configure_mesh()
        .label_style(font(TICK_PT))
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .bold_line_style(BLACK.mix(0.08))
        .light_line_style(WHITE.mix(0.0))
        .axis_style(BLACK.mix(0.8).stroke_width(pt(0.5).round() as u32))
        .set_all_tick_mark_size(pt(2.0) as i32)
        .draw()
        .map_err(|e| err(&e))?;

    let x = |v: f64| if chart.log_x { v.log10() } else { v };
    let y = |v: f64| if chart.log_y { v.log10() } else { v };
    let ok_x = |v: f64| !chart.log_x || v > 0.0;
    let n = panel.series.len();
    let shift = |j: usize| {
        if chart.categories.is_some() {
            dodge(j, n)
        } else {
            0.0
        }
    };
    if let Some(r) = chart
        .reference_y
        .filter(|&r| r.is_finite() && (!chart.log_y || r > 0.0))
    {
        cc.draw_series(LineSeries::new(
            [(axes.x.0, y(r)), (axes.x.1, y(r))],
            BLACK.mix(0.45).stroke_width(pt(0.5).round() as u32),
        ))
        .map_err(|e| err(&e))?;
    }
    // Bands first, light, so that no band hides a line.
    for (j, &i) in panel.series.iter().enumerate() {
        let s = &chart.series[i];
        let band: Vec<&(f64, f64, f64)> = s
            .band
            .iter()
            .filter(|b| {
                ok_x(b.0) && b.1.is_finite() && b.2.is_finite() && (!chart.log_y || b.1 > 0.0)
            })
            .collect();
        if band.len() < 2 {
            continue;
        }
        let dx = shift(j);
        let mut polygon: Vec<(f64, f64)> = band.iter().map(|b| (x(b.0) + dx, y(b.1))).collect();
        polygon.extend(band.iter().rev().map(|b| (x(b.0) + dx, y(b.2))));
        cc.draw_series(std::iter::once(Polygon::new(
            polygon,
            colour_of(layout.colour[i]).mix(0.10).filled(),
        )))
        .map_err(|e| err(&e))?;
    }
    let lw = pt(LINE_PT).round() as u32;
    let r = pt(1.6) as i32;
    for (j, &i) in panel.series.iter().enumerate() {
        let s = &chart.series[i];
        let dx = shift(j);
        let points: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|p| ok_x(p.0) && p.1.is_finite() && (!chart.log_y || p.1 > 0.0))
            .map(|p| (x(p.0) + dx, y(p.1)))
            .collect();
        let colour = colour_of(layout.colour[i]);
        let style = colour.stroke_width(lw);
        match dashes(layout.style[i]) {
            None => cc
                .draw_series(LineSeries::new(points.clone(), style))
                .map(|_| ()),
            Some((dash, gap)) => cc
                .draw_series(DashedLineSeries::new(points.clone(), dash, gap, style))
                .map(|_| ()),
        }
        .map_err(|e| err(&e))?;
        // Markers at every point where points are few (and always on a categorical axis), else
        // at every `every`-th, staggered between the panel's series so that lines lying on top
        // of each other still show each one; shaped by line style.
        let every = if chart.categories.is_some() || points.len() <= 25 {
            1
        } else {
            (points.len() / 6).max(n)
        };
        let offset = j * every / n;
        let points: Vec<(f64, f64)> = points
            .iter()
            .enumerate()
            .filter(|(k, _)| k % every == offset % every)
            .map(|(_, &p)| p)
            .collect();
        {
            let fill = colour.filled();
            match layout.style[i] % STYLES {
                0 => cc
                    .draw_series(points.iter().map(|&p| Circle::new(p, r, fill)))
                    .map(|_| ()),
                1 => cc
                    .draw_series(points.iter().map(|&p| TriangleMarker::new(p, r + 2, fill)))
                    .map(|_| ()),
                2 => cc
                    .draw_series(
                        points.iter().map(|&p| {
                            EmptyElement::at(p) + Rectangle::new([(-r, -r), (r, r)], fill)
                        }),
                    )
                    .map(|_| ()),
                _ => cc
                    .draw_series(points.iter().map(|&p| Cross::new(p, r + 1, style)))
                    .map(|_| ()),
            }
            .map_err(|e| err(&e))?;
        }
    }
    Ok(())
}

fn draw_legend<DB: DrawingBackend>(
    layout: &Layout,
    rows: &[Vec<(usize, Option<usize>)>],
    area: &DrawingArea<DB, Shift>,
) -> Result<(), DrawError> {
    let err = |e: &dyn std::fmt::Display| DrawError::from(e);
    let legends: Vec<&Legend> = [&layout.colour_legend, &layout.style_legend]
        .into_iter()
        .flatten()
        .collect();
    let is_style = |l: usize| layout.colour_legend.is_none() || l == 1;
    let line_h = pt(LEGEND_PT * 1.6);
    let lw = pt(LINE_PT).round() as u32;
    let style_text = font(LEGEND_PT).pos(text_anchor::Pos::new(
        text_anchor::HPos::Left,
        text_anchor::VPos::Center,
    ));
    for (r, row) in rows.iter().enumerate() {
        let yc = (pt(4.0) + line_h * (r as f64 + 0.5)) as i32;
        let mut x = pt(4.0);
        for &(l, entry) in row {
            let legend = legends[l];
            let text = match entry {
                None => format!("{}:", legend.title),
                Some(e) => {
                    let (colour, dash) = if is_style(l) {
                        (RGBColor(60, 60, 60), dashes(e))
                    } else {
                        (colour_of(e), None)
                    };
                    let (x0, x1) = (x as i32, (x + pt(16.0)) as i32);
                    let style = colour.stroke_width(lw);
                    match dash {
                        None => area.draw(&PathElement::new(vec![(x0, yc), (x1, yc)], style)),
                        Some((d, g)) => area.draw(&DashedPathElement::new(
                            vec![(x0, yc), (x1, yc)],
                            d,
                            g,
                            style,
                        )),
                    }
                    .map_err(|e| err(&e))?;
                    if is_style(l) {
                        // The marker of the style, as on the lines.
                        let (c, r) = (((x0 + x1) / 2, yc), pt(1.6) as i32);
                        let fill = colour.filled();
                        match e % STYLES {
                            0 => area.draw(&Circle::new(c, r, fill)),
                            1 => area.draw(&TriangleMarker::new(c, r + 2, fill)),
                            2 => area.draw(&Rectangle::new(
                                [(c.0 - r, c.1 - r), (c.0 + r, c.1 + r)],
                                fill,
                            )),
                            _ => area.draw(&Cross::new(c, r + 1, style)),
                        }
                        .map_err(|e| err(&e))?;
                    }
                    x += pt(19.0);
                    legend.entries[e].clone()
                }
            };
            area.draw(&Text::new(text.clone(), (x as i32, yc), style_text.clone()))
                .map_err(|e| err(&e))?;
            x += text_width(&text, LEGEND_PT) + pt(8.0);
        }
    }
    Ok(())
}
