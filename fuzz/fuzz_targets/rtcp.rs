//! Fuzz target: RTCP compound packets walked to the end, XR blocks and their VoIP metrics included.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = callflow_decode::rtcp::looks_like_rtcp(data);
    for packet in callflow_decode::rtcp::packets(data) {
        match packet {
            Ok(callflow_decode::rtcp::RtcpPacket::ExtendedReport { blocks, .. }) => {
                for block in callflow_decode::rtcp::xr_blocks(blocks).flatten() {
                    let _ = callflow_decode::rtcp::VoipMetrics::parse(block.body);
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
});
