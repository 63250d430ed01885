//! `gradlab activations` end to end: the command on a checkpoint and a text, its table and
//! ranking, and its page rendered in a real headless browser, whose colours must be those the
//! table's values imply.
//!
//! The browser part needs Debian's `chromium`; without it the test prints why and skips that
//! part. CI installs it and sets GRADLAB_REQUIRE_CHROMIUM=1, which turns the skip into a failure.

mod common;

use std::path::Path;
use std::process::Command;

use common::{fails, gradlab, s, text, tmpdir};
use gradlab_experiments::config::Init;
use gradlab_experiments::model::checkpoint;
use gradlab_experiments::model::init::initialize;
use gradlab_experiments::model::Model;
use gradlab_experiments::store::read_parquet;
use gradlab_kernels::rng::SplitMix64;
use gradlab_kernels::{Cell, StackShape};

const LAYERS: usize = 2;
const HIDDEN: usize = 12;
const CHARS: usize = 3_000;
const PAGE_CHARS: usize = 400;
const TOP: usize = 2;

/// A text with quotes, brackets, digits, capitals and lines, and its sorted vocabulary.
fn quoted_text(dir: &Path) -> (std::path::PathBuf, Vec<char>) {
    let pieces = ["say ", "\"", "(x) ", "[7]", "Yes", "\n", "no, ", "{a b}"];
    let mut rng = SplitMix64(4);
    let mut t = String::new();
    while t.len() < 4_000 {
        t += pieces[rng.below(pieces.len())];
    }
    let path = dir.join("text.txt");
    std::fs::write(&path, &t).unwrap();
    let mut vocab: Vec<char> = t.chars().collect();
    vocab.sort_unstable();
    vocab.dedup();
    (path, vocab)
}

/// A random character model of `cell` saved as a checkpoint with its vocabulary.
fn checkpoint_of(cell: Cell, vocab: &[char], path: &Path) {
    let stack = StackShape {
        cell,
        input: vocab.len(),
        hidden: HIDDEN,
        layers: LAYERS,
    };
    let mut model = Model::new(stack, vocab.len());
    initialize(&mut model, Init::Uniform(0.5), 1.0, &mut SplitMix64(9));
    checkpoint::save(path, &model, None, Some(vocab)).unwrap();
}

/// One column of the table as f32 (None: null).
fn column(df: &polars::prelude::DataFrame, name: &str) -> Vec<Option<f32>> {
    let ca = df.column(name).unwrap().f32().unwrap();
    (0..df.height()).map(|i| ca.get(i)).collect()
}

/// What the page must show for value `v`: q = round(clamp(v, -1, 1) * 127), and with
/// s = 255 - round(255 |q| / 127), rgb(255, s, s) for q >= 0, rgb(s, s, 255) below.
fn expected(v: f32) -> (i32, String) {
    let q = (f64::from(v.clamp(-1.0, 1.0)) * 127.0).round() as i32;
    let s = 255 - (255.0 * f64::from(q.abs()) / 127.0).round() as i32;
    let rgb = if q >= 0 {
        format!("rgb(255, {s}, {s})")
    } else {
        format!("rgb({s}, {s}, 255)")
    };
    (q, rgb)
}

/// The `ranking.csv` rows with rank <= TOP, in file order: the page's entries.
fn entries(csv: &str) -> Vec<Vec<String>> {
    csv.lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>())
        .filter(|r| r[1].parse::<usize>().unwrap() <= TOP)
        .collect()
}

/// Why the browser cannot run, if it cannot.
fn chromium_missing() -> Option<String> {
    match Command::new("chromium").arg("--version").output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!("chromium --version failed: {}", text(&o.stderr))),
        Err(e) => Some(format!("chromium is not installed ({e})")),
    }
}

/// The page's DOM after its scripts ran, as headless Chromium serialises it.
fn dump_dom(page: &Path, hash: &str, profile: &Path) -> String {
    let url = format!("file://{}#{hash}", page.display());
    let o = Command::new("chromium")
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
            &url,
        ])
        .output()
        .expect("chromium runs");
    assert!(o.status.success(), "chromium failed: {}", text(&o.stderr));
    text(&o.stdout)
}

/// A character span's data-i, data-q and background (the last two absent before the page has
/// coloured it).
type Span = (usize, Option<i32>, Option<String>);

/// The body's data-status, and each character span.
fn spans(dom: &str) -> (String, Vec<Span>) {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
        Some(tag[start..][..tag[start..].find('"')?].to_string())
    };
    let body = &dom[dom.find("<body").expect("a body")..];
    let status = attr(&body[..body.find('>').unwrap()], "data-status").expect("data-status");
    let mut found = Vec::new();
    for piece in dom.split("<span ").skip(1) {
        let tag = &piece[..piece.find('>').unwrap()];
        let Some(i) = attr(tag, "data-i") else {
            continue;
        };
        let q = attr(tag, "data-q").map(|q| q.parse().unwrap());
        let rgb = attr(tag, "style").map(|style| {
            let start = style.find("rgb(").expect("a colour");
            style[start..][..=style[start..].find(')').unwrap()].to_string()
        });
        found.push((i.parse().unwrap(), q, rgb));
    }
    (status, found)
}

/// The command writes the table, the ranking and the page for an LSTM and a GRU; in the
/// browser the page runs without error, and the colour of every character is what the
/// table's value of the chosen unit and series implies (h, and the LSTM's tanh(c) and f, the
/// GRU's z), for the first and the last entry of the selector.
#[test]
fn the_page_colours_each_character_as_the_table_says() {
    let dir = tmpdir("activations");
    let (text_path, vocab) = quoted_text(&dir);
    let browser = chromium_missing();
    if let Some(why) = &browser {
        assert!(
            std::env::var_os("GRADLAB_REQUIRE_CHROMIUM").is_none(),
            "GRADLAB_REQUIRE_CHROMIUM is set but {why}"
        );
        println!("skipping the browser checks: {why}; install Debian's chromium");
    }
    for (cell, series) in [
        (Cell::Lstm, &["h", "tanh(c)", "f"][..]),
        (Cell::Gru, &["h", "z"][..]),
    ] {
        let ck = dir.join(format!("{cell:?}.safetensors"));
        checkpoint_of(cell, &vocab, &ck);
        let out = dir.join(format!("{cell:?}"));
        let chars = CHARS.to_string();
        let page_chars = PAGE_CHARS.to_string();
        let top = TOP.to_string();
        let o = gradlab(&[
            "activations",
            "--checkpoint",
            s(&ck),
            "--text",
            s(&text_path),
            "--chars",
            &chars,
            "--page-chars",
            &page_chars,
            "--top",
            &top,
            "--out",
            s(&out),
        ]);
        let stdout = text(&o.stdout);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(
            stdout.contains("| feature | rank | layer | unit | state | r |")
                && stdout.contains("| inside_quotes | 1 | "),
            "{stdout}"
        );
        let df = read_parquet(&out.join("activations.parquet")).unwrap();
        assert_eq!(df.height(), CHARS * LAYERS * HIDDEN);
        let csv = std::fs::read_to_string(out.join("ranking.csv")).unwrap();
        let entries = entries(&csv);
        assert_eq!(entries.len(), 8 * TOP, "every feature varies in this text");
        if browser.is_some() {
            continue;
        }
        let page = out.join("activations.html");
        let profile = dir.join("chromium-profile");
        for k in [0, entries.len() - 1] {
            let (layer, unit): (usize, usize) = (
                entries[k][2].parse().unwrap(),
                entries[k][3].parse().unwrap(),
            );
            for &name in series {
                let (status, spans) = spans(&dump_dom(
                    &page,
                    &format!("entry={k}&series={name}"),
                    &profile,
                ));
                assert_eq!(status, "ok", "entry {k}, series {name}");
                assert_eq!(spans.len(), PAGE_CHARS, "one span per character shown");
                let values = match name {
                    "h" => column(&df, "h"),
                    "tanh(c)" => column(&df, "c")
                        .into_iter()
                        .map(|c| c.map(f32::tanh))
                        .collect(),
                    gate => column(&df, gate),
                };
                for (i, q, rgb) in spans {
                    let row = (i * LAYERS + layer) * HIDDEN + unit;
                    let v = values[row].expect("a value");
                    let (want_q, want_rgb) = expected(v);
                    assert_eq!(
                        (q, rgb),
                        (Some(want_q), Some(want_rgb)),
                        "entry {k} series {name} position {i}: value {v}"
                    );
                }
            }
        }
        // An entry the page does not have: the error is caught and shown, not silent.
        let (status, _) = spans(&dump_dom(&page, "entry=999", &profile));
        assert!(status.starts_with("error: "), "{status}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Bad flags and files are refused with what to fix.
#[test]
fn bad_flags_and_files_are_refused_with_what_to_fix() {
    let dir = tmpdir("activations-bad");
    let (text_path, vocab) = quoted_text(&dir);
    let ck = dir.join("ck.safetensors");
    checkpoint_of(Cell::Lstm, &vocab, &ck);
    let out = dir.join("out");
    let base = [
        "activations",
        "--checkpoint",
        s(&ck),
        "--text",
        s(&text_path),
        "--out",
        s(&out),
    ];
    for (flag, value, want) in [
        ("--chars", "0", "--chars 0: give at least 1"),
        ("--top", "0", "--top 0: give at least 1"),
        (
            "--layer",
            "2",
            "--layer 2: the model has 2 layer(s), numbered 0 to 1",
        ),
        ("--chars", "-3", "invalid value '-3' for '--chars <N>'"),
    ] {
        let e = fails(&[&base[..], &[flag, value]].concat());
        assert!(e.contains(want), "{flag} {value}: {e}");
    }
    let binary = dir.join("binary.txt");
    std::fs::write(&binary, [b'a', 0xff, b'b']).unwrap();
    let e = fails(&[
        "activations",
        "--checkpoint",
        s(&ck),
        "--text",
        s(&binary),
        "--out",
        s(&out),
    ]);
    assert!(
        e.contains("is not UTF-8 text (invalid byte at offset 1)"),
        "{e}"
    );
    let other = dir.join("other.txt");
    std::fs::write(&other, "say\n~").unwrap();
    let e = fails(&[
        "activations",
        "--checkpoint",
        s(&ck),
        "--text",
        s(&other),
        "--out",
        s(&out),
    ]);
    assert!(e.contains("the character '~' at line 2, column 1"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}
