//! `cargo xtask test`: makes sure tshark is there when it can be installed, then runs every test of the workspace.
//!
//! The differential tests use tshark as their oracle and skip that part (failing in CI) when
//! it is missing, so installing it here is what lets one command run everything on a fresh
//! machine.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

pub fn run(extra: &[String]) -> Result<ExitCode> {
    if find_on_path("tshark").is_some() {
        println!("xtask test: tshark found");
    } else if is_root() && find_on_path("apt-get").is_some() {
        install_tshark();
    } else {
        println!(
            "xtask test: tshark is not installed and cannot be installed here (needs root and apt-get): \
             the tshark parts of the tests will be skipped"
        );
    }

    // Cargo sets CARGO for the programs it runs, so the same toolchain runs the tests.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(["test", "--workspace", "--all-targets"]).args(extra);
    println!("xtask test: running cargo test --workspace --all-targets {}", extra.join(" "));
    let status = command.status().context("running cargo test")?;
    // A test binary killed by a signal has no code; that is a failure all the same.
    Ok(ExitCode::from(status.code().map_or(1, |c| c.clamp(0, 255) as u8)))
}

/// Installs tshark; a failure is reported but does not stop the tests, whose tshark parts
/// then say they are skipped (and fail in CI, where that matters).
fn install_tshark() {
    println!("xtask test: tshark not found; running apt-get update");
    if !succeeds(Command::new("apt-get").arg("update")) {
        println!("xtask test: apt-get update failed; trying the install anyway");
    }
    println!("xtask test: running DEBIAN_FRONTEND=noninteractive apt-get install -y tshark");
    let mut install = Command::new("apt-get");
    install.args(["install", "-y", "tshark"]).env("DEBIAN_FRONTEND", "noninteractive");
    if !succeeds(&mut install) || find_on_path("tshark").is_none() {
        println!("xtask test: installing tshark failed: the tshark parts of the tests will be skipped");
    }
}

fn succeeds(command: &mut Command) -> bool {
    command.status().is_ok_and(|s| s.success())
}

/// The first executable called `name` in PATH, like `which`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Asks `id -u` rather than calling geteuid, which would need the libc crate for one call.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_program_that_is_always_there() {
        assert!(find_on_path("sh").is_some());
        assert!(find_on_path("no-such-program-for-xtask").is_none());
    }
}
