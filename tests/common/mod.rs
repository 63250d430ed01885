//! Running the `gradlab` binary from the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gradlab_experiments::store::{self, read_table};
use gradlab_experiments::sweep::Spec;
use gradlab_kernels::rng::SplitMix64;
use polars::prelude::*;

/// Runs `gradlab` with `args` and returns what it printed and its status.
pub fn gradlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradlab"))
        .args(args)
        .output()
        .expect("gradlab runs")
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs gradlab, which must fail (without a panic), and returns its standard error.
#[allow(dead_code)]
pub fn fails(args: &[&str]) -> String {
    let o = gradlab(args);
    assert!(
        !o.status.success(),
        "gradlab {args:?} succeeded:\n{}",
        text(&o.stdout)
    );
    assert_ne!(o.status.code(), Some(101), "gradlab {args:?} panicked");
    text(&o.stderr)
}

/// Writes `dir/text.txt`, a text of at least `chars` characters for charlm, and returns its
/// path.
#[allow(dead_code)]
pub fn text_file(dir: &Path, chars: usize) -> PathBuf {
    let words = [
        "sing",
        "O goddess",
        "the anger",
        "of Achilles",
        "son of Peleus,",
    ];
    let mut rng = SplitMix64(3);
    let mut text = String::new();
    while text.len() < chars {
        text += words[rng.below(words.len())];
        text += if rng.below(7) == 0 { "\n" } else { " " };
    }
    let path = dir.join("text.txt");
    std::fs::write(&path, text).unwrap();
    path
}

/// A fresh empty folder for one test.
#[allow(dead_code)]
pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gradlab-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A sweep of 8 tiny runs: truncation x clip x 2 seeds.
#[allow(dead_code)]
pub const SPEC: &str = r#"name = "tiny"
seeds = [0, 1]

[base]
task = "adding"
seq_len = 20
hidden = 8
steps = 60
log_every = 10
eval_every = 30
eval_sequences = 50

[grid]
truncation = [5, "full"]
clip = ["none", "norm:1"]
"#;

/// Writes [`SPEC`] to `dir/spec.toml`.
#[allow(dead_code)]
pub fn write_spec(dir: &Path) -> PathBuf {
    let p = dir.join("spec.toml");
    std::fs::write(&p, SPEC).unwrap();
    p
}

#[allow(dead_code)]
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `gradlab sweep ARGS`, which must succeed, and returns its standard output.
#[allow(dead_code)]
pub fn sweep_ok(args: &[&str]) -> String {
    let o = gradlab(&[&["sweep"], args].concat());
    assert!(
        o.status.success(),
        "gradlab sweep {args:?} failed:\n{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// A table sorted by its key columns, without the volatile columns: the columns that must not
/// depend on how, where or in how many pieces a sweep ran.
#[allow(dead_code)]
pub fn metrics(dir: &Path, table: &str) -> DataFrame {
    let df = read_table(dir, table)
        .unwrap()
        .expect("the table has files");
    let mut df = df
        .sort(store::key_columns(table), SortMultipleOptions::default())
        .unwrap();
    for volatile in store::VOLATILE_COLUMNS {
        if df.column(volatile).is_ok() {
            df = df.drop(volatile).unwrap();
        }
    }
    df
}

/// The tables of two results folders hold the same metric values.
#[allow(dead_code)]
pub fn assert_same_results(a: &Path, b: &Path) {
    for table in store::TABLES {
        let (x, y) = (metrics(a, table), metrics(b, table));
        assert_eq!(x.shape(), y.shape(), "{table}: shapes differ");
        assert!(
            x.equals_missing(&y),
            "{table} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

/// The run_ids of the spec at `spec`, in order.
#[allow(dead_code)]
pub fn ids(spec: &Path) -> Vec<String> {
    Spec::load(spec)
        .unwrap()
        .expand()
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// Waits (up to a minute, then fails) until `cond` holds; `what` names it in the failure.
#[allow(dead_code)]
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
