//! Build script of callflow-ndpi-sys: decides where nDPI comes from, then hands off to `vendored`, `system` and `bindings`.
//!
//! The decision, in order: the `CALLFLOW_NDPI` override (`vendored` or `system`); the
//! vendored tree when `cargo xtask ndpi` has laid it out; the system's `libndpi` through
//! pkg-config. Without the `ndpi` feature there is nothing to build: the crate is empty,
//! so a fresh clone builds the whole workspace before nDPI is fetched.

#[cfg(feature = "ndpi")]
mod bindings;
#[cfg(feature = "ndpi")]
mod system;
#[cfg(feature = "ndpi")]
mod vendored;

fn main() {
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=wrapper.h");
    #[cfg(feature = "ndpi")]
    if let Err(message) = build() {
        // A build script fails by panicking; the message is what the user reads.
        panic!("\n\ncallflow-ndpi-sys: {message}\n\n");
    }
}

/// Where nDPI comes from.
#[cfg(feature = "ndpi")]
enum Mode {
    Vendored,
    System,
}

#[cfg(feature = "ndpi")]
fn env(name: &str) -> Option<String> {
    println!("cargo:rerun-if-env-changed={name}");
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[cfg(feature = "ndpi")]
fn build() -> Result<(), String> {
    use std::path::PathBuf;
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    // CALLFLOW_NDPI_DIR: the vendored source tree to compile, or in system mode an install
    // prefix (with include/ndpi and lib) to use instead of pkg-config.
    let dir = env("CALLFLOW_NDPI_DIR").map(PathBuf::from);
    let tree = dir.clone().unwrap_or_else(|| manifest.join("../../vendor/nDPI-4.2"));
    let mode = match env("CALLFLOW_NDPI").as_deref() {
        Some("vendored") => Mode::Vendored,
        Some("system") => Mode::System,
        Some(other) => return Err(format!("CALLFLOW_NDPI={other} is neither `vendored` nor `system`")),
        None if vendored::present(&tree) => Mode::Vendored,
        None => {
            println!(
                "cargo:warning=callflow-ndpi-sys: no vendored nDPI in {} (run `cargo xtask ndpi`); trying the system's libndpi",
                tree.display()
            );
            Mode::System
        }
    };
    let includes = match mode {
        Mode::Vendored => vendored::build(&tree)?,
        Mode::System => system::probe(dir.as_deref())?,
    };
    bindings::generate(&manifest.join("wrapper.h"), &includes)
}
