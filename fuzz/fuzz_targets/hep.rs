//! Fuzz target: HEP packets of every version, their chunks, the payload's inflation, and TCP stream framing.
#![no_main]
use callflow_decode::hep::{self, HepPacket};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hep::frame_packet(data);
    let _ = hep::Chunks::new(data).count();
    if let Ok(p) = HepPacket::parse(data) {
        let _ = (p.payload_bytes(), p.timestamp(), p.proto());
    }
});
