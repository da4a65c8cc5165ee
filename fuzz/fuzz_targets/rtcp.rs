//! Fuzz target: RTCP compound packets walked to the end.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = callflow_decode::rtcp::looks_like_rtcp(data);
    for packet in callflow_decode::rtcp::packets(data) {
        if packet.is_err() {
            break;
        }
    }
});
