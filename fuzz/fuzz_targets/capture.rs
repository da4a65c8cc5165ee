//! Fuzz target: a whole capture file (pcap, pcapng, gzip) read record by record, both ways a frame can be handed out.
#![no_main]
use callflow_decode::capture::{CaptureReader, SharedFrame};
use callflow_decode::packet::decode_frame;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(mut reader) = CaptureReader::from_bytes(data.to_vec()) {
        while let Ok(Some(frame)) = reader.next_frame() {
            let _ = decode_frame(frame.link_type, frame.data);
        }
    }
    // The way the read-ahead thread reads: references into the shared bytes (or, for a
    // gzip stream, borrowed frames), which must stay in bounds.
    if let Ok(mut reader) = CaptureReader::from_bytes(data.to_vec()) {
        let shared = reader.shared_bytes();
        while let Ok(Some(frame)) = reader.next_shared_frame() {
            match frame {
                SharedFrame::At(at) => {
                    let frame = at.frame(shared.as_deref().unwrap_or(&[]));
                    assert_eq!(frame.data.len(), at.len, "a reference stays inside the capture");
                    let _ = decode_frame(frame.link_type, frame.data);
                }
                SharedFrame::Here(frame) => {
                    let _ = decode_frame(frame.link_type, frame.data);
                }
            }
        }
    }
});
