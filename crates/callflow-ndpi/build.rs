//! Build script of callflow-ndpi: turns "callflow-ndpi-sys linked nDPI" into the `ndpi_linked` cfg for this crate.
//!
//! The `ndpi` feature asks for nDPI, but `callflow-ndpi-sys` may still build without it (no
//! vendored tree and no `CALLFLOW_NDPI` override: a fresh clone). Whether it did reaches
//! this script as the `links = "ndpi"` metadata `DEP_NDPI_LINKED`; the FFI code is compiled
//! only under `ndpi_linked`, and the feature itself only chooses which reason
//! `NdpiClassifier::new` gives when nDPI is missing.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ndpi_linked)");
    // DEP_NDPI_LINKED comes from callflow-ndpi-sys's build script, which cargo reruns this
    // one after; nothing else here can change.
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("DEP_NDPI_LINKED").is_some() {
        println!("cargo:rustc-cfg=ndpi_linked");
    }
}
