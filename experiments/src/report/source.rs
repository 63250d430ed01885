//! What a report reads: one or more results folders, each a sweep's (with its `sweep.toml`) or
//! a single run's (`gradlab run --out`), and the `--where` conditions that narrow their runs.

use std::path::{Path, PathBuf};

use crate::config::{did_you_mean, RunConfig};
use crate::sweep::status::SPEC_FILE;
use crate::sweep::{PlannedRun, SweepDir, SweepDirError};

/// One results folder of a report.
#[derive(Clone, Debug)]
pub struct Source {
    pub dir: PathBuf,
    /// The folder's name, the `source` column when a report compares several.
    pub label: String,
    /// The sweep whose results the folder holds; `None` for a folder of single runs, all of
    /// whose runs are reported.
    pub sweep: Option<SweepDir>,
}

impl Source {
    /// Opens `dir`: a sweep's folder when it has a `sweep.toml`, else a folder of runs.
    pub fn open(dir: &Path) -> Result<Source, SweepDirError> {
        let label = dir
            .file_name()
            .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into());
        let sweep = if dir.join(SPEC_FILE).is_file() || !dir.join("runs").is_dir() {
            Some(SweepDir::open(dir)?)
        } else {
            None
        };
        Ok(Source {
            dir: dir.to_path_buf(),
            label,
            sweep,
        })
    }

    /// The runs the sweep plans whose configuration meets every condition on a config key
    /// (none for a folder of single runs).
    pub fn planned(&self, conditions: &[Condition]) -> Vec<PlannedRun> {
        let Some(sweep) = &self.sweep else {
            return Vec::new();
        };
        sweep
            .runs
            .iter()
            .filter(|r| {
                // The config's table once per run, not once per condition.
                let table = r.config.to_table();
                conditions
                    .iter()
                    .all(|c| c.holds_for_config(&r.config, &table))
            })
            .cloned()
            .collect()
    }
}

/// Opens every folder; labels that repeat (`a/results` and `b/results`) become the paths.
pub fn open_all(dirs: &[PathBuf]) -> Result<Vec<Source>, SweepDirError> {
    let mut sources = dirs
        .iter()
        .map(|d| Source::open(d))
        .collect::<Result<Vec<_>, _>>()?;
    let labels: Vec<String> = sources.iter().map(|s| s.label.clone()).collect();
    for s in &mut sources {
        if labels.iter().filter(|l| **l == s.label).count() > 1 {
            s.label = s.dir.display().to_string();
        }
    }
    Ok(sources)
}

/// A comparison of `--where`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "=",
            Op::Ne => "!=",
        }
    }
}

/// One condition of `--where "cell=lstm,seq_len>=100"`: a column of the `runs` table, a
/// comparison and a value. Numbers compare as numbers; `tags = x` holds when the run has tag x.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub key: String,
    pub op: Op,
    pub value: String,
}

/// A `--where` that cannot be read or names no column.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WhereError {
    #[error(
        "--where '{0}': expected KEY=VALUE, KEY!=VALUE, KEY<VALUE, KEY<=VALUE, KEY>VALUE or \
         KEY>=VALUE, conditions separated by commas (e.g. \"cell=lstm,seq_len>=100\")"
    )]
    Syntax(String),
    #[error("--where '{0}': {1} compares numbers, and '{2}' is not a number")]
    NotNumber(String, &'static str, String),
    #[error("--where: '{key}' is not a column of the runs table{hint}")]
    UnknownKey { key: String, hint: String },
}

impl Condition {
    /// Parses `--where`'s comma-separated conditions.
    pub fn parse_all(text: &str) -> Result<Vec<Condition>, WhereError> {
        text.split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(Condition::parse)
            .collect()
    }

    fn parse(text: &str) -> Result<Condition, WhereError> {
        // Two-character operators first, so `<=` is not read as `<` and `=...`.
        let ops = [
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("=", Op::Eq),
            ("<", Op::Lt),
            (">", Op::Gt),
        ];
        let (at, token, op) = ops
            .iter()
            .filter_map(|(t, op)| text.find(t).map(|at| (at, *t, *op)))
            .min_by_key(|(at, t, _)| (*at, usize::MAX - t.len()))
            .ok_or_else(|| WhereError::Syntax(text.into()))?;
        let (key, value) = (text[..at].trim(), text[at + token.len()..].trim());
        if key.is_empty() || value.is_empty() {
            return Err(WhereError::Syntax(text.into()));
        }
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        if !matches!(op, Op::Eq | Op::Ne) && value.parse::<f64>().is_err() {
            return Err(WhereError::NotNumber(
                text.into(),
                op.as_str(),
                value.into(),
            ));
        }
        Ok(Condition {
            key: key.into(),
            op,
            value: value.into(),
        })
    }

    /// Checks that the condition's key is one of `columns`.
    pub fn check_key<'a>(
        &self,
        columns: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Result<(), WhereError> {
        if columns.clone().into_iter().any(|c| c == self.key) {
            return Ok(());
        }
        Err(WhereError::UnknownKey {
            key: self.key.clone(),
            hint: did_you_mean(&self.key, columns),
        })
    }

    /// Whether a value in its display form meets the condition (`None`: missing, which only
    /// `!=` accepts).
    pub fn holds(&self, value: Option<&str>) -> bool {
        let Some(value) = value else {
            return self.op == Op::Ne;
        };
        let ordering = match (value.parse::<f64>(), self.value.parse::<f64>()) {
            (Ok(a), Ok(b)) => a.partial_cmp(&b),
            _ => Some(value.cmp(self.value.as_str())),
        };
        let Some(o) = ordering else { return false };
        match self.op {
            Op::Eq => o.is_eq(),
            Op::Ne => o.is_ne(),
            Op::Lt => o.is_lt(),
            Op::Le => o.is_le(),
            Op::Gt => o.is_gt(),
            Op::Ge => o.is_ge(),
        }
    }

    /// Whether a run's tags meet a condition on `tags` (`=`: has the tag, `!=`: has it not).
    pub fn holds_for_tags(&self, tags: &[String]) -> bool {
        let has = tags.contains(&self.value);
        if self.op == Op::Ne {
            !has
        } else {
            has
        }
    }

    /// Whether a planned run's configuration meets the condition; conditions on columns that
    /// are not config keys (outcomes) say nothing before the run is done, so they hold.
    /// `table` is `cfg.to_table()`.
    pub fn holds_for_config(&self, cfg: &RunConfig, table: &toml::Table) -> bool {
        if self.key == "tags" {
            return self.holds_for_tags(&cfg.tags.0);
        }
        match table.get(&self.key) {
            Some(v) => self.holds(Some(&crate::config::display_value(v))),
            None if crate::config::KEYS.contains(&self.key.as_str()) => self.holds(None),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_and_compare_numbers_as_numbers() {
        let c = Condition::parse_all("cell=lstm, seq_len>=100,clip!=none").unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!((c[1].key.as_str(), c[1].op), ("seq_len", Op::Ge));
        assert!(c[1].holds(Some("200")) && !c[1].holds(Some("50")));
        // As numbers, not as text: "1e-3" = 0.001 and "9" < "10".
        let lr = Condition::parse_all("lr=0.001").unwrap().remove(0);
        assert!(lr.holds(Some("1e-3")));
        let t = Condition::parse_all("truncation<10").unwrap().remove(0);
        assert!(t.holds(Some("9")) && !t.holds(Some("full")) && !t.holds(None));
        assert!(c[2].holds(None) && !c[2].holds(Some("none")));
        for bad in ["cell", "=lstm", "cell=", "seq_len>=long"] {
            assert!(Condition::parse_all(bad).is_err(), "{bad}");
        }
        let tags = Condition::parse_all("tags=v2").unwrap().remove(0);
        assert!(tags.holds_for_tags(&["a".into(), "v2".into()]));
        assert!(!tags.holds_for_tags(&[]));
    }

    #[test]
    fn an_unknown_key_suggests_the_nearest_column() {
        let c = Condition::parse_all("hiden=8").unwrap().remove(0);
        let err = c.check_key(["hidden", "cell"]).unwrap_err().to_string();
        assert!(err.contains("did you mean `hidden`"), "{err}");
    }
}
