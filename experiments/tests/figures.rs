//! Figures a paper can use as they are: a vector PDF with its font embedded, one panel per
//! facet value, every legend entry visible, log axes labelled over the data's whole range, a
//! width in paper units, and the plotted data as CSV beside each figure; heatmaps with one
//! colour scale over their panels; and the report's diagnostic figures (gradient heatmap, Lyapunov spectrum, Jacobian σ against k) from results
//! folders written by hand, old folders without a `spectrum` table included.

use std::path::{Path, PathBuf};

use gradlab_experiments::report::heatmap::{self, viridis, HeatPanel, Heatmap, MAX_BINS};
use gradlab_experiments::report::plot::{
    self, decade_label, Chart, Facet, FigureOptions, FigureWidth, Layout, LogTicks, PlotFormat,
    Series, DPI, PALETTE,
};
use gradlab_experiments::report::{self, Options};
use gradlab_experiments::store::{self, Provenance};
use gradlab_experiments::sweep::Spec;
use gradlab_experiments::train::record::{
    FlowRow, FlowSource, Outcome, RunRecord, Status, StepRow,
};
use polars::prelude::*;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gradlab-figures-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The text of every `<text>` element of an SVG, trimmed.
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = t.split_once('>')?.1;
            Some(body.split("</text>").next()?.trim().to_string())
        })
        .collect()
}

fn series(keys: &[&str], points: &[(f64, f64)]) -> Series {
    let mut s = Series::new(keys.iter().map(|k| k.to_string()).collect());
    s.points = points.to_vec();
    s.band = points.iter().map(|&(x, y)| (x, y * 0.5, y * 2.0)).collect();
    s
}

/// A demo-like chart: cell x truncation x clip, gradient norms from 1 down to 2e-24.
fn gradient_chart() -> Chart {
    let mut all = Vec::new();
    for (c, cell) in ["rnn", "lstm"].into_iter().enumerate() {
        for (t, trunc) in ["5", "25", "full"].into_iter().enumerate() {
            for (k, clip) in ["none", "norm:1"].into_iter().enumerate() {
                let rate = 1.1 + c as f64 * -0.05 + t as f64 * 0.01 + k as f64 * 0.003;
                let points: Vec<(f64, f64)> = (0..50)
                    .map(|lag| (lag as f64, 2e-24f64.powf(lag as f64 / 49.0 * rate / 1.1)))
                    .collect();
                all.push(series(&[cell, trunc, clip], &points));
            }
        }
    }
    Chart {
        file: "gradient_vs_lag".into(),
        title: "gradient against lag".into(),
        x_label: "lag".into(),
        y_label: "gradient norm".into(),
        log_x: false,
        log_y: true,
        reference_y: None,
        categories: None,
        keys: vec!["cell".into(), "truncation".into(), "clip".into()],
        columns: ["lag", "grad_norm_geomean", "grad_norm_min", "grad_norm_max"].map(String::from),
        series: all,
    }
}

/// success_vs_clip as the demo drew it: six groups, four of them on top of another one.
fn coincident_chart() -> Chart {
    let rates = [
        [0.0, 0.0],
        [0.0, 0.0],
        [0.0, 0.0],
        [1.0, 0.67],
        [1.0, 0.67],
        [0.33, 1.0],
    ];
    let labels = ["a", "b", "c", "d", "e", "f"];
    Chart {
        file: "success_vs_clip".into(),
        title: "success against clip".into(),
        x_label: "clip".into(),
        y_label: "success rate".into(),
        log_x: false,
        log_y: false,
        reference_y: None,
        categories: Some(vec!["none".into(), "norm:1".into()]),
        keys: vec!["group".into()],
        columns: ["clip", "success_rate", "success_lo95", "success_hi95"].map(String::from),
        series: labels
            .iter()
            .zip(rates)
            .map(|(l, r)| series(&[l], &[(0.0, r[0]), (1.0, r[1])]))
            .collect(),
    }
}

fn opts(facet: Facet, formats: &[PlotFormat]) -> FigureOptions {
    FigureOptions {
        formats: formats.to_vec(),
        facet,
        width: FigureWidth::default(),
    }
}

#[test]
fn pdf_is_a_vector_pdf_with_its_font_embedded_at_the_figure_width() {
    let dir = tmpdir("pdf");
    let files = plot::draw(
        &gradient_chart(),
        &dir,
        &opts(Facet::Auto, &[PlotFormat::Pdf]),
    )
    .unwrap();
    let pdf_path = dir.join("gradient_vs_lag.pdf");
    assert!(files.contains(&pdf_path), "{files:?}");
    assert!(
        !dir.join("gradient_vs_lag.svg").exists(),
        "only the asked formats"
    );
    let pdf = std::fs::read(&pdf_path).unwrap();
    let text = String::from_utf8_lossy(&pdf);
    assert!(pdf.starts_with(b"%PDF-1."), "not a PDF");
    assert!(text.trim_end().ends_with("%%EOF"), "truncated PDF");
    assert!(text.contains("/FontFile"), "font not embedded");
    assert!(text.contains("DejaVu"), "not the embedded DejaVu Sans");
    assert!(!text.contains("/Subtype /Image"), "rasterised, not vector");
    // The page is the figure's width: 3.4 in = 244.8 pt.
    let media = text.split("/MediaBox [").nth(1).expect("a MediaBox");
    let numbers: Vec<f64> = media
        .split(']')
        .next()
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    assert!((numbers[2] - numbers[0] - 244.8).abs() < 0.5, "{numbers:?}");
}

#[test]
fn facets_give_one_panel_per_value_and_styles_tell_the_rest_apart() {
    let chart = gradient_chart();
    let auto = Layout::new(&chart, &Facet::Auto);
    let titles: Vec<_> = auto.panels.iter().map(|p| p.title.clone()).collect();
    assert_eq!(
        titles,
        [Some("cell=rnn".to_string()), Some("cell=lstm".to_string())]
    );
    assert!(auto.panels.iter().all(|p| p.series.len() == 6));
    // Colour for truncation (3 values), line style for clip (2 values).
    let colour = auto.colour_legend.as_ref().unwrap();
    let style = auto.style_legend.as_ref().unwrap();
    assert_eq!(
        (colour.title.as_str(), colour.entries.len()),
        ("truncation", 3)
    );
    assert_eq!((style.title.as_str(), style.entries.len()), ("clip", 2));
    // Within a panel, no two series share both colour and style.
    for p in &auto.panels {
        let mut seen: Vec<(usize, usize)> = p
            .series
            .iter()
            .map(|&i| (auto.colour[i], auto.style[i]))
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), p.series.len());
    }
    let by_trunc = Layout::new(&chart, &Facet::Key("truncation".into()));
    assert_eq!(by_trunc.panels.len(), 3);
    assert_eq!(
        by_trunc.colour_legend.unwrap().title,
        "cell",
        "two values each: colour the first, style the second"
    );
    let one = Layout::new(&chart, &Facet::None);
    assert_eq!(one.panels.len(), 1);
    assert_eq!(one.panels[0].series.len(), 12);

    // Drawn: each panel's title is in the SVG, once.
    let dir = tmpdir("facets");
    plot::draw(&chart, &dir, &opts(Facet::Auto, &[PlotFormat::Svg])).unwrap();
    let texts = svg_texts(&std::fs::read_to_string(dir.join("gradient_vs_lag.svg")).unwrap());
    let count = |t: &str| texts.iter().filter(|x| *x == t).count();
    assert_eq!((count("cell=rnn"), count("cell=lstm")), (1, 1), "{texts:?}");
    // The axis titles are drawn once, shared by the panels.
    assert_eq!((count("gradient norm"), count("lag")), (1, 1), "{texts:?}");
}

/// Pixels of exactly `colour` in the top `rows` rows of a PNG.
fn count_colour(png: &image::RgbImage, colour: [u8; 3], rows: u32) -> usize {
    png.enumerate_pixels()
        .filter(|(_, y, p)| *y < rows && p.0 == colour)
        .count()
}

#[test]
fn every_legend_entry_is_visible_even_when_lines_coincide() {
    let chart = coincident_chart();
    let layout = Layout::new(&chart, &Facet::None);
    assert_eq!(layout.colour_legend.as_ref().unwrap().entries.len(), 6);
    let dir = tmpdir("legend");
    plot::draw(&chart, &dir, &opts(Facet::None, &[PlotFormat::Png])).unwrap();
    let png = image::open(dir.join("success_vs_clip.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(png.width(), (3.4 * DPI) as u32, "3.4 in at 300 dpi");
    // The plot is the top of the figure, the legend (one line here) below it.
    let plot_rows = png.height() * 9 / 10;
    for (i, c) in PALETTE.iter().enumerate().take(6) {
        let n = count_colour(&png, [c.0, c.1, c.2], plot_rows);
        assert!(
            n > 200,
            "series {i} (legend entry {i}) is hidden: {n} pixels"
        );
    }
}

#[test]
fn coinciding_curves_each_stay_visible() {
    // The demo's RNN losses: several groups on one curve of 60 logged steps.
    let curve: Vec<(f64, f64)> = (0..60).map(|k| (50.0 * k as f64, 0.17)).collect();
    let mut chart = coincident_chart();
    chart.categories = None;
    chart.series = ["a", "b", "c"]
        .iter()
        .map(|l| {
            let mut s = series(&[l], &curve);
            s.band.clear();
            s
        })
        .collect();
    let dir = tmpdir("curves");
    plot::draw(&chart, &dir, &opts(Facet::None, &[PlotFormat::Png])).unwrap();
    let png = image::open(dir.join("success_vs_clip.png"))
        .unwrap()
        .to_rgb8();
    let plot_rows = png.height() * 9 / 10;
    for (i, c) in PALETTE.iter().enumerate().take(3) {
        let n = count_colour(&png, [c.0, c.1, c.2], plot_rows);
        assert!(n > 200, "series {i} is hidden: {n} pixels");
    }
}

#[test]
fn log_axes_label_every_decade_the_data_reach() {
    // Enough room: every decade.
    let t = LogTicks::new(2e-24, 3.0, 30);
    assert_eq!((t.lo, t.hi, t.step), (-24, 1, 1));
    assert_eq!(t.labelled(), (-24..=1).collect::<Vec<_>>());
    // Little room: labels every `step` decades, none of the data farther than that from one.
    for max_labels in 2..12 {
        let t = LogTicks::new(2e-24, 3.0, max_labels);
        let l = t.labelled();
        assert!(
            !l.is_empty() && l.len() <= max_labels,
            "{max_labels}: {l:?}"
        );
        assert!(t.lo <= -24 && t.hi >= 1, "{t:?}");
        assert!(
            l[0] - t.lo < t.step && t.hi - l[l.len() - 1] < t.step,
            "{t:?}: {l:?}"
        );
        assert!(l.windows(2).all(|w| w[1] - w[0] == t.step));
    }
    assert_eq!(decade_label(-24), "10⁻²⁴");
    assert_eq!(decade_label(0), "10⁰");
    assert_eq!(decade_label(3), "10³");

    // Drawn: the lowest and the highest labels bracket the data (2e-24 to 4, with bands).
    let dir = tmpdir("log");
    let chart = gradient_chart();
    plot::draw(&chart, &dir, &opts(Facet::Auto, &[PlotFormat::Svg])).unwrap();
    let texts = svg_texts(&std::fs::read_to_string(dir.join("gradient_vs_lag.svg")).unwrap());
    let labelled: Vec<i32> = (-40..=5)
        .filter(|&e| texts.contains(&decade_label(e)))
        .collect();
    assert!(labelled.len() >= 3, "{labelled:?}");
    // The smallest band value is 1e-24 (half of 2e-24), the largest 2 (twice 1); the labels
    // reach both ends within their step (plotters' own stopped at 1e-15).
    let step = labelled[1] - labelled[0];
    assert!(labelled[0] - step < -24, "lowest label {labelled:?}");
    assert!(
        labelled[labelled.len() - 1] + step > 0,
        "highest label {labelled:?}"
    );
}

#[test]
fn figure_width_takes_paper_units_and_refuses_the_rest() {
    let w = |s: &str| s.parse::<FigureWidth>().map(|w| w.0);
    assert_eq!(w("3.4in"), Ok(3.4));
    assert!((w("8.6cm").unwrap() - 8.6 / 2.54).abs() < 1e-12);
    assert!((w("86 mm").unwrap() - 86.0 / 25.4).abs() < 1e-12);
    assert!((w("245pt").unwrap() - 245.0 / 72.27).abs() < 1e-12);
    for (bad, says) in [
        ("3.4", "needs a unit"),
        ("3.4ft", "unknown unit `ft`"),
        ("abcin", "not a number"),
        ("0.1in", "between 1in and 20in"),
        ("-3in", "between 1in and 20in"),
        ("", "needs a unit"),
    ] {
        let e = w(bad).unwrap_err();
        assert!(e.contains(says), "{bad}: {e}");
    }
    // A wider figure is drawn wider.
    let dir = tmpdir("width");
    let o = FigureOptions {
        width: "7in".parse().unwrap(),
        ..opts(Facet::None, &[PlotFormat::Png])
    };
    plot::draw(&coincident_chart(), &dir, &o).unwrap();
    let png = image::open(dir.join("success_vs_clip.png")).unwrap();
    assert_eq!(png.width(), 2100);
    assert!("pdf,svg,png"
        .split(',')
        .all(|f| f.parse::<PlotFormat>().is_ok()));
    assert!("eps"
        .parse::<PlotFormat>()
        .unwrap_err()
        .contains("pdf, svg or png"));
}

#[test]
fn csv_beside_each_figure_holds_the_plotted_series() {
    let dir = tmpdir("csv");
    let chart = coincident_chart();
    let files = plot::draw(&chart, &dir, &opts(Facet::None, &[PlotFormat::Png])).unwrap();
    let path = dir.join("success_vs_clip.csv");
    assert!(files.contains(&path));
    let mut r = csv::Reader::from_path(&path).unwrap();
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "group",
            "clip",
            "success_rate",
            "success_lo95",
            "success_hi95"
        ]
    );
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 12);
    for (s, pair) in chart.series.iter().zip(rows.chunks(2)) {
        for (p, row) in s.points.iter().zip(pair) {
            assert_eq!(&row[0], s.keys[0].as_str());
            // Categories by name, not by position or dodged position.
            assert_eq!(&row[1], ["none", "norm:1"][p.0 as usize]);
            assert_eq!(row[2].parse::<f64>().unwrap(), p.1);
            assert_eq!(row[3].parse::<f64>().unwrap(), p.1 * 0.5);
            assert_eq!(row[4].parse::<f64>().unwrap(), p.1 * 2.0);
        }
    }
}

#[test]
fn log_x_axes_label_decades_and_reference_lines_stay_in_range() {
    // σ against k = 1, 2, 4, ..., 64 on log-log axes, a reference line at σ = 1.
    let points: Vec<(f64, f64)> = (0..7)
        .map(|e| (2f64.powi(e), 0.9f64.powi(2i32.pow(e as u32))))
        .collect();
    let mut chart = gradient_chart();
    chart.file = "sigma".into();
    chart.log_x = true;
    chart.reference_y = Some(1.0);
    chart.series = vec![series(&["rnn", "5", "none"], &points)];
    let dir = tmpdir("log-x");
    plot::draw(&chart, &dir, &opts(Facet::None, &[PlotFormat::Svg])).unwrap();
    let texts = svg_texts(&std::fs::read_to_string(dir.join("sigma.svg")).unwrap());
    // The x axis: 10⁰, eight unlabelled ticks (2..9), 10¹, eight more, 10².
    let mut x_axis: Vec<String> = Vec::new();
    for e in 0..=2 {
        x_axis.push(decade_label(e));
        if e < 2 {
            x_axis.extend(std::iter::repeat_n(String::new(), 8));
        }
    }
    assert!(
        texts.windows(x_axis.len()).any(|w| w == x_axis.as_slice()),
        "{texts:?}"
    );

    // Exponents all below 0 on a linear axis: the reference line at 0 is within the range.
    let mut chart = coincident_chart();
    chart.file = "lambda".into();
    chart.categories = None;
    chart.reference_y = Some(0.0);
    chart.series = vec![series(&["a"], &[(1.0, -0.5), (2.0, -0.8), (3.0, -1.2)])];
    chart.series[0].band.clear();
    plot::draw(&chart, &dir, &opts(Facet::None, &[PlotFormat::Svg])).unwrap();
    let texts = svg_texts(&std::fs::read_to_string(dir.join("lambda.svg")).unwrap());
    assert!(texts.contains(&"0".to_string()), "{texts:?}");
    // Integer x (indices): whole-number ticks only.
    assert!(!texts.iter().any(|t| t == "1.5" || t == "2.5"), "{texts:?}");
}

// ---- Heatmaps: one colour scale shared by the panels, viridis, binning ----

/// The rows of a CSV the report wrote, by header name.
fn csv_rows(path: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    r.records()
        .map(|row| {
            header
                .iter()
                .cloned()
                .zip(row.unwrap().iter().map(String::from))
                .collect()
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

/// A heatmap of two panels: `a` over its rows from 10^lo_a to 10^(lo_a + 4), `b` likewise.
fn two_panel_heatmap(lo_a: f64, lo_b: f64) -> Heatmap {
    let panel = |name: &str, lo: f64| {
        let (xs, ys): (Vec<f64>, Vec<f64>) = (
            (0..20).map(|i| i as f64 * 10.0).collect(),
            (0..9).map(f64::from).collect(),
        );
        let values = xs
            .iter()
            .flat_map(|_| ys.iter().map(|&y| lo + y / 2.0))
            .collect();
        HeatPanel::new(vec![name.into()], xs, ys, values)
    };
    Heatmap {
        file: "heat".into(),
        title: "heat".into(),
        x_label: "training step".into(),
        y_label: "lag".into(),
        colour_label: "‖∂L/∂h_t‖".into(),
        keys: vec!["group".into()],
        columns: ["step", "lag", "log10_grad_norm"].map(String::from),
        panels: vec![panel("a", lo_a), panel("b", lo_b)],
    }
}

#[test]
fn heatmap_panels_share_one_colour_scale() {
    // Panel a spans 10^-8..10^-4, panel b 10^-4..10^0: on one scale, only a reaches its darkest
    // colour and only b its brightest (each panel on its own scale would show both in each).
    let dir = tmpdir("heat-scale");
    let map = two_panel_heatmap(-8.0, -4.0);
    heatmap::draw(
        &map,
        &dir,
        &opts(Facet::Auto, &[PlotFormat::Png, PlotFormat::Svg]),
    )
    .unwrap();
    let png = image::open(dir.join("heat.png")).unwrap().to_rgb8();
    let colour = |c: plotters::style::RGBColor| [c.0, c.1, c.2];
    let (dark, bright) = (colour(viridis(0.0)), colour(viridis(1.0)));
    let count = |c: [u8; 3], xs: std::ops::Range<u32>| {
        png.enumerate_pixels()
            .filter(|(x, _, p)| xs.contains(x) && p.0 == c)
            .count()
    };
    let w = png.width();
    let (left, right) = (0..w * 2 / 5, w * 3 / 5..w);
    assert!(
        count(dark, left.clone()) > 500,
        "panel a lacks the darkest colour"
    );
    assert_eq!(count(bright, left), 0, "panel a has the brightest colour");
    assert!(
        count(bright, right.clone()) > 500,
        "panel b lacks the brightest colour"
    );
    assert_eq!(count(dark, right), 0, "panel b has the darkest colour");
    // The colour bar is labelled in decades over the whole range, 10⁻⁸ to 10⁰.
    let texts = svg_texts(&std::fs::read_to_string(dir.join("heat.svg")).unwrap());
    let labelled: Vec<i32> = (-10..=2)
        .filter(|&e| texts.contains(&decade_label(e)))
        .collect();
    assert_eq!(
        (labelled[0], labelled[labelled.len() - 1]),
        (-8, 0),
        "{texts:?}"
    );
}

#[test]
fn viridis_runs_dark_to_bright() {
    let c = |t: f64| {
        let v = viridis(t);
        (v.0, v.1, v.2)
    };
    assert_eq!(c(0.0), (68, 1, 84));
    assert_eq!(c(1.0), (253, 231, 37));
    assert_eq!(c(-1.0), c(0.0));
    assert_eq!(c(2.0), c(1.0));
    // Luminance rises monotonically: a sequential map that reads in grey scale too.
    let lum = |t: f64| {
        let (r, g, b) = c(t);
        0.2126 * r as f64 + 0.7152 * g as f64 + 0.0722 * b as f64
    };
    for k in 0..100 {
        let (a, b) = (k as f64 / 100.0, (k + 1) as f64 / 100.0);
        assert!(lum(b) >= lum(a), "{a}: {} > {b}: {}", lum(a), lum(b));
    }
}

#[test]
fn large_heatmaps_are_binned_to_keep_files_small() {
    // 1000 logged steps x 300 lags: 9 steps and 3 lags to a cell, the mean of their values.
    let xs: Vec<f64> = (0..1000).map(|i| i as f64 * 5.0).collect();
    let ys: Vec<f64> = (0..300).map(f64::from).collect();
    let value = |i: usize, j: usize| -(i as f64) / 100.0 - j as f64 / 10.0;
    let values = (0..xs.len())
        .flat_map(|i| (0..ys.len()).map(move |j| value(i, j)))
        .collect();
    let map = Heatmap {
        panels: vec![HeatPanel::new(vec!["a".into()], xs, ys, values)],
        ..two_panel_heatmap(0.0, 0.0)
    };
    let dir = tmpdir("heat-bins");
    heatmap::draw(
        &map,
        &dir,
        &opts(
            Facet::Auto,
            &[PlotFormat::Svg, PlotFormat::Pdf, PlotFormat::Png],
        ),
    )
    .unwrap();
    let rows = csv_rows(&dir.join("heat.csv"));
    assert!(rows.len() <= MAX_BINS * MAX_BINS, "{} cells", rows.len());
    assert_eq!(rows.len(), 1000usize.div_ceil(9) * 100);
    // The cell of steps 45..85 (columns 9..17) and lags 3..5: the mean over its members.
    let cell = rows
        .iter()
        .find(|r| r["step"] == "45" && r["lag"] == "3")
        .unwrap();
    let members: Vec<f64> = (9..18)
        .flat_map(|i| (3..6).map(move |j| value(i, j)))
        .collect();
    let mean = members.iter().sum::<f64>() / members.len() as f64;
    assert!(
        close(cell["log10_grad_norm"].parse().unwrap(), mean),
        "{cell:?}: {mean}"
    );
    let svg = std::fs::metadata(dir.join("heat.svg")).unwrap().len();
    let pdf = std::fs::metadata(dir.join("heat.pdf")).unwrap().len();
    assert!(
        svg < 2_000_000 && pdf < 1_000_000,
        "svg {svg} B, pdf {pdf} B"
    );
}

// ---- The diagnostic figures of a report: gradient heatmap, Lyapunov spectrum, Jacobian σ ----

/// Two cells (rnn, lstm) x two seeds, two layers: the figures must read the top layer (1).
const DIAG_SPEC: &str = r#"
name = "diag"
seeds = [0, 1]
[base]
task = "adding"
seq_len = 10
depth = 2
steps = 101
[grid]
cell = ["rnn", "lstm"]
"#;

/// The logged steps of the flow probe, and the lags of each.
const FLOW_STEPS: [usize; 3] = [0, 50, 100];
const LAGS: usize = 10;

/// ‖∂L/∂h_t‖ of the probe of group `g` (0: rnn, 1: lstm), seed `s`, top layer: 10^(−lag rate)
/// times 2 (seed 0) or 8 (seed 1), so that the geometric mean over the seeds is 4·10^(−lag rate).
/// Two cells are not clean: seed 1 of rnn has NaN at (100, 3), and both rnn seeds 0 at (100, 4).
fn probe_norm(g: usize, s: usize, step: usize, lag: usize) -> f64 {
    if g == 0 && step == 100 && lag == 4 {
        return 0.0;
    }
    if g == 0 && s == 1 && step == 100 && lag == 3 {
        return f64::NAN;
    }
    let rate = 0.5 * (g + 1) as f64 * (1.0 + step as f64 / 100.0);
    [2.0, 8.0][s] * 10f64.powf(-(lag as f64) * rate)
}

/// λ_i (index i from 0) of group `g`, seed `s` at the last step, top layer; seed 1 has NaN at
/// index 3 and −inf at index 4 (a singular direction).
fn lyapunov(g: usize, s: usize, i: usize) -> f64 {
    match (s, i) {
        (1, 3) => f64::NAN,
        (1, 4) => f64::NEG_INFINITY,
        _ => -0.1 * (i + 1) as f64 * (g + 1) as f64 + 0.02 * s as f64,
    }
}

const KS: [u64; 5] = [1, 2, 4, 8, 10];

/// σ_max of ∂h_t/∂h_{t−k} of group `g`, seed `s` at the last step, top layer; seed 1 has 0 at
/// k = 10 (skipped on a log scale) and a tiny 1e-40 at k = 8 (kept).
fn sigma(g: usize, s: usize, k: u64) -> f64 {
    match (s, k) {
        (1, 10) => 0.0,
        (1, 8) => 1e-40,
        _ => [2.0, 8.0][s] * (g + 1) as f64 * 0.9f64.powi(k as i32),
    }
}

fn outcome() -> Outcome {
    Outcome {
        status: Status::Ok,
        final_loss: 0.1,
        best_loss: 0.1,
        metric: 0.1,
        success: Some(false),
        diverged_at_step: None,
        clip_fraction: 0.0,
        decay_rate: Some(-0.5),
        steps: 101,
        started_at: std::time::SystemTime::UNIX_EPOCH,
        wall_seconds: 1.0,
        steps_per_sec: 101.0,
    }
}

/// Writes the sweep of [`DIAG_SPEC`] into `dir`, with a `spectrum` table if `spectrum`.
fn write_diag_sweep(dir: &Path, spectrum: bool) {
    let spec = Spec::parse(DIAG_SPEC, "spec.toml").unwrap();
    std::fs::write(dir.join("sweep.toml"), spec.to_toml()).unwrap();
    let prov = Provenance {
        sweep: "diag".into(),
        isa: "test".into(),
        gradlab_version: "0".into(),
        git_commit: "x".into(),
    };
    for run in spec.expand().unwrap() {
        let value = |k: &str| {
            run.swept
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        let g = ["rnn", "lstm"]
            .iter()
            .position(|c| *c == value("cell"))
            .unwrap();
        let s: usize = value("seed").parse().unwrap();
        let mut flow = Vec::new();
        for step in FLOW_STEPS {
            for lag in 0..LAGS {
                for (layer, source, grad_norm) in [
                    (1, FlowSource::Probe, probe_norm(g, s, step, lag)),
                    // Not the top layer, not the probe: never drawn.
                    (0, FlowSource::Probe, 1e5),
                    (1, FlowSource::Train, 1e9),
                ] {
                    flow.push(FlowRow {
                        step,
                        layer,
                        lag,
                        source,
                        grad_norm,
                    });
                }
            }
        }
        let record = RunRecord {
            outcome: outcome(),
            logged: vec![StepRow {
                step: 100,
                loss: 0.2,
                ..StepRow::default()
            }],
            flow,
            spectrum: Vec::new(),
        };
        store::write_run(dir, &run.id, &run.config, &record, &prov).unwrap();
        if spectrum {
            write_spectrum(dir, &run.id, g, s);
        }
    }
}

/// The `spectrum` part of one run, by hand: at steps 0 and 100, layers 0 and 1; only step 100,
/// layer 1 holds the values the figures must show, the rest +5 (λ) or 1e6 (σ).
fn write_spectrum(dir: &Path, id: &str, g: usize, s: usize) {
    let mut rows: Vec<(i64, i64, String, i64, f64)> = Vec::new();
    for step in [0i64, 100] {
        for layer in [0i64, 1] {
            let last_top = step == 100 && layer == 1;
            for i in 0..5 {
                let v = if last_top { lyapunov(g, s, i) } else { 5.0 };
                rows.push((step, layer, "lyapunov".into(), i as i64, v));
            }
            for k in KS {
                let v = if last_top { sigma(g, s, k) } else { 1e6 };
                rows.push((step, layer, format!("jacobian_sv_k{k}"), 0, v));
                // Not the largest singular value: never drawn.
                rows.push((step, layer, format!("jacobian_sv_k{k}"), 1, v / 2.0));
            }
        }
    }
    let mut df = polars::df!(
        "run_id" => vec![id; rows.len()],
        "step" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        "layer" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        "kind" => rows.iter().map(|r| r.2.clone()).collect::<Vec<_>>(),
        "index" => rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        "value" => rows.iter().map(|r| r.4).collect::<Vec<_>>(),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("spectrum")).unwrap();
    let file = std::fs::File::create(dir.join("spectrum").join(format!("{id}.parquet"))).unwrap();
    ParquetWriter::new(file).finish(&mut df).unwrap();
}

/// Writes the sweep of [`DIAG_SPEC`] into a fresh folder `name` and reports it; returns the
/// report and its folder.
fn report_diag_sweep(name: &str, spectrum: bool, options: Options) -> (report::Report, PathBuf) {
    let dir = tmpdir(name);
    write_diag_sweep(&dir, spectrum);
    let r = report::report(&dir, &options).unwrap();
    (r, dir.join("report"))
}

#[test]
fn diagnostic_figures_are_written_in_every_format_with_their_aggregated_data() {
    let (r, out) = report_diag_sweep("diag", true, Options::default());
    for figure in ["gradient_heatmap", "lyapunov_spectrum", "jacobian_sv_vs_k"] {
        for ext in ["pdf", "svg", "png", "csv"] {
            let path = out.join(format!("{figure}.{ext}"));
            assert!(r.files.contains(&path), "{} not written", path.display());
            assert!(
                std::fs::metadata(&path).unwrap().len() > 100,
                "{}",
                path.display()
            );
        }
    }

    // Heatmap: log10 of the geometric mean over the two seeds, top layer, probe only.
    let mut header = csv::Reader::from_path(out.join("gradient_heatmap.csv")).unwrap();
    assert_eq!(
        header.headers().unwrap().iter().collect::<Vec<_>>(),
        ["cell", "step", "lag", "log10_grad_norm"]
    );
    let heat = csv_rows(&out.join("gradient_heatmap.csv"));
    // Every (group, step, lag) but rnn's (100, 4), where both seeds are 0.
    assert_eq!(heat.len(), 2 * FLOW_STEPS.len() * LAGS - 1);
    for row in &heat {
        let g = ["rnn", "lstm"]
            .iter()
            .position(|c| *c == row["cell"])
            .unwrap();
        let (step, lag): (usize, usize) =
            (row["step"].parse().unwrap(), row["lag"].parse().unwrap());
        assert!(
            !(g == 0 && step == 100 && lag == 4),
            "a blank cell has a value: {row:?}"
        );
        let seeds: Vec<f64> = (0..2)
            .map(|s| probe_norm(g, s, step, lag))
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect();
        let want = seeds.iter().map(|v| v.log10()).sum::<f64>() / seeds.len() as f64;
        let got: f64 = row["log10_grad_norm"].parse().unwrap();
        assert!(close(got, want), "{row:?}: want {want}");
    }
    // The geometric mean of 2 and 8 is 4; the NaN of seed 1 leaves seed 0's 2·10^(−3·1).
    let cell = |cell: &str, step: &str, lag: &str| -> f64 {
        heat.iter()
            .find(|r| r["cell"] == cell && r["step"] == step && r["lag"] == lag)
            .unwrap()["log10_grad_norm"]
            .parse()
            .unwrap()
    };
    assert!(close(cell("rnn", "0", "0"), 4f64.log10()));
    assert!(close(cell("rnn", "100", "3"), 2f64.log10() - 3.0));

    // Lyapunov spectrum: mean over seeds at each 1-based index, the non-finite values skipped.
    let lyap = csv_rows(&out.join("lyapunov_spectrum.csv"));
    assert_eq!(lyap.len(), 2 * 5);
    for row in &lyap {
        let g = ["rnn", "lstm"]
            .iter()
            .position(|c| *c == row["cell"])
            .unwrap();
        let i = row["index"].parse::<usize>().unwrap() - 1;
        let seeds: Vec<f64> = (0..2)
            .map(|s| lyapunov(g, s, i))
            .filter(|v| v.is_finite())
            .collect();
        let mean = seeds.iter().sum::<f64>() / seeds.len() as f64;
        let num = |c: &str| row[c].parse::<f64>().unwrap();
        assert!(close(num("lyapunov_mean"), mean), "{row:?}: want {mean}");
        assert_eq!(
            num("lyapunov_min"),
            seeds.iter().copied().fold(f64::INFINITY, f64::min)
        );
        assert_eq!(
            num("lyapunov_max"),
            seeds.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        );
    }
    let first = lyap
        .iter()
        .find(|r| r["cell"] == "lstm" && r["index"] == "1")
        .unwrap();
    assert!(close(first["lyapunov_mean"].parse().unwrap(), -0.2 + 0.01));

    // σ_max against k: geometric mean over seeds, index 0 only, zero skipped, 1e-40 kept.
    let sv = csv_rows(&out.join("jacobian_sv_vs_k.csv"));
    assert_eq!(sv.len(), 2 * KS.len());
    for row in &sv {
        let g = ["rnn", "lstm"]
            .iter()
            .position(|c| *c == row["cell"])
            .unwrap();
        let k: u64 = row["k"].parse().unwrap();
        let seeds: Vec<f64> = (0..2)
            .map(|s| sigma(g, s, k))
            .filter(|v| *v > 0.0)
            .collect();
        let geo = (seeds.iter().map(|v| v.ln()).sum::<f64>() / seeds.len() as f64).exp();
        let got: f64 = row["sigma_max_geomean"].parse().unwrap();
        assert!((got / geo - 1.0).abs() < 1e-12, "{row:?}: want {geo}");
    }
    let at = |cell: &str, k: &str| -> f64 {
        sv.iter()
            .find(|r| r["cell"] == cell && r["k"] == k)
            .unwrap()["sigma_max_geomean"]
            .parse()
            .unwrap()
    };
    assert!(close(at("rnn", "1"), 4.0 * 0.9));
    assert!(close(at("rnn", "10"), 2.0 * 0.9f64.powi(10)));

    // Faceted by cell (the default): one panel each in the line charts; the heatmap has one
    // panel per condition, and its colour bar is labelled in decades.
    for figure in ["lyapunov_spectrum", "jacobian_sv_vs_k", "gradient_heatmap"] {
        let texts = svg_texts(&std::fs::read_to_string(out.join(format!("{figure}.svg"))).unwrap());
        let count = |t: &str| texts.iter().filter(|x| *x == t).count();
        assert_eq!(
            (count("cell=rnn"), count("cell=lstm")),
            (1, 1),
            "{figure}: {texts:?}"
        );
    }
    let texts = svg_texts(&std::fs::read_to_string(out.join("gradient_heatmap.svg")).unwrap());
    // Values from 10^(−18) (lstm, lag 9, step 100, seed 0: 2·10^(−18)) to 8: decades -18..1.
    assert!(texts.contains(&decade_label(0)), "{texts:?}");
    assert!(texts.iter().any(|t| t.starts_with("10⁻")), "{texts:?}");
}

#[test]
fn folders_without_a_spectrum_table_report_without_its_figures() {
    let (r, out) = report_diag_sweep("diag-old", false, Options::default());
    assert!(out.join("gradient_heatmap.png").exists());
    for figure in ["lyapunov_spectrum", "jacobian_sv_vs_k"] {
        for ext in ["pdf", "svg", "png", "csv"] {
            let path = out.join(format!("{figure}.{ext}"));
            assert!(
                !path.exists() && !r.files.contains(&path),
                "{}",
                path.display()
            );
        }
    }
}

#[test]
fn only_the_asked_formats_and_one_heatmap_panel_per_condition_whatever_the_facet() {
    let options = Options {
        figures: opts(Facet::None, &[PlotFormat::Png]),
        ..Options::default()
    };
    let (_, out) = report_diag_sweep("diag-png", true, options);
    for figure in ["gradient_heatmap", "lyapunov_spectrum", "jacobian_sv_vs_k"] {
        assert!(out.join(format!("{figure}.png")).exists(), "{figure}");
        assert!(out.join(format!("{figure}.csv")).exists(), "{figure}");
        assert!(!out.join(format!("{figure}.svg")).exists(), "{figure}");
        assert!(!out.join(format!("{figure}.pdf")).exists(), "{figure}");
    }
    // Two conditions: the heatmap shows both in their own panels even with --facet none.
    let heat = csv_rows(&out.join("gradient_heatmap.csv"));
    assert!(heat.iter().any(|r| r["cell"] == "rnn") && heat.iter().any(|r| r["cell"] == "lstm"));
}
