//! The error type of callflow-ndpi.

/// Why an nDPI classifier could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// This build of callflow-ndpi was made without its `ndpi` feature, so there is no
    /// nDPI library to call; use the heuristic classifier instead.
    #[error("nDPI is not built in (callflow-ndpi was compiled without its `ndpi` feature)")]
    NotBuiltIn,
    /// The `ndpi` feature was on, but when this was built there was no nDPI to link: no
    /// vendored tree (`cargo xtask ndpi` lays it out) and no `CALLFLOW_NDPI` override, so
    /// `callflow-ndpi-sys` built without it. Run `cargo xtask ndpi` and build again.
    #[error(
        "nDPI is not built in (no nDPI source when this was built: run `cargo xtask ndpi`, then build again, \
         or build with CALLFLOW_NDPI=system to link the system's libndpi)"
    )]
    SourceMissing,
    /// `ndpi_init_detection_module` returned no module (it allocates; this is out of memory).
    #[error("nDPI could not create its detection module")]
    InitFailed,
}
