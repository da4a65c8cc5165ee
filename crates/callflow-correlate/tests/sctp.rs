//! SIP over SCTP: a message cut into DATA fragments is analysed once whole, at the frame that completes it, as tshark shows it.

mod common;

use callflow_correlate::{analyze, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;

#[test]
fn an_invite_in_two_sctp_fragments_is_one_message_at_its_last_fragment() {
    let Some(corpus) = common::corpus_dir() else { return };
    // SIP-I: the INVITE's multipart body (SDP and ISUP) is cut into two DATA chunks, frames
    // 1 (B) and 2 (E); tshark shows the INVITE at frame 2. The first fragment alone was
    // taken for the whole INVITE, at frame 1, with its body cut short.
    let path = corpus.join("public/heplify/sip_sctp.pcap");
    let mut reader = CaptureReader::open(&path).expect("the capture opens");
    let doc = analyze(&mut reader, "sip_sctp.pcap", AnalyzerOptions::default(), None).unwrap();
    let frames: Vec<(u64, &str)> = doc.sessions[0].messages.iter().map(|m| (m.frame, m.summary.as_str())).collect();
    assert_eq!(frames, [(2, "INVITE (SDP)"), (3, "100 Giving a try"), (4, "403 The reason is nocallee"), (5, "ACK")]);
    let sip = &doc.stats.by_protocol["sip"];
    assert_eq!(sip.packets, 4, "the first fragment's packet is SCTP's, not SIP's");
}
