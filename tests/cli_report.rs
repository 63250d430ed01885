//! `gradlab demo` and `gradlab report` as a user runs them.

mod common;

use common::{gradlab, s, text, tmpdir};

#[test]
fn the_demo_writes_its_sweep_and_report() {
    let dir = tmpdir("demo");
    let out = dir.join("demo");
    // The built-in demo, shortened (the README's command runs it whole).
    let o = gradlab(&[
        "demo",
        "--out",
        s(&out),
        "--set",
        "steps=30",
        "--set",
        "log_every=10",
        "--set",
        "eval_every=10",
        "--set",
        "eval_sequences=20",
    ]);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains("| cell | truncation | clip | runs |"),
        "{stdout}"
    );
    assert!(stdout.contains("36 of 36 runs complete"), "{stdout}");
    for f in [
        "summary.md",
        "summary.tex",
        "summary.csv",
        "loss.png",
        "gradient_vs_lag.svg",
        "success_vs_truncation.png",
        "success_vs_clip.svg",
    ] {
        let path = out.join("report").join(f);
        assert!(
            std::fs::metadata(&path).is_ok_and(|m| m.len() > 0),
            "{} missing",
            path.display()
        );
    }

    // report on it again: other grouping, one format, elsewhere.
    let elsewhere = dir.join("tables");
    std::fs::create_dir(&elsewhere).unwrap();
    let o = gradlab(&[
        "report",
        s(&out),
        "--by",
        "cell",
        "--format",
        "tex",
        "--no-plots",
        "--out",
        s(&elsewhere),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("| cell | runs |"),
        "{}",
        text(&o.stdout)
    );
    let names: Vec<_> = std::fs::read_dir(&elsewhere)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["summary.tex"]);

    for (args, want) in [
        (vec!["report", s(&dir)], "not a sweep's results folder"),
        (
            vec!["report", s(&out), "--format", "pdf"],
            "unknown format 'pdf'",
        ),
        (vec!["report", s(&out), "--by", "colour"], "--by colour"),
    ] {
        let o = gradlab(&args);
        assert!(!o.status.success(), "{args:?}");
        assert!(
            text(&o.stderr).contains(want),
            "{args:?}: {}",
            text(&o.stderr)
        );
    }
}

/// Regression (issue 13): running another spec into an existing `--out` silently replaced its
/// sweep.toml, and the report then counted 2 of 4 runs. It is refused with what to do; a spec
/// that extends the old one is accepted; `--replace-spec` keeps the old spec beside the new,
/// and the report of the replaced folder, whose old runs the new spec leaves out, needs
/// `--partial` (issue 12).
#[test]
fn a_folder_is_not_silently_taken_over_by_another_spec() {
    let dir = tmpdir("reuse");
    let out = dir.join("out");
    let tiny = [
        "--set",
        "steps=10",
        "--set",
        "seq_len=10",
        "--set",
        "hidden=4",
        "--set",
        "eval_sequences=10",
    ];
    let sweep = |extra: &[&str]| {
        let args = [
            &["sweep", "--name", "first", "--out", s(&out)][..],
            &tiny,
            extra,
        ]
        .concat();
        gradlab(&args)
    };
    let o = sweep(&["--grid", "cell=rnn,lstm", "--seeds", "0,1"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let spec = std::fs::read_to_string(out.join("sweep.toml")).unwrap();
    // Another spec, half of whose runs are not the old ones: refused, nothing changed.
    let o = sweep(&["--grid", "cell=rnn,lstm", "--seeds", "2,3"]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("holds the results of sweep `first` (4 runs, 4 complete)")
            && err.contains("--replace-spec"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("sweep.toml")).unwrap(),
        spec
    );
    let r = gradlab(&["report", s(&out), "--no-plots", "--format", "md"]);
    assert!(
        text(&r.stdout).contains("4 of 4 runs complete"),
        "{}",
        text(&r.stdout)
    );
    // More seeds: the old runs stay in the spec.
    let o = sweep(&["--grid", "cell=rnn,lstm", "--seeds", "0,1,2"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("extends the sweep"),
        "{}",
        text(&o.stdout)
    );
    // Replaced on request, the old spec kept.
    let o = sweep(&["--seeds", "5", "--replace-spec"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let kept: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("sweep.toml.replaced-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let r = gradlab(&["report", s(&out), "--no-plots", "--format", "md"]);
    assert!(!r.status.success());
    assert!(
        text(&r.stderr).contains("no longer matches its runs: 6 complete runs are not in it")
            && text(&r.stderr).contains("--partial"),
        "{}",
        text(&r.stderr)
    );
    let r = gradlab(&[
        "report",
        s(&out),
        "--no-plots",
        "--format",
        "md",
        "--partial",
    ]);
    assert!(
        text(&r.stdout).contains("1 of 1 runs complete"),
        "{}",
        text(&r.stdout)
    );
}

/// `gradlab report A B --where ...` compares folders in one table.
#[test]
fn report_compares_folders_and_filters() {
    let dir = tmpdir("compare");
    for (name, cell) in [("a", "rnn"), ("b", "lstm")] {
        let o = gradlab(&[
            "run",
            "--out",
            s(&dir.join(name)),
            "--cell",
            cell,
            "--steps",
            "10",
            "--seq-len",
            "10",
            "--hidden",
            "4",
            "--eval-sequences",
            "10",
        ]);
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    let (a, b) = (dir.join("a"), dir.join("b"));
    let o = gradlab(&["report", s(&a), s(&b), "--no-plots", "--format", "md"]);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", text(&o.stderr));
    assert!(stdout.contains("| source | cell | runs |"), "{stdout}");
    assert!(
        stdout.contains("| a | rnn | 1 |") && stdout.contains("| b | lstm | 1 |"),
        "{stdout}"
    );
    let o = gradlab(&[
        "report",
        s(&a),
        s(&b),
        "--no-plots",
        "--format",
        "md",
        "--where",
        "cell=lstm",
    ]);
    let stdout = text(&o.stdout);
    // Only b's LSTM is left: the cell no longer differs, so the table groups by folder alone.
    assert!(stdout.contains("1 of 1 runs complete"), "{stdout}");
    assert!(
        stdout.contains("| b | 1 |") && !stdout.contains("| a |"),
        "{stdout}"
    );
    let o = gradlab(&["report", s(&a), "--where", "cel=lstm", "--no-plots"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("did you mean `cell`"),
        "{}",
        text(&o.stderr)
    );
}
