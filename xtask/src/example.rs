//! `cargo xtask example`: the README's first command, the bundled example capture analysed by `callflow-cli` (release build), after installing libpcap's link library when it is missing.
//!
//! Every binary links libpcap, because callflow-live captures through it; on a machine with
//! only a Rust toolchain `cargo run -p callflow-cli` would stop at the link step, naming
//! `-lpcap`. This task installs `libpcap0.8-dev` first when it can (root and apt-get), as
//! `cargo xtask test` installs what the tests need, and says what to install when it cannot.

use anyhow::{Context, Result};
use std::process::{Command, ExitCode};

/// The capture the README's example analyses.
const EXAMPLE: &str = "examples/captures/basic-call.pcap";

pub fn run(extra: &[String]) -> Result<ExitCode> {
    if !crate::test::has_libpcap() {
        if crate::test::is_root() && Command::new("apt-get").arg("--version").output().is_ok() {
            crate::test::install(&["libpcap0.8-dev"]);
        } else {
            println!(
                "xtask example: libpcap's link library (libpcap.so) is missing and cannot be installed here \
                 (needs root and apt-get): install libpcap0.8-dev (or your system's libpcap development package)"
            );
        }
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut args = vec!["run", "--release", "--locked", "-p", "callflow-cli", "--", "analyze", EXAMPLE];
    if extra.is_empty() {
        args.push("--pretty");
    }
    let status = Command::new(cargo).args(&args).args(extra).status().context("running cargo run -p callflow-cli")?;
    Ok(ExitCode::from(status.code().map_or(1, |c| c.clamp(0, 255) as u8)))
}
