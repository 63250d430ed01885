//! Run identity: `run_id` is a stable 64-bit FNV-1a hash, as 16 hex digits, of the canonical
//! TOML of a run's configuration with the keys at their default value left out
//! ([`RunConfig::identity_toml`]). The same on every machine and build, and unchanged when a
//! key with a default is added, so a results folder is resumed by every later build.

use crate::config::RunConfig;

/// The identity of the run `cfg` (seed included).
pub fn run_id(cfg: &RunConfig) -> String {
    fnv1a_hex(&cfg.identity_toml())
}

/// FNV-1a (64 bit) of `text`, as 16 hex digits.
pub fn fnv1a_hex(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}
