//! SIP over WebSocket (RFC 7118): which TCP connections carry it, and the SIP messages in their frames.
//!
//! A connection is SIP over WebSocket when its first payload is the HTTP upgrade
//! handshake (request or response) naming the `sip` subprotocol, as RFC 7118 requires,
//! or, for a capture that missed the handshake, a text or binary frame that starts like
//! a SIP message. Its stream is cut by [`websocket::frame_http_or_ws`]; each WebSocket
//! message, reassembled from its fragments, is one SIP message.

use callflow_decode::sip;
use callflow_decode::tcp::StreamKey;
use callflow_decode::websocket::{self, MessageAssembler, WsFrame};
use std::collections::HashMap;

/// True when the first payload of a connection says it is SIP over WebSocket.
pub(crate) fn starts_sip_websocket(payload: &[u8]) -> bool {
    let handshake = websocket::is_upgrade_request(payload) || websocket::is_upgrade_response(payload);
    (handshake && websocket::has_subprotocol(payload, "sip")) || websocket::starts_with_sip_frame(payload)
}

/// The directions of SIP-over-WebSocket connections, each with the fragmented message it
/// is collecting.
#[derive(Debug, Default)]
pub(crate) struct WsDirections {
    by_direction: HashMap<StreamKey, MessageAssembler>,
}

impl WsDirections {
    /// Reads one PDU of direction `key` as cut by [`websocket::frame_http_or_ws`]:
    /// a handshake message or one frame. Returns the SIP message the frame completes.
    ///
    /// What is not SIP is not an anomaly here: the handshake, control frames, other
    /// messages an application sends on the connection (keep-alives), and the tail of a
    /// fragmented message whose start the capture missed. `max_len` bounds a message
    /// being reassembled.
    pub fn on_pdu(&mut self, key: StreamKey, pdu: &[u8], max_len: usize) -> Option<&[u8]> {
        if matches!(pdu.first(), Some(b'G' | b'H')) {
            return None;
        }
        let frame = WsFrame::parse(pdu).ok()?;
        if frame.opcode.is_control() {
            return None;
        }
        let assembler = self.by_direction.entry(key).or_insert_with(|| MessageAssembler::new(max_len));
        let (_, message) = assembler.push(&frame).ok()??;
        sip::looks_like_sip(message).then_some(message)
    }

    /// Forgets the directions `keep` rejects.
    pub fn retain(&mut self, mut keep: impl FnMut(StreamKey) -> bool) {
        self.by_direction.retain(|&key, _| keep(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Protocol: sip\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn connections_that_are_sip_over_websocket() {
        assert!(starts_sip_websocket(REQUEST));
        assert!(starts_sip_websocket(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: sip\r\n\r\n"
        ));
        // Another subprotocol is not ours.
        assert!(!starts_sip_websocket(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: chat\r\n\r\n"));
        // A capture that starts after the handshake.
        assert!(starts_sip_websocket(b"\x81\x17SIP/2.0 200 OK\r\nl: 0\r\n"));
        assert!(!starts_sip_websocket(b"INVITE sip:a SIP/2.0\r\n\r\n"));
    }

    #[test]
    fn pdus_to_sip_messages() {
        let (a, b): (SocketAddr, SocketAddr) = ("10.0.0.1:1000".parse().unwrap(), "10.0.0.2:443".parse().unwrap());
        let (ab, ba) = (StreamKey { src: a, dst: b, context: 0 }, StreamKey { src: b, dst: a, context: 0 });
        let mut ws = WsDirections::default();
        assert_eq!(ws.on_pdu(ab, REQUEST, 100), None);
        assert_eq!(ws.on_pdu(ab, b"\x89\x00", 100), None);
        assert_eq!(ws.on_pdu(ab, b"\x81\x05hello", 100), None);
        // A fragmented message, the other direction's frames between its fragments.
        assert_eq!(ws.on_pdu(ab, b"\x01\x08SIP/2.0 ", 100), None);
        assert_eq!(ws.on_pdu(ba, b"\x81\x04ping", 100), None);
        assert_eq!(ws.on_pdu(ab, b"\x80\x0a200 OK\r\n\r\n", 100), Some(&b"SIP/2.0 200 OK\r\n\r\n"[..]));
        // A message over the bound is dropped.
        let cb = StreamKey { src: "10.0.0.3:1000".parse().unwrap(), dst: b, context: 0 };
        assert_eq!(ws.on_pdu(cb, b"\x81\x12SIP/2.0 200 OK\r\n\r\n", 10), None);
        // The same addresses in a tunnel are another connection.
        assert_eq!(ws.on_pdu(StreamKey { context: 1, ..ab }, b"\x80\x0a200 OK\r\n\r\n", 100), None);
        assert_eq!(ws.by_direction.len(), 4);
        ws.retain(|key| key.src == b);
        assert_eq!(ws.by_direction.len(), 1);
    }
}
