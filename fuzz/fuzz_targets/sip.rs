//! Fuzz target: SIP message parsing, header access and TCP stream framing.
#![no_main]
use callflow_decode::sip::{self, SipMessage};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sip::frame_message(data);
    let _ = sip::looks_like_sip(data);
    if let Ok(msg) = SipMessage::parse(data) {
        let _ = (msg.call_id(), msg.from(), msg.to(), msg.cseq(), msg.top_via(), msg.content_length());
        let _ = msg.vias().count();
        let _ = msg.headers().count();
        let _ = sip::sdp_body(&msg);
    }
});
