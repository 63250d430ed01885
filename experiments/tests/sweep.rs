//! Sweep specs: expansion order and size, random samples, the written spec, shards and run ids.

use std::collections::BTreeSet;

use gradlab_experiments::config::{CellKind, RunConfig};
use gradlab_experiments::store::run_id;
use gradlab_experiments::sweep::{parse_shard, shard, Spec};

const SPEC: &str = r#"
name = "s"
seeds = [3, 4]
[base]
hidden = 16
steps = 10
[grid]
cell = ["rnn", "lstm"]
truncation = [10, "full"]
clip = ["none", "norm:1", "value:0.5"]
[random]
n = 3
seed = 7
lr = { log_uniform = [1e-4, 1e-1] }
depth = { int = [1, 3] }
init = { choice = ["default", "orthogonal"] }
"#;

#[test]
fn a_spec_expands_to_the_product_of_its_axes_samples_and_seeds_in_order() {
    let spec = Spec::parse(SPEC, "spec.toml").unwrap();
    let runs = spec.expand().unwrap();
    assert_eq!(runs.len(), 2 * 2 * 3 * 3 * 2);
    let ids: BTreeSet<_> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), runs.len(), "run ids collide");
    // Last axis fastest, then samples, then seeds innermost.
    assert_eq!(
        runs[0].label().split(' ').take(3).collect::<Vec<_>>(),
        ["cell=rnn", "truncation=10", "clip=none"]
    );
    assert_eq!(runs[1].config.seed, 4);
    assert_eq!(runs[6].config.clip.to_string(), "norm:1");
    assert_eq!(runs.last().unwrap().config.cell, CellKind::Lstm);
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(r.index, i);
        assert_eq!(r.id, run_id(&r.config));
        assert_eq!(r.config.name, "s");
        assert_eq!(r.config.hidden, 16);
        assert!((1e-4..1e-1).contains(&r.config.lr), "lr {}", r.config.lr);
        assert!((1..=3).contains(&r.config.depth));
    }
    // Every grid point sees the same samples; the samples differ from each other.
    let lrs: Vec<f64> = runs
        .iter()
        .step_by(2)
        .take(3)
        .map(|r| r.config.lr)
        .collect();
    assert_eq!(
        lrs,
        runs.iter()
            .skip(6)
            .step_by(2)
            .take(3)
            .map(|r| r.config.lr)
            .collect::<Vec<_>>()
    );
    assert!(lrs[0] != lrs[1] && lrs[1] != lrs[2]);
}

#[test]
fn the_written_spec_expands_to_the_same_runs_and_writes_itself_again() {
    let mut spec = Spec::parse(SPEC, "spec.toml").unwrap();
    spec.set("batch", "7").unwrap();
    spec.set_axis("hidden", "8,32").unwrap();
    let written = spec.to_toml();
    let again = Spec::parse(&written, "sweep.toml").unwrap();
    assert_eq!(again.expand().unwrap(), spec.expand().unwrap());
    assert_eq!(again.to_toml(), written);
    assert!(spec.expand().unwrap().iter().all(|r| r.config.batch == 7));
}

#[test]
fn shards_are_disjoint_balanced_and_make_the_whole_sweep() {
    let runs = Spec::parse(SPEC, "spec.toml").unwrap().expand().unwrap();
    for n in [1, 2, 5, 72, 100] {
        let mut all = Vec::new();
        for i in 0..n {
            let part = shard(&runs, i, n);
            assert!(part.len().abs_diff(runs.len() / n) <= 1);
            all.extend(part.iter().map(|r| r.index));
        }
        all.sort();
        assert_eq!(all, (0..runs.len()).collect::<Vec<_>>(), "n = {n}");
    }
    assert_eq!(parse_shard("2/5"), Ok((2, 5)));
    for bad in ["5/5", "1/0", "-1/2", "1", "a/b", "1/2/3"] {
        assert!(parse_shard(bad).is_err(), "{bad}");
    }
}

/// The run id is a contract: results folders written by one build are resumed by the next.
/// The value is FNV-1a of the default config's canonical TOML, computed independently (Python).
#[test]
fn run_ids_are_stable_across_builds() {
    assert_eq!(
        run_id(&RunConfig::default()),
        "9693d3802543922c",
        "the run id of the default config changed: results folders of earlier builds would rerun"
    );
}
