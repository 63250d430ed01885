//! Heatmaps for reports: small multiples of a value over two axes (training step × lag for the
//! gradient flow), one panel per condition with shared axes and one shared colour scale
//! (viridis, on log10 of the value) whose bar is labelled in decades, written like the line
//! charts of [`super::plot`] (PDF, SVG, PNG, and the drawn cells as CSV).
//!
//! Every cell is one rectangle, so a panel with more than [`MAX_BINS`] columns or rows is
//! binned first (neighbouring columns or rows merged, their values' geometric mean): the files
//! stay small and the picture is the same at print resolution.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{text_anchor, FontTransform};

use super::plot::{
    decade_label, font, nice_ticks, pt, text_width, tick, tick_exact, write_figure, DrawError,
    FigureOptions, LogTicks, PlotError, Render, DPI, LABEL_PT, TICK_PT,
};

/// The most columns (and rows) a panel is drawn with; more are binned.
pub const MAX_BINS: usize = 120;

/// A heatmap: written as `<file>.pdf`, `.svg`, `.png` and its cells as `<file>.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct Heatmap {
    pub file: String,
    /// What the figure shows (for the report's listing; a paper's caption says it).
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// What the colour shows (the colour bar's title); cells hold log10 of it.
    pub colour_label: String,
    /// The keys that tell the panels apart (each panel has one value of each).
    pub keys: Vec<String>,
    /// The CSV's names of x, y and the cell's value.
    pub columns: [String; 3],
    pub panels: Vec<HeatPanel>,
}

/// One panel: a value (log10) at every (x, y) of a grid; NaN where there is none.
#[derive(Clone, Debug, PartialEq)]
pub struct HeatPanel {
    pub keys: Vec<String>,
    /// The columns' positions, ascending.
    pub xs: Vec<f64>,
    /// The rows' positions, ascending.
    pub ys: Vec<f64>,
    /// `values[i * ys.len() + j]` at (xs[i], ys[j]).
    pub values: Vec<f64>,
}

impl HeatPanel {
    pub fn new(keys: Vec<String>, xs: Vec<f64>, ys: Vec<f64>, values: Vec<f64>) -> Self {
        assert_eq!(values.len(), xs.len() * ys.len(), "one value per cell");
        assert!(
            xs.windows(2).all(|w| w[0] < w[1]) && ys.windows(2).all(|w| w[0] < w[1]),
            "positions ascending"
        );
        HeatPanel {
            keys,
            xs,
            ys,
            values,
        }
    }
}

/// One column or row as drawn: the position of its first member (the CSV's), and its extent.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Span {
    first: f64,
    lo: f64,
    hi: f64,
}

/// Columns (or rows) at `positions`, each reaching halfway to its neighbours (a lone one: ±0.5),
/// merged into at most `max` spans of consecutive members; returns the spans and, for every
/// position, its span.
fn spans(positions: &[f64], max: usize) -> (Vec<Span>, Vec<usize>) {
    let n = positions.len();
    let edge = |i: usize| -> (f64, f64) {
        if n == 1 {
            return (positions[0] - 0.5, positions[0] + 0.5);
        }
        let lo = if i == 0 {
            positions[0] - (positions[1] - positions[0]) / 2.0
        } else {
            (positions[i - 1] + positions[i]) / 2.0
        };
        let hi = if i + 1 == n {
            positions[n - 1] + (positions[n - 1] - positions[n - 2]) / 2.0
        } else {
            (positions[i] + positions[i + 1]) / 2.0
        };
        (lo, hi)
    };
    let per = n.div_ceil(max.max(1)).max(1);
    let spans = (0..n)
        .step_by(per)
        .map(|start| {
            let end = (start + per).min(n) - 1;
            Span {
                first: positions[start],
                lo: edge(start).0,
                hi: edge(end).1,
            }
        })
        .collect();
    (spans, (0..n).map(|i| i / per).collect())
}

/// A panel as drawn: its spans and the mean of its members' (finite) values in each cell.
#[derive(Clone, Debug, PartialEq)]
struct Grid {
    cols: Vec<Span>,
    rows: Vec<Span>,
    /// `values[c * rows.len() + r]`; NaN: blank.
    values: Vec<f64>,
}

impl Grid {
    fn new(panel: &HeatPanel, max: usize) -> Grid {
        let (cols, col_of) = spans(&panel.xs, max);
        let (rows, row_of) = spans(&panel.ys, max);
        let mut sum = vec![(0.0, 0usize); cols.len() * rows.len()];
        for (i, &c) in col_of.iter().enumerate() {
            for (j, &r) in row_of.iter().enumerate() {
                let v = panel.values[i * panel.ys.len() + j];
                if v.is_finite() {
                    let s = &mut sum[c * rows.len() + r];
                    *s = (s.0 + v, s.1 + 1);
                }
            }
        }
        let values = sum
            .into_iter()
            .map(|(s, k)| if k == 0 { f64::NAN } else { s / k as f64 })
            .collect();
        Grid { cols, rows, values }
    }

    /// The drawn cells with a value: (column, row, value).
    fn cells(&self) -> impl Iterator<Item = (&Span, &Span, f64)> {
        let rows = self.rows.len();
        self.values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(move |(k, &v)| (&self.cols[k / rows], &self.rows[k % rows], v))
    }
}

/// Viridis (matplotlib's default colour map, perceptually uniform and readable with the common
/// colour-vision deficiencies and in grey scale) at t = 0, 0.1, ..., 1.
const VIRIDIS: [(u8, u8, u8); 11] = [
    (68, 1, 84),
    (72, 36, 117),
    (65, 68, 135),
    (53, 95, 141),
    (42, 120, 142),
    (33, 144, 141),
    (34, 168, 132),
    (66, 190, 113),
    (122, 209, 81),
    (189, 223, 38),
    (253, 231, 37),
];

/// The colour of `t` in 0..=1 (clamped): viridis, linear between its samples.
pub fn viridis(t: f64) -> RGBColor {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (VIRIDIS.len() - 1) as f64;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |p: u8, q: u8| (p as f64 + (q as f64 - p as f64) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Segments the colour bar is drawn with.
const BAR_STEPS: usize = 64;

/// Sizes and places of the figure, in drawing units.
struct HeatGeometry {
    width: u32,
    height: u32,
    cols: usize,
    /// Left edge of the first panel (after the axis title and the tick labels).
    left: f64,
    top: f64,
    panel_w: f64,
    panel_h: f64,
    gap_x: f64,
    /// Height of a panel's title strip, and of a whole row (title, plot, tick labels).
    title_h: f64,
    row_h: f64,
    /// Width of the panels together.
    grid_w: f64,
    /// Where the axis title of x, and the colour bar's row, start.
    x_desc_y: f64,
    bar_y: f64,
    /// The colour bar's left end and length.
    bar_x: f64,
    bar_w: f64,
    /// Each panel's title, in lines.
    titles: Vec<Vec<String>>,
}

/// The panel titles (`key=value, ...`), broken into lines at commas to fit `width`.
fn title_lines(keys: &[String], values: &[String], width: f64) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for part in keys.iter().zip(values).map(|(k, v)| format!("{k}={v}")) {
        match lines.last_mut() {
            Some(line) if text_width(&format!("{line}, {part}"), LABEL_PT) <= width => {
                *line = format!("{line}, {part}");
            }
            Some(line) => {
                line.push(',');
                lines.push(part);
            }
            None => lines.push(part),
        }
    }
    lines
}

/// The shared axes: data ranges, ticks, and the colour scale (log10 units, whole decades).
struct HeatAxes {
    x: (f64, f64),
    y: (f64, f64),
    x_ticks: Vec<f64>,
    y_ticks: Vec<f64>,
    colour: LogTicks,
}

impl HeatGeometry {
    fn new(map: &Heatmap, grids: &[Grid], opts: &FigureOptions) -> (HeatGeometry, HeatAxes) {
        let extent = |f: &dyn Fn(&Grid) -> (f64, f64)| {
            grids
                .iter()
                .map(f)
                .fold((f64::INFINITY, f64::NEG_INFINITY), |a, b| {
                    (a.0.min(b.0), a.1.max(b.1))
                })
        };
        let x = extent(&|g| (g.cols[0].lo, g.cols[g.cols.len() - 1].hi));
        let y = extent(&|g| (g.rows[0].lo, g.rows[g.rows.len() - 1].hi));
        let (v0, v1) = grids
            .iter()
            .flat_map(|g| g.values.iter().copied().filter(|v| v.is_finite()))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |a, v| {
                (a.0.min(v), a.1.max(v))
            });
        let width = opts.width.0 * DPI;
        let n = grids.len().max(1);
        // The widest tick labels: of the largest values (integers, so no fraction is wider).
        let y_tick_w = text_width(&tick(y.1.abs().max(y.0.abs()).floor()), TICK_PT) + pt(4.0);
        let x_tick_half = text_width(&tick(x.1.abs().max(x.0.abs()).floor()), TICK_PT) / 2.0;
        let left = pt(LABEL_PT * 1.5) + y_tick_w;
        let right = x_tick_half + pt(2.0);
        let gap_x = pt(6.0);
        // Panels at least 0.9 in wide, side by side, in rows of equal length.
        let max_cols =
            (((width - left - right + gap_x) / (0.9 * DPI + gap_x)).floor() as usize).clamp(1, n);
        let rows = n.div_ceil(max_cols);
        let cols = n.div_ceil(rows);
        let panel_w = (width - left - right - (cols - 1) as f64 * gap_x) / cols as f64;
        let panel_h = (panel_w * 0.75).clamp(0.8 * DPI, 1.8 * DPI);
        let titles: Vec<Vec<String>> = map
            .panels
            .iter()
            .map(|p| title_lines(&map.keys, &p.keys, panel_w))
            .collect();
        let lines = titles.iter().map(Vec::len).max().unwrap_or(0);
        let title_h = if lines == 0 {
            pt(3.0)
        } else {
            lines as f64 * pt(LABEL_PT * 1.25) + pt(3.0)
        };
        // Tall enough for the y axis title along the rows.
        let x_tick_h = pt(TICK_PT * 1.7);
        let y_title = text_width(&map.y_label, LABEL_PT) + pt(4.0);
        let panel_h = panel_h.max(y_title / rows as f64 - title_h - x_tick_h);
        let row_h = title_h + panel_h + x_tick_h;
        let top = pt(2.0);
        let x_desc_y = top + rows as f64 * row_h;
        let bar_y = x_desc_y + pt(LABEL_PT * 1.6);
        let bar_h = pt(4.0) + pt(5.0) + pt(2.0) + pt(TICK_PT * 1.4) + pt(2.0);
        // The bar centred under the panels, its title to its left.
        let grid_w = cols as f64 * panel_w + (cols - 1) as f64 * gap_x;
        let title_w = text_width(&map.colour_label, LABEL_PT) + pt(8.0);
        let decade_w = text_width(&decade_label(-20), TICK_PT) * 1.5;
        // Room for half a label beyond either end.
        let bar_w = (grid_w - title_w - decade_w / 2.0).clamp(0.6 * DPI, 2.4 * DPI);
        let bar_x = left + ((grid_w - title_w - bar_w) / 2.0).max(0.0) + title_w;
        let ticks = |lo: f64, hi: f64, length: f64, label_w: f64| {
            let n = (length / (label_w * 2.5)).floor().max(2.0) as usize;
            nice_ticks(lo, hi, n, true)
        };
        let axes = HeatAxes {
            x,
            y,
            x_ticks: ticks(x.0, x.1, panel_w, x_tick_half * 2.0),
            y_ticks: ticks(y.0, y.1, panel_h, pt(TICK_PT)),
            colour: LogTicks::from_exponents(v0, v1, (bar_w / decade_w).floor() as usize),
        };
        let geo = HeatGeometry {
            width: width.round() as u32,
            height: (bar_y + bar_h).round() as u32,
            cols,
            left,
            top,
            panel_w,
            panel_h,
            gap_x,
            title_h,
            row_h,
            grid_w,
            x_desc_y,
            bar_y,
            bar_x,
            bar_w,
            titles,
        };
        (geo, axes)
    }
}

/// A heatmap with its geometry, ready to render.
struct HeatFigure<'a> {
    map: &'a Heatmap,
    grids: Vec<Grid>,
    geo: HeatGeometry,
    axes: HeatAxes,
}

/// Draws `map` into `dir` in the formats of `opts`, with its cells as CSV; returns the paths.
/// A heatmap without a value draws nothing.
pub fn draw(map: &Heatmap, dir: &Path, opts: &FigureOptions) -> Result<Vec<PathBuf>, PlotError> {
    let mut map = map.clone();
    map.panels
        .retain(|p| p.values.iter().any(|v| v.is_finite()));
    if map.panels.is_empty() {
        return Ok(Vec::new());
    }
    let grids: Vec<Grid> = map.panels.iter().map(|p| Grid::new(p, MAX_BINS)).collect();
    let (geo, axes) = HeatGeometry::new(&map, &grids, opts);
    let figure = HeatFigure {
        map: &map,
        grids,
        geo,
        axes,
    };
    write_figure(
        &figure,
        dir,
        &map.file,
        &opts.formats,
        heatmap_csv(&map, &figure.grids),
    )
}

/// The drawn cells with a value: one row per cell of every panel, its keys, the position of
/// its first column and row, and the value.
fn heatmap_csv(map: &Heatmap, grids: &[Grid]) -> Result<String, DrawError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(map.keys.iter().chain(map.columns.iter()))
        .map_err(DrawError::from)?;
    for (panel, grid) in map.panels.iter().zip(grids) {
        for (col, row, v) in grid.cells() {
            let mut record = panel.keys.clone();
            record.extend([tick_exact(col.first), tick_exact(row.first), v.to_string()]);
            w.write_record(&record).map_err(DrawError::from)?;
        }
    }
    let bytes = w.into_inner().map_err(DrawError::from)?;
    String::from_utf8(bytes).map_err(DrawError::from)
}

impl Render for HeatFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (self.geo.width, self.geo.height)
    }

    fn render<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawError> {
        let err = |e: &dyn std::fmt::Display| DrawError::from(e);
        let (geo, axes) = (&self.geo, &self.axes);
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let n = self.grids.len();
        let centre = text_anchor::Pos::new(text_anchor::HPos::Center, text_anchor::VPos::Center);
        for (p, grid) in self.grids.iter().enumerate() {
            let (row, col) = (p / geo.cols, p % geo.cols);
            let x0 = geo.left + col as f64 * (geo.panel_w + geo.gap_x);
            let y0 = geo.top + row as f64 * geo.row_h + geo.title_h;
            let area = PanelArea {
                x0,
                y0,
                w: geo.panel_w,
                h: geo.panel_h,
                x: axes.x,
                y: axes.y,
            };
            for (k, line) in geo.titles[p].iter().enumerate() {
                let yc = geo.top
                    + row as f64 * geo.row_h
                    + pt(1.5)
                    + pt(LABEL_PT * 1.25) * (k as f64 + 0.5);
                root.draw(&Text::new(
                    line.clone(),
                    ((x0 + geo.panel_w / 2.0) as i32, yc as i32),
                    font(LABEL_PT).pos(centre),
                ))
                .map_err(|e| err(&e))?;
            }
            self.draw_cells(root, grid, &area)?;
            // Tick labels on the outer panels only: y on the first column, x where no panel
            // is below.
            area.draw_ticks(root, axes, col == 0, p + geo.cols >= n)?;
        }
        root.draw(&Text::new(
            self.map.y_label.clone(),
            (
                (pt(LABEL_PT * 0.75)) as i32,
                (geo.top + (geo.x_desc_y - geo.top) / 2.0) as i32,
            ),
            font(LABEL_PT)
                .transform(FontTransform::Rotate270)
                .pos(centre),
        ))
        .map_err(|e| err(&e))?;
        root.draw(&Text::new(
            self.map.x_label.clone(),
            (
                (geo.left + geo.grid_w / 2.0) as i32,
                (geo.x_desc_y + pt(LABEL_PT * 0.8)) as i32,
            ),
            font(LABEL_PT).pos(centre),
        ))
        .map_err(|e| err(&e))?;
        self.draw_bar(root)
    }
}

/// Where a panel's plot lies (drawing units) and the data range it shows.
struct PanelArea {
    x0: f64,
    y0: f64,
    w: f64,
    h: f64,
    x: (f64, f64),
    y: (f64, f64),
}

impl PanelArea {
    fn px(&self, x: f64) -> i32 {
        (self.x0 + (x - self.x.0) / (self.x.1 - self.x.0) * self.w).round() as i32
    }

    /// y grows upwards.
    fn py(&self, y: f64) -> i32 {
        (self.y0 + self.h - (y - self.y.0) / (self.y.1 - self.y.0) * self.h).round() as i32
    }

    /// The frame, tick marks, and (where asked) tick labels.
    fn draw_ticks<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        axes: &HeatAxes,
        y_labels: bool,
        x_labels: bool,
    ) -> Result<(), DrawError> {
        let err = |e: &dyn std::fmt::Display| DrawError::from(e);
        let line = BLACK.mix(0.8).stroke_width(pt(0.5).round() as u32);
        let (l, r) = (self.px(self.x.0), self.px(self.x.1));
        let (t, b) = (self.py(self.y.1), self.py(self.y.0));
        root.draw(&Rectangle::new([(l, t), (r, b)], line))
            .map_err(|e| err(&e))?;
        let mark = pt(2.0) as i32;
        let below = font(TICK_PT).pos(text_anchor::Pos::new(
            text_anchor::HPos::Center,
            text_anchor::VPos::Top,
        ));
        for &v in &axes.x_ticks {
            let x = self.px(v);
            root.draw(&PathElement::new(vec![(x, b), (x, b + mark)], line))
                .map_err(|e| err(&e))?;
            if x_labels {
                root.draw(&Text::new(
                    tick(v),
                    (x, b + mark + pt(1.0) as i32),
                    below.clone(),
                ))
                .map_err(|e| err(&e))?;
            }
        }
        let beside = font(TICK_PT).pos(text_anchor::Pos::new(
            text_anchor::HPos::Right,
            text_anchor::VPos::Center,
        ));
        for &v in &axes.y_ticks {
            let y = self.py(v);
            root.draw(&PathElement::new(vec![(l - mark, y), (l, y)], line))
                .map_err(|e| err(&e))?;
            if y_labels {
                root.draw(&Text::new(
                    tick(v),
                    (l - mark - pt(1.5) as i32, y),
                    beside.clone(),
                ))
                .map_err(|e| err(&e))?;
            }
        }
        Ok(())
    }
}

impl HeatFigure<'_> {
    /// The colour of a value (log10) on the shared scale.
    fn colour(&self, v: f64) -> RGBColor {
        let (lo, hi) = (self.axes.colour.lo as f64, self.axes.colour.hi as f64);
        viridis((v - lo) / (hi - lo))
    }

    /// One rectangle per cell with a value; blank cells stay the background.
    fn draw_cells<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        grid: &Grid,
        area: &PanelArea,
    ) -> Result<(), DrawError> {
        let right = area.px(area.x.1);
        for (col, row, v) in grid.cells() {
            // One unit wider and taller (within the panel), so that no hairline of background
            // shows between neighbouring cells when a viewer anti-aliases their edges.
            let (l, r) = (area.px(col.lo), (area.px(col.hi) + 1).min(right));
            let (t, b) = (
                (area.py(row.hi) - 1).max(area.py(area.y.1)),
                area.py(row.lo),
            );
            root.draw(&Rectangle::new([(l, t), (r, b)], self.colour(v).filled()))
                .map_err(DrawError::from)?;
        }
        Ok(())
    }

    /// The colour bar below the panels: its title, the scale, a tick and label at decades.
    fn draw_bar<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawError> {
        let err = |e: &dyn std::fmt::Display| DrawError::from(e);
        let geo = &self.geo;
        let scale = &self.axes.colour;
        let (x0, bar_w) = (geo.bar_x, geo.bar_w);
        let (y0, y1) = (geo.bar_y + pt(4.0), geo.bar_y + pt(9.0));
        root.draw(&Text::new(
            self.map.colour_label.clone(),
            ((x0 - pt(6.0)) as i32, ((y0 + y1) / 2.0) as i32),
            font(LABEL_PT).pos(text_anchor::Pos::new(
                text_anchor::HPos::Right,
                text_anchor::VPos::Center,
            )),
        ))
        .map_err(|e| err(&e))?;
        let (lo, hi) = (scale.lo as f64, scale.hi as f64);
        let at = |v: f64| x0 + (v - lo) / (hi - lo) * bar_w;
        for k in 0..BAR_STEPS {
            let (a, b) = (
                k as f64 / BAR_STEPS as f64,
                (k + 1) as f64 / BAR_STEPS as f64,
            );
            let colour = viridis((a + b) / 2.0);
            let r = if k + 1 == BAR_STEPS { 0 } else { 1 };
            root.draw(&Rectangle::new(
                [
                    ((x0 + a * bar_w) as i32, y0 as i32),
                    ((x0 + b * bar_w) as i32 + r, y1 as i32),
                ],
                colour.filled(),
            ))
            .map_err(|e| err(&e))?;
        }
        let line = BLACK.mix(0.8).stroke_width(pt(0.5).round() as u32);
        root.draw(&Rectangle::new(
            [(x0 as i32, y0 as i32), ((x0 + bar_w) as i32, y1 as i32)],
            line,
        ))
        .map_err(|e| err(&e))?;
        let labelled = scale.labelled();
        let below = font(TICK_PT).pos(text_anchor::Pos::new(
            text_anchor::HPos::Center,
            text_anchor::VPos::Top,
        ));
        for e in scale.lo..=scale.hi {
            let x = at(e as f64) as i32;
            root.draw(&PathElement::new(
                vec![(x, y1 as i32), (x, (y1 + pt(2.0)) as i32)],
                line,
            ))
            .map_err(|e| err(&e))?;
            if labelled.contains(&e) {
                root.draw(&Text::new(
                    decade_label(e),
                    (x, (y1 + pt(3.0)) as i32),
                    below.clone(),
                ))
                .map_err(|e| err(&e))?;
            }
        }
        Ok(())
    }
}
