//! The aggregated table as text: Markdown (printed and `summary.md`), LaTeX (a booktabs table
//! float, `summary.tex`) and CSV (every statistic at full precision, `summary.csv`).

use polars::prelude::*;

use super::{f64s, strings};

/// The table formats of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Latex,
    Csv,
}

/// A table format that gradlab does not write.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown format '{0}': expected md, tex or csv")]
pub struct FormatError(pub String);

impl std::str::FromStr for Format {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, FormatError> {
        match s {
            "md" | "markdown" => Ok(Format::Markdown),
            "tex" | "latex" => Ok(Format::Latex),
            "csv" => Ok(Format::Csv),
            _ => Err(FormatError(s.into())),
        }
    }
}

/// A number for a table: 4 significant digits, scientific outside [1e-3, 1e5).
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "-".into()
        } else {
            x.to_string()
        };
    }
    let a = x.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{x:.2e}")
    } else {
        let digits = if a == 0.0 {
            0
        } else {
            3 - a.log10().floor() as i32
        };
        format!("{x:.*}", digits.clamp(0, 6) as usize)
    }
}

/// `mean ± std` with the std to two significant digits and the mean to the same decimal place.
pub fn pm(mean: f64, std: f64) -> String {
    if !(std.is_finite() && std > 0.0 && mean.is_finite()) {
        return num(mean);
    }
    let decimals = 1 - std.log10().floor() as i32;
    if !(0..=8).contains(&decimals) || mean.abs() >= 1e5 {
        return format!("{} ± {}", num(mean), num(std));
    }
    let d = decimals as usize;
    format!("{mean:.d$} ± {std:.d$}")
}

/// The table as CSV: a header of column names, numbers at full precision (shortest round-trip
/// form), empty cells for missing values.
pub fn to_csv(table: &DataFrame) -> PolarsResult<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let names: Vec<&str> = table.columns().iter().map(|c| c.name().as_str()).collect();
    let cells: Vec<Vec<String>> = table
        .columns()
        .iter()
        .map(|c| {
            let s = c.as_materialized_series();
            (0..s.len())
                .map(|i| match s.get(i) {
                    Ok(AnyValue::Null) | Err(_) => String::new(),
                    Ok(AnyValue::Float64(x)) if x.is_nan() => String::new(),
                    Ok(AnyValue::Float64(x)) => format!("{x:?}"),
                    Ok(AnyValue::String(v)) => v.to_string(),
                    Ok(AnyValue::StringOwned(v)) => v.to_string(),
                    Ok(v) => v.to_string(),
                })
                .collect()
        })
        .collect();
    let io = |e: csv::Error| PolarsError::ComputeError(e.to_string().into());
    w.write_record(&names).map_err(io)?;
    for i in 0..table.height() {
        w.write_record(cells.iter().map(|c| c[i].as_str()))
            .map_err(io)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| PolarsError::ComputeError(e.to_string().into()))?;
    Ok(String::from_utf8(bytes).expect("the cells are UTF-8"))
}

/// The statistic columns a Markdown or LaTeX table can show (`--columns`), by the name of the
/// CSV column they come from (the loss and metric columns show `<name>_mean ± <name>_std`).
pub const COLUMNS: [&str; 11] = [
    "runs",
    "metric",
    "final_loss",
    "best_loss",
    "success",
    "median_steps_to_success",
    "diverged",
    "clip_fraction",
    "decay_rate",
    "trunc_cosine",
    "trunc_norm_ratio",
];

/// A `--columns` name that is not one of [`COLUMNS`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("--columns {0}: not a table column; choose from {cols}", cols = COLUMNS.join(", "))]
pub struct ColumnError(pub String);

/// Checks `--columns` names.
pub fn check_columns(names: &[String]) -> Result<(), ColumnError> {
    match names.iter().find(|n| !COLUMNS.contains(&n.as_str())) {
        Some(bad) => Err(ColumnError(bad.clone())),
        None => Ok(()),
    }
}

/// How a column's cells are typeset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A grouping key: left-aligned text.
    Key,
    /// Numbers (`mean ± std`, counts): right-aligned, in math mode in LaTeX.
    Number,
    /// Other right-aligned text (`2/3 [0.21, 0.94]`).
    Text,
}

/// One column of a table: its `--columns` name (keys: the key), headers and cells.
struct Col {
    name: String,
    header: String,
    /// The LaTeX header, split over lines.
    latex_header: Vec<String>,
    kind: Kind,
    cells: Vec<String>,
}

/// The table's cells as text, shared by the Markdown and LaTeX writers.
pub struct Cells {
    cols: Vec<Col>,
    rows: usize,
    /// Whether some group was trained with truncation (its truncation-bias cosine is below 1).
    truncated: bool,
}

impl Cells {
    /// Every column the aggregated table `t` can show, keys `by` first; `metric` names the
    /// task metric in headers.
    pub fn new(t: &DataFrame, by: &[String], metric: &str) -> PolarsResult<Cells> {
        let mut cols = Vec::new();
        let mut add = |name: &str, header: &str, latex: &[&str], kind, cells: Vec<String>| {
            cols.push(Col {
                name: name.into(),
                header: header.into(),
                latex_header: latex.iter().map(|s| s.to_string()).collect(),
                kind,
                cells,
            })
        };
        for k in by {
            let short = if k == "truncation" { "trunc." } else { k };
            add(k, k, &[short], Kind::Key, strings(t, k)?);
        }
        add("runs", "runs", &["runs"], Kind::Number, strings(t, "runs")?);
        for m in ["metric", "final_loss", "best_loss"] {
            let (mean, std) = (
                f64s(t, &format!("{m}_mean"))?,
                f64s(t, &format!("{m}_std"))?,
            );
            let header = match m {
                "metric" => metric.to_string(),
                other => other.replace('_', " "),
            };
            let cells = mean.iter().zip(&std).map(|(m, s)| pm(*m, *s)).collect();
            add(m, &header, &[&header], Kind::Number, cells);
        }
        let (k, n) = (f64s(t, "successes")?, f64s(t, "judged")?);
        let (lo, hi) = (f64s(t, "success_lo95")?, f64s(t, "success_hi95")?);
        let success = (0..t.height())
            .map(|i| {
                if n[i] > 0.0 {
                    format!("{}/{} [{:.2}, {:.2}]", k[i], n[i], lo[i], hi[i])
                } else {
                    "-".into()
                }
            })
            .collect();
        add(
            "success",
            "success [95% CI]",
            &["success", "[95% CI]"],
            Kind::Text,
            success,
        );
        let mut number = |name: &str, header: &str, latex: &[&str]| -> PolarsResult<()> {
            let cells = f64s(t, name)?.into_iter().map(num).collect();
            add(name, header, latex, Kind::Number, cells);
            Ok(())
        };
        number(
            "median_steps_to_success",
            "median steps to success",
            &["median steps", "to success"],
        )?;
        number("diverged", "diverged", &["diverged"])?;
        number("clip_fraction", "clip fraction", &["clip", "fraction"])?;
        number("decay_rate", "decay rate", &["decay", "rate"])?;
        number("trunc_cosine", "trunc. cosine", &["trunc.", "cosine"])?;
        number(
            "trunc_norm_ratio",
            "trunc. norm ratio",
            &["trunc.", "norm ratio"],
        )?;
        let truncated = f64s(t, "trunc_cosine")?.iter().any(|c| *c < 1.0);
        Ok(Cells {
            cols,
            rows: t.height(),
            truncated,
        })
    }

    /// The default columns of a Markdown table: `metrics` (the loss and metric columns), then
    /// every other statistic; the truncation-bias probe only where some run is truncated.
    pub fn markdown_columns(&self, metrics: &[String]) -> Vec<String> {
        let mut names = vec!["runs".to_string()];
        names.extend(metrics.iter().cloned());
        names.extend(
            [
                "success",
                "median_steps_to_success",
                "diverged",
                "clip_fraction",
                "decay_rate",
            ]
            .map(String::from),
        );
        if self.truncated {
            names.extend(["trunc_cosine", "trunc_norm_ratio"].map(String::from));
        }
        names
    }

    /// The default columns of a LaTeX table, few enough for a paper's column: the first of
    /// `metrics`, success and median steps to success.
    pub fn latex_columns(metrics: &[String]) -> Vec<String> {
        let mut names: Vec<String> = metrics.iter().take(1).cloned().collect();
        names.extend(["success", "median_steps_to_success"].map(String::from));
        names
    }

    fn col(&self, name: &str) -> Option<&Col> {
        self.cols.iter().find(|c| c.name == name)
    }

    /// The key columns, then the columns `names` (in that order).
    fn select(&self, names: &[String]) -> Vec<&Col> {
        let keys = self.cols.iter().filter(|c| c.kind == Kind::Key);
        keys.chain(names.iter().filter_map(|n| self.col(n)))
            .collect()
    }

    /// A Markdown table of the key columns and `names`.
    pub fn markdown(&self, names: &[String]) -> String {
        let cols = self.select(names);
        let line = |cells: Vec<&str>| format!("| {} |", cells.join(" | "));
        let align: Vec<&str> = cols
            .iter()
            .map(|c| if c.kind == Kind::Key { "---" } else { "---:" })
            .collect();
        let mut out = vec![
            line(cols.iter().map(|c| c.header.as_str()).collect()),
            format!("|{}|", align.join("|")),
        ];
        for i in 0..self.rows {
            out.push(line(cols.iter().map(|c| c.cells[i].as_str()).collect()));
        }
        out.join("\n")
    }

    /// A LaTeX `table` float of the key columns and `names`: booktabs rules, `\footnotesize`,
    /// real minus signs, `--` for a missing value, `caption` and `label`. A table estimated
    /// wider than one column of a two-column paper is a `table*` (full width).
    pub fn latex(&self, names: &[String], caption: &str, label: &str) -> String {
        let cols = self.select(names);
        let spec: String = cols
            .iter()
            .map(|c| if c.kind == Kind::Key { 'l' } else { 'r' })
            .collect();
        let header_lines = cols.iter().map(|c| c.latex_header.len()).max().unwrap_or(1);
        let cell = |c: &Col, text: &str| match c.kind {
            _ if text == "-" => "--".to_string(),
            Kind::Number => latex_number(text),
            Kind::Key | Kind::Text => latex_escape(text),
        };
        let row = |cells: Vec<String>| cells.join(" & ") + " \\\\";
        let mut body = Vec::new();
        for line in 0..header_lines {
            // Multi-line headers sit on the bottom line, as booktabs tables do.
            let pad = |c: &Col| header_lines - c.latex_header.len();
            body.push(row(cols
                .iter()
                .map(|c| {
                    line.checked_sub(pad(c))
                        .map_or(String::new(), |j| latex_escape(&c.latex_header[j]))
                })
                .collect()));
        }
        body.push("\\midrule".into());
        for i in 0..self.rows {
            body.push(row(cols.iter().map(|c| cell(c, &c.cells[i])).collect()));
        }
        // Width at \footnotesize: about 4.5 pt a character, 2 x 4 pt of padding per column;
        // a column of a two-column article is about 240 pt wide.
        let chars: usize = cols
            .iter()
            .map(|c| {
                let header = c.latex_header.iter().map(|h| h.chars().count()).max();
                let cells = c.cells.iter().map(|v| v.chars().count()).max();
                header.max(cells).unwrap_or(0)
            })
            .sum();
        let width = 4.5 * chars as f64 + 8.0 * cols.len() as f64;
        let float = if width > 230.0 { "table*" } else { "table" };
        let mut out = vec![
            "% Written by gradlab report; needs \\usepackage{booktabs}.".to_string(),
            format!("\\begin{{{float}}}[tbp]"),
            "\\centering".into(),
            "\\footnotesize".into(),
            "\\setlength{\\tabcolsep}{4pt}".into(),
            format!("\\begin{{tabular}}{{{spec}}}"),
            "\\toprule".into(),
        ];
        out.extend(body);
        out.extend([
            "\\bottomrule".into(),
            "\\end{tabular}".into(),
            format!("\\caption{{{}}}", latex_escape(caption)),
            format!("\\label{{{label}}}"),
            format!("\\end{{{float}}}"),
            String::new(),
        ]);
        out.join("\n")
    }
}

/// A number cell for LaTeX, in math mode: a real minus, `\pm`, and `a\times10^{b}` for the
/// scientific form (`-1.2e-5 ± 3.0e-6`).
pub fn latex_number(text: &str) -> String {
    let mut out = String::from("$");
    for (i, part) in text.split(" ± ").enumerate() {
        if i > 0 {
            out.push_str(" \\pm ");
        }
        match part.split_once('e') {
            Some((mantissa, exp)) if exp.parse::<i32>().is_ok() => {
                out.push_str(&format!(
                    "{mantissa}\\times10^{{{}}}",
                    exp.parse::<i32>().unwrap()
                ));
            }
            _ if part == "inf" => out.push_str("\\infty"),
            _ if part == "-inf" => out.push_str("-\\infty"),
            _ => out.push_str(part),
        }
    }
    out.push('$');
    out
}

/// Text for LaTeX: specials escaped, ± as math.
pub fn latex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '<' => out.push_str("\\textless{}"),
            '>' => out.push_str("\\textgreater{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '±' => out.push_str("$\\pm$"),
            c => out.push(c),
        }
    }
    out
}
