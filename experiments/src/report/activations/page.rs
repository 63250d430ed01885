//! The page of `gradlab activations`: one HTML file with inline CSS and JavaScript and the data
//! embedded, so it opens offline in any browser. It shows the first characters of the text,
//! each on a background coloured by the chosen unit's value there: red for positive, blue for
//! negative, white at 0, the colour's strength proportional to |value| on [-1, 1] (the letters
//! turn white where |value| > 80/127, to stay readable on the strongest colours). A selector
//! picks one of the top-ranked units (by feature and rank), another what colours the text: h,
//! tanh(c) for an LSTM (as Karpathy et al. colour the cell), or one of the cell's gates (LSTM
//! i, f, g, o; GRU r, z, n). Hovering a character shows all of them for it.
//!
//! Values are embedded quantised, q = round(clamp(v, -1, 1) · 127) as a signed byte, base64
//! per unit and series (about 1.33 bytes per character, unit and series). A character's colour
//! is a pure function of q ([`colour`]; the page's JavaScript computes the same), and every
//! character's `<span>` carries `data-i` (its position in the text) and `data-q`, so a test can
//! read the value and the colour the browser drew. The body's `data-status` is `ok` once the
//! script has run, or `error: ...` when it threw.

use base64::Engine as _;
use gradlab_kernels::Cell;
use serde_json::json;

use super::features::{Ranked, State};
use crate::model::activations::{gate_names, Stream, BLOCK};
use crate::model::Model;

const TEMPLATE: &str = include_str!("page.html");

/// Where the data goes in [`TEMPLATE`].
const DATA_SLOT: &str = "__GRADLAB_DATA__";

/// A value as the page stores it: round(clamp(v, -1, 1) · 127) (NaN as 0).
pub fn quantise(v: f32) -> i8 {
    if v.is_nan() {
        0
    } else {
        (v.clamp(-1.0, 1.0) * 127.0).round() as i8
    }
}

/// The background the page gives a character whose quantised value is `q`: with
/// s = 255 − round(255·|q|/127), `rgb(255, s, s)` for q ≥ 0 and `rgb(s, s, 255)` for q < 0.
pub fn colour(q: i8) -> [u8; 3] {
    let s = 255 - (255.0 * f64::from(q.unsigned_abs()) / 127.0).round() as u8;
    if q >= 0 {
        [255, s, s]
    } else {
        [s, s, 255]
    }
}

/// The series a unit's characters can be coloured by: h, tanh(c) for an LSTM, then the gates.
pub fn series_names(cell: Cell) -> Vec<&'static str> {
    let mut names = vec!["h"];
    if cell.has_cell_state() {
        names.push("tanh(c)");
    }
    names.extend(gate_names(cell));
    names
}

/// The page for the characters `ids` (the first of the `total` run) of the text `name`, with a
/// selector over the `top` ranked probes.
pub fn render(
    model: &Model,
    vocab: &[char],
    ids: &[usize],
    top: &[Ranked],
    total: usize,
    name: &str,
) -> String {
    let stack = model.stack;
    let mut units: Vec<(usize, usize)> = Vec::new();
    for r in top {
        if !units.contains(&(r.probe.layer, r.probe.unit)) {
            units.push((r.probe.layer, r.probe.unit));
        }
    }
    let series = series_names(stack.cell);
    // [unit][series][character]
    let mut values = vec![vec![Vec::with_capacity(ids.len()); series.len()]; units.len()];
    let mut stream = Stream::new(model);
    for block in ids.chunks(BLOCK) {
        let steps = stream.run(block);
        for t in 0..block.len() {
            for (&(l, u), unit) in units.iter().zip(&mut values) {
                let c = steps.c(l, t);
                let gates = steps.gates(l, t);
                let v = std::iter::once(steps.h(l, t)[u])
                    .chain(c.get(u).map(|c| c.tanh()))
                    .chain(gates.chunks(stack.hidden).map(|g| g[u]));
                for (s, v) in unit.iter_mut().zip(v) {
                    s.push(quantise(v) as u8);
                }
            }
        }
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let unit_data: Vec<_> = units
        .iter()
        .zip(&values)
        .map(|(&(layer, unit), v)| {
            json!({
                "layer": layer,
                "unit": unit,
                "series": v.iter().map(|s| b64.encode(s)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let entries: Vec<_> = top
        .iter()
        .map(|r| {
            let p = r.probe;
            json!({
                "feature": r.feature,
                "rank": r.rank,
                "state": p.state.name(),
                "r": r.r,
                "unit": units.iter().position(|&lu| lu == (p.layer, p.unit)),
                "series": usize::from(p.state == State::C),
            })
        })
        .collect();
    let data = json!({
        "name": name,
        "cell": format!("{:?}", stack.cell).to_lowercase(),
        "layers": stack.layers,
        "hidden": stack.hidden,
        "total": total,
        "text": ids.iter().map(|&i| vocab[i]).collect::<String>(),
        "series": series,
        "units": unit_data,
        "entries": entries,
    });
    // `</` would end the script element early; `<\/` is the same JSON string.
    let data = data.to_string().replace("</", "<\\/");
    TEMPLATE.replace(DATA_SLOT, &data)
}
