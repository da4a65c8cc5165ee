//! Fuzz target: a whole capture file (pcap, pcapng, gzip) read record by record.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(mut reader) = callflow_decode::capture::CaptureReader::from_bytes(data.to_vec()) {
        while let Ok(Some(frame)) = reader.next_frame() {
            let _ = callflow_decode::packet::decode_frame(frame.link_type, frame.data);
        }
    }
});
