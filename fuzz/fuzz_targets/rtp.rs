//! Fuzz target: RTP header parsing, the RTP heuristic and RFC 4733 events.
#![no_main]
use callflow_decode::{dtmf::TelephoneEvent, rtp};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = rtp::looks_like_rtp(data);
    if let Ok(packet) = rtp::RtpPacket::parse(data) {
        let _ = packet.csrcs().count();
        let _ = packet.extension();
        let _ = TelephoneEvent::parse(packet.payload);
    }
});
