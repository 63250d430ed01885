//! The `gradlab` binary as a user runs it: verbs, versions, bench output and bad input.

mod common;

use common::{gradlab, text};

#[test]
fn help_lists_only_verbs_that_work() {
    let out = gradlab(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    let verbs: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        verbs,
        [
            "run",
            "data",
            "demo",
            "sweep",
            "status",
            "compact",
            "report",
            "sample",
            "grad",
            "activations",
            "bench",
            "help"
        ],
        "{help}"
    );
}

#[test]
fn version_names_the_instruction_set_chosen_at_run_time() {
    use gradlab_kernels::isa::Isa;
    let version = |isa: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gradlab"));
        cmd.arg("--version").env_remove("GRADLAB_ISA");
        if let Some(isa) = isa {
            cmd.env("GRADLAB_ISA", isa);
        }
        cmd.output().expect("gradlab runs")
    };
    let out = version(None);
    assert!(out.status.success());
    let want = format!("isa: {}", Isa::best().describe());
    assert!(text(&out.stdout).contains(&want), "{}", text(&out.stdout));
    // GRADLAB_ISA picks any instruction set this CPU has.
    for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
        let out = version(Some(isa.name()));
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains(&format!("isa: {}", isa.describe())));
    }
    // An unknown one is refused with the names it takes.
    let out = version(Some("sse9"));
    assert_eq!(out.status.code(), Some(2));
    let e = text(&out.stderr);
    assert!(
        e.contains("GRADLAB_ISA") && e.contains("avx512, avx2, portable"),
        "{e}"
    );
}

#[test]
fn bench_json_prints_one_object_per_shape_with_the_documented_keys() {
    let out = gradlab(&[
        "bench",
        "--shape",
        "rnn-small",
        "--shape",
        "lstm-small",
        "--shape",
        "gru-small",
        "--repeats",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    for (row, name) in rows.iter().zip(["rnn-small", "lstm-small", "gru-small"]) {
        assert_eq!(row["shape"], name);
        for key in ["ms", "gflops", "sgemm_gflops", "peak_gflops"] {
            let v = row[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{key} missing in {row}"));
            assert!(v.is_finite() && v > 0.0, "{key} = {v}");
        }
        // GFLOP/s is the DESIGN.md count over the measured time (G = 4, 3, 1 gates).
        let gates = match name {
            "lstm-small" => 4.0,
            "gru-small" => 3.0,
            _ => 1.0,
        };
        let flops = 3.0 * 2.0 * 64.0 * 32.0 * 128.0 * (64.0 + 128.0) * gates;
        let gflops = flops / (row["ms"].as_f64().unwrap() * 1e-3) / 1e9;
        assert!((gflops / row["gflops"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    }
}

#[test]
fn bench_table_has_a_row_per_shape() {
    let out = gradlab(&["bench", "--shape", "rnn-small", "--repeats", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains(
            "| shape | T | B | I | H | L | ms | GFLOP/s | sgemm GFLOP/s | % sgemm | peak GFLOP/s | % peak |"
        ),
        "{table}"
    );
    assert_eq!(
        table
            .lines()
            .filter(|l| l.starts_with("| rnn-small |"))
            .count(),
        1,
        "{table}"
    );
}

#[test]
fn bench_train_times_a_whole_run_phase_by_phase() {
    let out = gradlab(&[
        "bench",
        "--train",
        "--case",
        "rnn-temporal-order",
        "--case",
        "lstm-charlm",
        "--repeats",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Without --text the char-LM case is skipped, with the reason.
    assert!(
        text(&out.stderr)
            .contains("skipping lstm-charlm: lstm-charlm needs a text file (--text FILE)"),
        "{}",
        text(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["case"], "rnn-temporal-order");
    assert_eq!(row["threads"], 1);
    assert_eq!(row["updates"], 2000);
    let seconds = row["seconds"].as_f64().unwrap();
    let phases = row["phases_seconds"].as_object().unwrap();
    let total: f64 = phases.values().map(|v| v.as_f64().unwrap()).sum();
    // The phases partition the run's loop: together no more than the run, most of it.
    assert!(
        total <= seconds && total > 0.5 * seconds,
        "{total} of {seconds}"
    );
    for phase in [
        "forward+backward",
        "norms",
        "diagnostics",
        "spectrum",
        "clip+optimizer",
        "evaluation",
    ] {
        let v = phases[phase]
            .as_f64()
            .unwrap_or_else(|| panic!("{phase} missing in {row}"));
        assert!(v > 0.0, "{phase} = {v}");
    }
    for key in [
        "updates_per_sec",
        "gradient_gflops",
        "peak_gflops",
        "final_loss",
    ] {
        let v = row[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing in {row}"));
        assert!(v.is_finite() && v > 0.0, "{key} = {v}");
    }
    // The forward and backward passes cannot beat the machine's measured FMA peak.
    assert!(
        row["gradient_gflops"].as_f64() < row["peak_gflops"].as_f64(),
        "{row}"
    );
}

#[test]
fn bad_bench_arguments_fail_with_a_message_that_says_what_to_fix() {
    for (args, want) in [
        (
            &["bench", "--shape", "nope"][..],
            "unknown shape 'nope'; expected one of: all, rnn-small",
        ),
        (
            &["bench", "--threads", "0"][..],
            "--threads must be at least 1",
        ),
        (
            &["bench", "--repeats", "0"][..],
            "--repeats must be at least 1",
        ),
        (&["bench", "--threads", "two"][..], "invalid value 'two'"),
        (
            &["bench", "--train", "--case", "nope"][..],
            "unknown case 'nope'; expected one of: rnn-temporal-order, lstm-adding, lstm-charlm",
        ),
        (
            &["bench", "--train", "--shape", "rnn-small"][..],
            "the argument '--train' cannot be used with '--shape <NAME>'",
        ),
        (
            &["bench", "--case", "lstm-adding"][..],
            "the following required arguments were not provided",
        ),
        (
            &["bench", "--train", "--text", "/nonexistent/corpus.txt"][..],
            "--text /nonexistent/corpus.txt: no such file",
        ),
        (&["frobnicate"][..], "unrecognized subcommand 'frobnicate'"),
    ] {
        let out = gradlab(args);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
        assert!(
            text(&out.stderr).contains(want),
            "{args:?}: stderr was {}",
            text(&out.stderr)
        );
    }
}
