//! Fuzz target: WebSocket handshake checks, framing and frame parsing on arbitrary bytes.
#![no_main]
use callflow_decode::websocket;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = (websocket::is_upgrade_request(data), websocket::is_upgrade_response(data));
    let _ = (websocket::has_subprotocol(data, "sip"), websocket::starts_with_sip_frame(data));
    let _ = websocket::frame_http_or_ws(data);
    if let Ok(frame) = websocket::WsFrame::parse(data) {
        let _ = websocket::MessageAssembler::new(1 << 16).push(&frame);
    }
});
