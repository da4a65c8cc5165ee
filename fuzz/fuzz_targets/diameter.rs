//! Fuzz target: Diameter message parsing, the AVP tree with the built-in dictionary, and TCP stream framing.
#![no_main]
use callflow_decode::diameter::{self, DiameterMessage, Dictionary};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = diameter::frame_message(data);
    let _ = diameter::looks_like_diameter(data);
    if let Ok(msg) = DiameterMessage::parse(data) {
        let _ = diameter::avp_tree(&msg, Dictionary::builtin());
        let _ = msg.find(263, None);
    }
});
