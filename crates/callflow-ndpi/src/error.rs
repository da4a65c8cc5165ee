//! The error type of callflow-ndpi.

/// Why an nDPI classifier could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// This build of callflow-ndpi was made without its `ndpi` feature, so there is no
    /// nDPI library to call; use the heuristic classifier instead.
    #[error("nDPI is not built in (callflow-ndpi was compiled without its `ndpi` feature)")]
    NotBuiltIn,
    /// `ndpi_init_detection_module` returned no module (it allocates; this is out of memory).
    #[error("nDPI could not create its detection module")]
    InitFailed,
}
