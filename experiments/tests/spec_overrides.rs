//! A sweep built on the command line: `--grid` ranges, `--random` draws, `--samples`, `--name`
//! and `--seeds`, through the same checks as a spec file.

use gradlab_experiments::sweep::random::Dist;
use gradlab_experiments::sweep::{Spec, SpecErrorKind};
use toml::Value;

fn axis(spec: &Spec, key: &str) -> Vec<Value> {
    spec.grid
        .iter()
        .find(|a| a.key == key)
        .unwrap()
        .values
        .clone()
}

fn ints(v: &[i64]) -> Vec<Value> {
    v.iter().map(|&i| Value::Integer(i)).collect()
}

#[test]
fn grid_ranges_are_pythons_range() {
    let mut spec = Spec::new("r").unwrap();
    for (text, want) in [
        ("range(50,201,50)", vec![50, 100, 150, 200]),
        ("range(1, 4)", vec![1, 2, 3]),
        ("range(10,0,-3)", vec![10, 7, 4, 1]),
    ] {
        spec.set_axis("hidden", text).unwrap();
        assert_eq!(axis(&spec, "hidden"), ints(&want), "{text}");
    }
    spec.set_axis("seq_len", "range(50,201,50)").unwrap();
    spec.set_axis("cell", "rnn,lstm").unwrap();
    assert_eq!(spec.expand().unwrap().len(), 4 * 4 * 2);
    for bad in [
        "range(5,1)",
        "range(1,5,0)",
        "range(a,b)",
        "range(1)",
        "range(1,5",
    ] {
        let e = spec.set_axis("seq_len", bad).unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::Axis, "{bad}: {e}");
        assert!(e.message.contains("range(start, stop"), "{bad}: {e}");
    }
}

#[test]
fn random_draws_from_the_command_line_use_the_spec_machinery() {
    let mut spec = Spec::new("r").unwrap();
    spec.set_random("lr", "log_uniform(1e-4, 1e-1)").unwrap();
    spec.set_random("cell", "choice(rnn, lstm)").unwrap();
    assert!(spec.check_overrides().is_err(), "no --samples yet");
    spec.set_samples(5).unwrap();
    spec.check_overrides().unwrap();
    let r = spec.random.as_ref().unwrap();
    assert_eq!(r.n, 5);
    assert_eq!(r.keys[0], ("lr".into(), Dist::LogUniform(1e-4, 1e-1)));
    // Written back, the spec reads as the same sweep.
    let again = Spec::parse(&spec.to_toml(), "sweep.toml").unwrap();
    assert_eq!(again.expand().unwrap(), spec.expand().unwrap());
    // Replacing a key's distribution keeps one entry.
    spec.set_random("lr", "uniform(0.01, 0.02)").unwrap();
    assert_eq!(spec.random.as_ref().unwrap().keys.len(), 2);
    for (key, text, want) in [
        ("momentum", "uniform(0, 2)", "must be in [0, 1)"),
        ("lr", "log_uniform(0, 1)", "lo must be > 0"),
        ("lr", "gauss(0, 1)", "unknown distribution"),
        ("lr", "0.1", "not a distribution"),
        ("hiden", "int(1, 4)", "did you mean `hidden`?"),
    ] {
        let e = spec.set_random(key, text).unwrap_err().to_string();
        assert!(e.contains(want), "{key}={text}: {e}");
    }
    spec.set_axis("hidden", "8,16").unwrap();
    let e = spec
        .set_random("hidden", "int(1, 4)")
        .unwrap_err()
        .to_string();
    assert!(e.contains("grid"), "{e}");
}

#[test]
fn name_and_seeds_from_flags() {
    let mut spec = Spec::new("first").unwrap();
    spec.set_name("second").unwrap();
    spec.set_seeds("range(0,3)").unwrap();
    let runs = spec.expand().unwrap();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r.config.name == "second"));
    assert!(spec.set_seeds("1,1").is_err());
    assert!(spec.set_seeds("-1").is_err());
    assert!(spec.set_name("a b").is_err());
    assert!(Spec::new("../x").is_err());
}
