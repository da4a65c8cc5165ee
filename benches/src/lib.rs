//! Shared inputs of callflowd's benchmarks: sample messages and the capture to run the pipeline on.
//!
//! The benchmarks themselves are in `benches/`: `decode` (SIP, SDP, RTP and RTCP
//! decoders, the RTP statistics update, capture record iteration) and `pipeline` (the
//! whole analysis of a capture). Run them with `cargo bench -p callflow-benches`;
//! `cargo test --workspace --all-targets` runs each once as a smoke test.

use std::path::PathBuf;

/// An INVITE with an SDP offer, as a softphone sends it.
pub const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\r\n\
Max-Forwards: 70\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@client.atlanta.example.com;transport=udp>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 151\r\n\
\r\n\
v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 client.atlanta.example.com\r\n\
s=-\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49172 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

/// The SDP body of [`INVITE`].
pub fn sdp() -> &'static [u8] {
    let at = INVITE.windows(4).position(|w| w == b"\r\n\r\n").expect("INVITE has a header end");
    &INVITE[at + 4..]
}

/// An RTP packet: PCMU, 160 bytes of payload.
pub fn rtp_packet(seq: u16, ts: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.resize(12 + 160, 0xff);
    p
}

/// The capture the pipeline benchmark analyses: `CALLFLOW_BENCH_PCAP` when set (e.g. a
/// 50 MB capture from `cargo xtask gen-pcap --calls 40 --duration 60 --out /tmp/bench.pcap`),
/// else the bundled example.
pub fn pipeline_capture() -> PathBuf {
    std::env::var_os("CALLFLOW_BENCH_PCAP")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/captures/basic-call.pcap"))
}
