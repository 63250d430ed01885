//! Running the `gradlab` binary from the integration tests.

use std::process::{Command, Output};

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
