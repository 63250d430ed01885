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
