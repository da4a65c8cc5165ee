//! `cargo xtask test`: installs what the tests need when it can (tshark, ndpiReader, libclang, libpcap, ip, kamailio, tcpreplay, chromium, curl, postgresql, openssl), prepares nDPI, then runs every test of the workspace.
//!
//! The differential tests use tshark as their oracle and skip that part (failing in CI) when
//! it is missing, so installing it here is what lets one command run everything on a fresh
//! machine. The same goes for the nDPI tests: their oracle is ndpiReader and they need
//! the vendored nDPI tree, which this task fetches as `cargo xtask ndpi` does before
//! turning on the `ndpi` features with `CALLFLOW_NDPI=vendored` (so that a tree that is
//! still missing fails the build rather than quietly building without nDPI).

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

pub fn run(extra: &[String]) -> Result<ExitCode> {
    let ci = std::env::var_os("CI").is_some();
    // What the tests need from the system: tshark (the oracle of the differential tests),
    // ndpiReader (the oracle of the nDPI tests), libclang and pkg-config (bindgen and the
    // system mode of callflow-ndpi-sys), libgcrypt (QUIC in the vendored nDPI), kamailio
    // (a HEP agent).
    let mut missing = Vec::new();
    if find_on_path("tshark").is_none() {
        missing.push("tshark");
    }
    if find_on_path("ndpiReader").is_none() {
        missing.push("libndpi-bin");
    }
    if !has_libclang() {
        missing.push("libclang-dev");
    }
    if find_on_path("pkg-config").is_none() {
        missing.push("pkg-config");
    }
    // The vendored nDPI decrypts QUIC only with libgcrypt, as ndpiReader's does; without
    // it the whole-suite comparison finds QUIC flows labelled differently.
    if !Command::new("pkg-config").args(["--exists", "libgcrypt"]).status().is_ok_and(|s| s.success()) {
        missing.push("libgcrypt20-dev");
    }
    if !has_libpcap() {
        missing.push("libpcap0.8-dev");
    }
    // The capture tests make network namespaces and veth pairs with `ip`.
    if find_on_path("ip").is_none() {
        missing.push("iproute2");
    }
    // Kamailio is the real HEP agent of callflow-live's HEP tests (its siptrace module); it
    // lives in /usr/sbin, which a user's PATH may lack.
    if find_on_path("kamailio").is_none() && !is_executable(Path::new("/usr/sbin/kamailio")) {
        missing.push("kamailio");
    }
    // tcpreplay replays captures into a veth pair for the CLI's live-vs-file tests.
    if find_on_path("tcpreplay").is_none() && !is_executable(Path::new("/usr/bin/tcpreplay")) {
        missing.push("tcpreplay");
    }
    // The web UI's browser tests drive Debian's headless Chromium through chromedriver.
    if find_on_path("chromium").is_none() {
        missing.push("chromium");
    }
    if find_on_path("chromedriver").is_none() {
        missing.push("chromium-driver");
    }
    // curl runs the earlier callflowd's documented scenario as written (callflowd's tests).
    if find_on_path("curl").is_none() {
        missing.push("curl");
    }
    // The PostgreSQL store's tests start throwaway clusters from Debian's binaries, and make
    // the certificates of its TLS test with openssl (whose s_server/s_client also make the
    // TLS 1.2 CBC sessions of the SIP over TLS tests).
    if !has_postgresql() {
        missing.push("postgresql");
    }
    if find_on_path("openssl").is_none() {
        missing.push("openssl");
    }
    // libsrtp, through Debian's Python binding, protects the SRTP and SRTCP of the
    // encrypted-media tests (callflow-correlate's tests/srtp.rs).
    if !Command::new("/usr/bin/python3").args(["-c", "import pylibsrtp"]).status().is_ok_and(|s| s.success()) {
        missing.push("python3-pylibsrtp");
    }
    if missing.is_empty() {
        println!(
            "xtask test: tshark, ndpiReader, libclang, pkg-config, libgcrypt, libpcap, ip, kamailio, tcpreplay, \
             chromium, chromedriver, curl, PostgreSQL, openssl and libsrtp found"
        );
    } else if is_root() && find_on_path("apt-get").is_some() {
        install(&missing);
    } else {
        println!(
            "xtask test: {} missing and cannot be installed here (needs root and apt-get): \
             the parts of the tests that need them will be skipped",
            missing.join(", ")
        );
    }

    // The nDPI tests need the vendored tree; fetching it is idempotent and cheap once done.
    let ndpi_ready = match crate::ndpi::run(&crate::ndpi::Args::default()) {
        Ok(()) => true,
        Err(err) if ci => return Err(err.context("cargo xtask ndpi (the nDPI tests must run in CI)")),
        Err(err) => {
            println!("xtask test: cannot prepare nDPI ({err:#}): the nDPI tests will be skipped");
            false
        }
    };

    // Cargo sets CARGO for the programs it runs, so the same toolchain runs the tests.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    let mut args = vec!["test", "--workspace", "--all-targets"];
    if ndpi_ready {
        args.extend(["--features", "callflow-ndpi/ndpi,callflow-cli/ndpi,callflowd/ndpi"]);
        // The feature alone builds without nDPI when the tree is missing (a fresh clone must
        // build); asking for the vendored tree explicitly makes a missing one a build error,
        // so the nDPI tests cannot be skipped without anyone noticing.
        command.env("CALLFLOW_NDPI", "vendored");
    }
    command.args(&args).args(extra);
    println!("xtask test: running cargo {} {}", args.join(" "), extra.join(" "));
    let status = command.status().context("running cargo test")?;
    // A test binary killed by a signal has no code; that is a failure all the same.
    Ok(ExitCode::from(status.code().map_or(1, |c| c.clamp(0, 255) as u8)))
}

/// Whether libpcap's link library is there: callflow-live links it (the `pcap` crate wants
/// `libpcap.so`, which only the development package installs), so every binary needs it.
pub(crate) fn has_libpcap() -> bool {
    ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"]
        .iter()
        .any(|dir| Path::new(dir).join("libpcap.so").exists())
        || Command::new("pkg-config").args(["--exists", "libpcap"]).status().is_ok_and(|s| s.success())
}

/// Whether bindgen will find a libclang: Debian installs it under /usr/lib/llvm-*/lib.
/// Whether Debian's PostgreSQL server binaries are there (`/usr/lib/postgresql/*/bin/initdb`).
fn has_postgresql() -> bool {
    std::fs::read_dir("/usr/lib/postgresql")
        .map(|versions| versions.flatten().any(|v| v.path().join("bin/initdb").exists()))
        .unwrap_or(false)
}

fn has_libclang() -> bool {
    if std::env::var_os("LIBCLANG_PATH").is_some() {
        return true;
    }
    let Ok(dirs) = std::fs::read_dir("/usr/lib") else { return false };
    dirs.flatten().filter(|d| d.file_name().to_string_lossy().starts_with("llvm-")).any(|d| {
        std::fs::read_dir(d.path().join("lib"))
            .is_ok_and(|files| files.flatten().any(|f| f.file_name().to_string_lossy().starts_with("libclang")))
    })
}

/// Installs `packages`; a failure is reported but does not stop the tests, whose parts
/// that need them then say they are skipped (and fail in CI, where that matters).
pub(crate) fn install(packages: &[&str]) {
    println!("xtask test: {} missing; running apt-get update", packages.join(", "));
    if !succeeds(Command::new("apt-get").arg("update")) {
        println!("xtask test: apt-get update failed; trying the install anyway");
    }
    println!("xtask test: running DEBIAN_FRONTEND=noninteractive apt-get install -y {}", packages.join(" "));
    let mut install = Command::new("apt-get");
    install.args(["install", "-y"]).args(packages).env("DEBIAN_FRONTEND", "noninteractive");
    if !succeeds(&mut install) {
        println!("xtask test: installing {} failed: the tests that need them will be skipped", packages.join(", "));
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
pub(crate) fn is_root() -> bool {
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
