//! The aggregated table as text: Markdown (printed and `summary.md`), LaTeX (a booktabs
//! `tabular`, `summary.tex`) and CSV (every statistic at full precision, `summary.csv`).

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

/// The table's cells as text, shared by the Markdown and LaTeX writers.
pub struct Cells {
    header: Vec<String>,
    /// Columns of keys (left-aligned) before the statistics.
    keys: usize,
    rows: Vec<Vec<String>>,
}

impl Cells {
    pub fn new(
        t: &DataFrame,
        by: &[String],
        metrics: &[String],
        metric: &str,
    ) -> PolarsResult<Cells> {
        let mut header: Vec<String> = by.to_vec();
        let mut columns: Vec<Vec<String>> = by
            .iter()
            .map(|k| strings(t, k))
            .collect::<PolarsResult<_>>()?;
        header.push("runs".into());
        columns.push(strings(t, "runs")?);
        for m in metrics {
            let (mean, std) = (
                f64s(t, &format!("{m}_mean"))?,
                f64s(t, &format!("{m}_std"))?,
            );
            header.push(match m.as_str() {
                "metric" => metric.to_string(),
                other => other.replace('_', " "),
            });
            columns.push(mean.iter().zip(&std).map(|(m, s)| pm(*m, *s)).collect());
        }
        let (k, n) = (f64s(t, "successes")?, f64s(t, "judged")?);
        let (lo, hi) = (f64s(t, "success_lo95")?, f64s(t, "success_hi95")?);
        header.push("success [95% CI]".into());
        columns.push(
            (0..t.height())
                .map(|i| {
                    if n[i] > 0.0 {
                        format!("{}/{} [{:.2}, {:.2}]", k[i], n[i], lo[i], hi[i])
                    } else {
                        "-".into()
                    }
                })
                .collect(),
        );
        header.push("median steps to success".into());
        columns.push(
            f64s(t, "median_steps_to_success")?
                .into_iter()
                .map(num)
                .collect(),
        );
        header.push("diverged".into());
        columns.push(strings(t, "diverged")?);
        header.push("clip fraction".into());
        columns.push(f64s(t, "clip_fraction")?.into_iter().map(num).collect());
        header.push("decay rate".into());
        columns.push(f64s(t, "decay_rate")?.into_iter().map(num).collect());
        // The truncation-bias probe, where some run is truncated.
        let (cos, ratio) = (f64s(t, "trunc_cosine")?, f64s(t, "trunc_norm_ratio")?);
        if cos.iter().any(|c| c.is_finite() && *c < 1.0) {
            header.push("trunc. cosine".into());
            columns.push(cos.into_iter().map(num).collect());
            header.push("trunc. norm ratio".into());
            columns.push(ratio.into_iter().map(num).collect());
        }
        let rows = (0..t.height())
            .map(|i| columns.iter().map(|c| c[i].clone()).collect())
            .collect();
        Ok(Cells {
            header,
            keys: by.len(),
            rows,
        })
    }

    pub fn markdown(&self) -> String {
        let align: Vec<&str> = (0..self.header.len())
            .map(|i| if i < self.keys { "---" } else { "---:" })
            .collect();
        let line = |cells: &[String]| format!("| {} |", cells.join(" | "));
        let mut out = vec![line(&self.header), format!("|{}|", align.join("|"))];
        out.extend(self.rows.iter().map(|r| line(r)));
        out.join("\n")
    }

    pub fn latex(&self, headline: &str) -> String {
        let spec: String = (0..self.header.len())
            .map(|i| if i < self.keys { 'l' } else { 'r' })
            .collect();
        let row = |cells: &[String]| {
            cells
                .iter()
                .map(|c| latex_escape(c))
                .collect::<Vec<_>>()
                .join(" & ")
                + " \\\\"
        };
        let mut out = vec![
            format!("% {}", headline.replace('`', "")),
            "% Written by gradlab report; needs \\usepackage{booktabs}.".to_string(),
            format!("\\begin{{tabular}}{{{spec}}}"),
            "\\toprule".into(),
            row(&self.header),
            "\\midrule".into(),
        ];
        out.extend(self.rows.iter().map(|r| row(r)));
        out.extend([
            "\\bottomrule".into(),
            "\\end{tabular}".into(),
            String::new(),
        ]);
        out.join("\n")
    }
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
            '^' => out.push_str("\\textasciicircum{}"),
            '±' => out.push_str("$\\pm$"),
            c => out.push(c),
        }
    }
    out
}
