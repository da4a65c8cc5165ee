//! Vendored mode: compiles the nDPI tree that `cargo xtask ndpi` unpacked into a static library with `cc`.

use std::path::{Path, PathBuf};

/// Whether `tree` is a complete, generated nDPI tree (the headers configure would write
/// are what `cargo xtask ndpi` adds last).
pub fn present(tree: &Path) -> bool {
    tree.join("src/include/ndpi_define.h").is_file() && tree.join("src/include/ndpi_config.h").is_file()
}

fn c_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> =
        entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "c")).collect();
    // A stable order keeps the archive, and so the build, reproducible.
    files.sort();
    Ok(files)
}

/// Compiles the library as upstream's `src/lib/Makefile` does (every `.c` in `src/lib`,
/// `protocols/` and `third_party/src/`; `hll/` and `roaring.cc` are `#include`d by other
/// files), with `shim/forget.c` beside it, and returns the include directories for bindgen.
pub fn build(tree: &Path) -> Result<Vec<PathBuf>, String> {
    if !present(tree) {
        return Err(format!(
            "the vendored nDPI tree {} is missing or incomplete: run `cargo xtask ndpi` first \
             (or set CALLFLOW_NDPI=system to link Debian's libndpi-dev)",
            tree.display()
        ));
    }
    let lib = tree.join("src/lib");
    let include = tree.join("src/include");
    let mut files = c_files(&lib)?;
    files.extend(c_files(&lib.join("protocols"))?);
    files.extend(c_files(&lib.join("third_party/src"))?);
    // Ours, compiled with the library's own definitions (see the file).
    // The manifest's directory when the script runs, not when it was compiled: cargo reuses
    // a compiled build script for an identical crate in another checkout sharing the target
    // directory, and a baked-in path would compile that other checkout's file (or a removed
    // one).
    let manifest = std::env::var("CARGO_MANIFEST_DIR").map_err(|e| format!("CARGO_MANIFEST_DIR: {e}"))?;
    let shim = Path::new(&manifest).join("shim/forget.c");
    println!("cargo:rerun-if-changed={}", shim.display());
    files.push(shim);
    // The headers `cargo xtask ndpi` writes last: a tree that is replaced or removed is noticed.
    println!("cargo:rerun-if-changed={}", include.join("ndpi_define.h").display());
    println!("cargo:rerun-if-changed={}", include.join("ndpi_config.h").display());
    let mut build = cc::Build::new();
    let gcrypt = gcrypt(&mut build);
    build
        .files(&files)
        .include(&include)
        .include(lib.join("third_party/include"))
        .define("NDPI_LIB_COMPILATION", None)
        // Third-party code: its warnings are upstream's business, not this build's output.
        .warnings(false)
        .flag_if_supported("-w")
        .compile("ndpi");
    // After the static library, so that the linker keeps what it needs from libgcrypt.
    if let Some(lib) = gcrypt {
        lib.link_paths.iter().for_each(|p| println!("cargo:rustc-link-search=native={}", p.display()));
        lib.libs.iter().for_each(|l| println!("cargo:rustc-link-lib={l}"));
    }
    println!("cargo:rustc-link-lib=m");
    println!("cargo:include={}", include.display());
    Ok(vec![include])
}

/// nDPI decrypts QUIC's Initial packets (to read the TLS client hello: SNI, ALPN) only when
/// built with libgcrypt, as Debian's libndpi is; without it a QUIC flow stays plain `QUIC`
/// where ndpiReader says `Google`, `DoH_DoT`... So libgcrypt is used when pkg-config finds
/// it (`libgcrypt20-dev`), and its absence is a cargo warning, not an error: the build
/// still works, with those verdicts coarser. `ndpi_config.h` leaves `HAVE_LIBGCRYPT` out,
/// so the define here decides.
fn gcrypt(build: &mut cc::Build) -> Option<pkg_config::Library> {
    match pkg_config::Config::new().cargo_metadata(false).env_metadata(true).probe("libgcrypt") {
        Ok(lib) => {
            build.define("HAVE_LIBGCRYPT", "1");
            for dir in &lib.include_paths {
                build.include(dir);
            }
            Some(lib)
        }
        Err(e) => {
            println!(
                "cargo:warning=callflow-ndpi-sys: building nDPI without libgcrypt ({e}): QUIC flows will not be \
             decrypted, so their verdicts stay `QUIC` (install libgcrypt20-dev and pkg-config for ndpiReader's)"
            );
            None
        }
    }
}
