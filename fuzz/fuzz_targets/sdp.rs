//! Fuzz target: SDP body parsing.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = callflow_decode::sdp::Sdp::parse(data);
});
