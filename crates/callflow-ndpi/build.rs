//! Build script of callflow-ndpi: turns "callflow-ndpi-sys linked nDPI" (and "can empty a module's caches") into the `ndpi_linked` (and `ndpi_forget`) cfg for this crate.
//!
//! The `ndpi` feature asks for nDPI, but `callflow-ndpi-sys` may still build without it (no
//! vendored tree and no `CALLFLOW_NDPI` override: a fresh clone). Whether it did reaches
//! this script as the `links = "ndpi"` metadata `DEP_NDPI_LINKED`; the FFI code is compiled
//! only under `ndpi_linked`, and the feature itself only chooses which reason
//! `NdpiClassifier::new` gives when nDPI is missing.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ndpi_linked)");
    println!("cargo::rustc-check-cfg=cfg(ndpi_forget)");
    // DEP_NDPI_LINKED comes from callflow-ndpi-sys's build script, which cargo reruns this
    // one after; nothing else here can change.
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("DEP_NDPI_LINKED").is_some() {
        println!("cargo:rustc-cfg=ndpi_linked");
    }
    // The sys crate can empty a module's caches (vendored builds): modules are then reused.
    if std::env::var_os("DEP_NDPI_FORGET").is_some() {
        println!("cargo:rustc-cfg=ndpi_forget");
    }
}
