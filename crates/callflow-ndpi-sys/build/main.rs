//! Build script of callflow-ndpi-sys: decides where nDPI comes from, then hands off to `vendored`, `system` and `bindings`.
//!
//! The decision, in order: the `CALLFLOW_NDPI` override (`vendored` or `system`, each a
//! hard error when it cannot be met); else the vendored tree when `cargo xtask ndpi` has
//! laid it out; else nothing. "Nothing" is a cargo warning, not an error: the binaries
//! turn the `ndpi` feature on by default, and a fresh clone (no vendored tree, maybe no
//! libclang) must still build. Only when nDPI is linked does this script emit the
//! `ndpi_linked` cfg (and the `linked` metadata that `callflow-ndpi`'s build script reads
//! as `DEP_NDPI_LINKED`); without it both crates compile without the C library, and
//! `callflow_ndpi::NdpiClassifier::new` says why at run time. Without the `ndpi` feature
//! there is nothing to decide.

#[cfg(feature = "ndpi")]
mod bindings;
#[cfg(feature = "ndpi")]
mod system;
#[cfg(feature = "ndpi")]
mod vendored;

fn main() {
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=wrapper.h");
    // Declared whatever happens, so that `#[cfg(ndpi_linked)]` never warns as unknown.
    println!("cargo::rustc-check-cfg=cfg(ndpi_linked)");
    println!("cargo::rustc-check-cfg=cfg(ndpi_forget)");
    #[cfg(feature = "ndpi")]
    match build() {
        Ok(Some(mode)) => {
            println!("cargo:rustc-cfg=ndpi_linked");
            println!("cargo::metadata=linked=1");
            // `callflow_ndpi_forget` (shim/forget.c) is compiled with the vendored tree only.
            if matches!(mode, Mode::Vendored) {
                println!("cargo:rustc-cfg=ndpi_forget");
                println!("cargo::metadata=forget=1");
            }
        }
        Ok(None) => {}
        // A build script fails by panicking; the message is what the user reads.
        Err(message) => panic!("\n\ncallflow-ndpi-sys: {message}\n\n"),
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

/// Builds or finds nDPI and generates the bindings; says where nDPI came from, or `None`
/// when there is no nDPI to link and none was asked for explicitly.
#[cfg(feature = "ndpi")]
fn build() -> Result<Option<Mode>, String> {
    use std::path::PathBuf;
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    // CALLFLOW_NDPI_DIR: the vendored source tree to compile, or in system mode an install
    // prefix (with include/ndpi and lib) to use instead of pkg-config.
    let dir = env("CALLFLOW_NDPI_DIR").map(PathBuf::from);
    // The workspace root is two levels up (crates/callflow-ndpi-sys).
    let vendor = manifest.ancestors().nth(2).map_or_else(|| manifest.join("../../vendor"), |root| root.join("vendor"));
    let tree = dir.clone().unwrap_or_else(|| vendor.join("nDPI-4.2"));
    let mode = match env("CALLFLOW_NDPI").as_deref() {
        Some("vendored") => Mode::Vendored,
        Some("system") => Mode::System,
        Some(other) => return Err(format!("CALLFLOW_NDPI={other} is neither `vendored` nor `system`")),
        None if vendored::present(&tree) => Mode::Vendored,
        None => {
            // Watch where the tree will appear, so that the first build after `cargo xtask
            // ndpi` links nDPI. The default tree's parent, vendor/, always exists (it holds
            // the lock file); a missing path would make cargo rerun this script on every
            // build, which is only acceptable for an explicit CALLFLOW_NDPI_DIR.
            if dir.is_some() {
                println!("cargo:rerun-if-changed={}", tree.display());
            } else {
                println!("cargo:rerun-if-changed={}", vendor.display());
            }
            println!(
                "cargo:warning=callflow-ndpi-sys: nDPI is not built in: no vendored nDPI tree in {} (run \
                 `cargo xtask ndpi`, or set CALLFLOW_NDPI=system for the system's libndpi); the binaries will \
                 classify with the heuristic classifier",
                tree.display()
            );
            return Ok(None);
        }
    };
    let includes = match mode {
        Mode::Vendored => vendored::build(&tree)?,
        Mode::System => system::probe(dir.as_deref())?,
    };
    bindings::generate(&manifest.join("wrapper.h"), &includes)?;
    Ok(Some(mode))
}
