//! System mode: links the installed `libndpi` (Debian's `libndpi-dev`) dynamically, found through pkg-config or a prefix.

use std::path::{Path, PathBuf};

/// Finds nDPI 4.2.x and tells cargo to link it; returns the include directories.
pub fn probe(prefix: Option<&Path>) -> Result<Vec<PathBuf>, String> {
    if let Some(prefix) = prefix {
        let include = prefix.join("include/ndpi");
        if !include.join("ndpi_api.h").is_file() {
            return Err(format!("CALLFLOW_NDPI_DIR={}: no include/ndpi/ndpi_api.h there", prefix.display()));
        }
        println!("cargo:rustc-link-search=native={}", prefix.join("lib").display());
        println!("cargo:rustc-link-lib=ndpi");
        return Ok(vec![include]);
    }
    // The bindings are generated from the headers found, but callflow-ndpi is tested
    // against 4.2's behaviour: other versions are refused rather than half-working.
    let lib = pkg_config::Config::new().range_version("4.2".."4.3").probe("libndpi").map_err(|e| {
        format!(
            "nDPI 4.2 not found through pkg-config ({e}). Either run `cargo xtask ndpi` for the vendored \
             build, or install the system library: apt-get install libndpi-dev pkg-config"
        )
    })?;
    Ok(lib.include_paths)
}
