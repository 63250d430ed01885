//! The report drops into a paper: a minimal two-column LaTeX document that `\input`s the
//! summary table of a demo-shaped sweep and includes one of its PDF figures compiles with
//! pdflatex, without an overfull box.
//!
//! Skips with a printed reason where pdflatex is missing; CI installs it (Debian's
//! texlive-latex-base and texlive-latex-recommended) and sets GRADLAB_REQUIRE_PDFLATEX=1, which
//! turns the skip into a failure.

mod common;

use std::process::Command;

use common::{gradlab, s, text, tmpdir};

/// The demo's grid (cell x truncation x clip), with a few updates per run.
const SPEC: &str = r#"name = "paper"
seeds = [0, 1, 2]

[base]
seq_len = 20
hidden = 8
steps = 40
log_every = 10
eval_every = 20
eval_sequences = 50

[grid]
cell = ["rnn", "lstm"]
truncation = [5, 25, "full"]
clip = ["none", "norm:1"]
"#;

const DOCUMENT: &str = r"\pdfminorversion=7
\documentclass[twocolumn]{article}
\usepackage{booktabs}
\usepackage{graphicx}
\begin{document}
Some text of a paper about vanishing gradients.
\input{report/summary.tex}
\begin{figure}[t]
\includegraphics[width=\columnwidth]{report/gradient_vs_lag.pdf}
\caption{Gradient norm against lag.}
\end{figure}
More text.
\end{document}
";

fn pdflatex_missing() -> Option<String> {
    match Command::new("pdflatex").arg("--version").output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!("pdflatex --version failed: {}", text(&o.stderr))),
        Err(e) => Some(format!("pdflatex cannot run ({e})")),
    }
}

#[test]
fn the_summary_table_and_a_figure_compile_in_a_two_column_paper() {
    if let Some(why) = pdflatex_missing() {
        assert!(
            std::env::var_os("GRADLAB_REQUIRE_PDFLATEX").is_none(),
            "GRADLAB_REQUIRE_PDFLATEX is set but {why}"
        );
        println!("skipped: {why}; install texlive-latex-base and texlive-latex-recommended");
        return;
    }
    let dir = tmpdir("latex");
    let spec = dir.join("spec.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let out = dir.join("paper");
    let o = gradlab(&["sweep", s(&spec), "--out", s(&out)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = gradlab(&["report", s(&out), "--plot-format", "pdf"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    std::fs::write(out.join("paper.tex"), DOCUMENT).unwrap();
    let o = Command::new("pdflatex")
        .args(["-interaction=nonstopmode", "-halt-on-error", "paper.tex"])
        .current_dir(&out)
        .output()
        .unwrap();
    let log = std::fs::read_to_string(out.join("paper.log")).unwrap_or_default();
    assert!(o.status.success(), "pdflatex failed:\n{}", text(&o.stdout));
    assert!(
        !log.contains("Overfull \\hbox"),
        "the table is wider than the page:\n{log}"
    );
    assert!(out.join("paper.pdf").metadata().unwrap().len() > 1000);
}
