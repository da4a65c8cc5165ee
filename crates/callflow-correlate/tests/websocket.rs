//! SIP over WebSocket (RFC 7118) end to end: the messages in WebSocket frames are found, with transport `ws`.
//!
//! A capture built here covers what the corpus may not (fragmented messages, a message
//! split over TCP segments, control frames between fragments); the corpus capture
//! `heplify/sip_tcp_websocket.pcap` is checked against what tshark finds in it.

// This test uses only the corpus helper of the shared module.
#[allow(dead_code)]
mod common;

use callflow_correlate::{analyze, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;
use callflow_model::{Document, Transport};
use std::collections::BTreeMap;

fn analyse(reader: &mut CaptureReader, name: &str) -> Document {
    analyze(reader, name, AnalyzerOptions::default(), None).expect("analyze")
}

/// A message as these tests compare it: frame, transport, method or status.
fn messages(doc: &Document) -> Vec<(u64, Transport, String)> {
    let mut out: Vec<_> = doc
        .sessions
        .iter()
        .flat_map(|s| &s.messages)
        .map(|m| (m.frame, m.transport, m.method.clone().unwrap_or_else(|| m.status.unwrap_or(0).to_string())))
        .collect();
    out.sort_by_key(|m| m.0);
    out
}

const CLIENT: [u8; 4] = [10, 0, 0, 1];
const SERVER: [u8; 4] = [10, 0, 0, 2];
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;

/// A pcap (LINKTYPE_RAW, IPv4) of TCP segments between CLIENT:50000 and SERVER:443, one
/// a second: (from the client?, sequence number, flags, payload).
fn pcap(segments: &[(bool, u32, u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for word in [0xa1b2_c3d4u32.to_le_bytes(), [2, 0, 4, 0], [0; 4], [0; 4], 65535u32.to_le_bytes()] {
        out.extend_from_slice(&word);
    }
    out.extend_from_slice(&101u32.to_le_bytes());
    for (i, &(from_client, seq, flags, payload)) in segments.iter().enumerate() {
        let (src, dst, sport, dport) =
            if from_client { (CLIENT, SERVER, 50000u16, 443u16) } else { (SERVER, CLIENT, 443, 50000) };
        let total = (40 + payload.len()) as u16;
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        p.extend_from_slice(payload);
        let ts = [(i as u32 + 1).to_le_bytes(), [0; 4], (p.len() as u32).to_le_bytes(), (p.len() as u32).to_le_bytes()];
        out.extend(ts.iter().flatten());
        out.extend_from_slice(&p);
    }
    out
}

/// A WebSocket frame with the first byte `first`, masked when `mask` is given.
fn ws_frame(first: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![first];
    let m = if mask.is_some() { 0x80 } else { 0 };
    if payload.len() < 126 {
        f.push(m | payload.len() as u8);
    } else {
        f.push(m | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    match mask {
        Some(k) => {
            f.extend_from_slice(&k);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => f.extend_from_slice(payload),
    }
    f
}

const UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: 10.0.0.2\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: sip\r\nSec-WebSocket-Version: 13\r\n\r\n";
const SWITCHING: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: sip\r\n\r\n";
const INVITE: &[u8] =
    b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bK56sdasks\r\n\
    From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\nCall-ID: ws-call-1\r\nCSeq: 1 INVITE\r\n\
    Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
const OK: &[u8] = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bK56sdasks\r\n\
    From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>;tag=b\r\nCall-ID: ws-call-1\r\nCSeq: 1 INVITE\r\n\
    Content-Length: 0\r\n\r\n";
const ACK_REQ: &[u8] = b"ACK sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bK7\r\n\
    From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>;tag=b\r\nCall-ID: ws-call-1\r\nCSeq: 1 ACK\r\n\
    Content-Length: 0\r\n\r\n";

#[test]
fn fragmented_and_split_messages_over_websocket() {
    const KEY: Option<[u8; 4]> = Some([0xde, 0xad, 0xbe, 0xef]);
    // The client sends the INVITE in two fragments with a ping between them, the second
    // fragment split over two TCP segments; the server answers 200 OK and a JSON message
    // (not SIP) in one segment; the client's ACK is a binary frame.
    let (head, tail) = INVITE.split_at(40);
    let mut invite = ws_frame(0x01, KEY, head);
    invite.extend(ws_frame(0x89, KEY, b"keep-alive"));
    invite.extend(ws_frame(0x80, KEY, tail));
    let (invite1, invite2) = invite.split_at(invite.len() - 30);
    let mut answer = ws_frame(0x81, None, OK);
    answer.extend(ws_frame(0x81, None, b"{\"presence\": \"online\"}"));
    let ack = ws_frame(0x82, KEY, ACK_REQ);
    let c = |n: usize| 1001 + n as u32;
    let s = |n: usize| 5001 + n as u32;
    let up = UPGRADE.len();
    let segments: &[(bool, u32, u8, &[u8])] = &[
        (true, 1000, SYN, b""),
        (false, 5000, SYN | ACK, b""),
        (true, c(0), ACK, b""),
        (true, c(0), PSH_ACK, UPGRADE),
        (false, s(0), PSH_ACK, SWITCHING),
        (true, c(up), PSH_ACK, invite1),
        (true, c(up + invite1.len()), PSH_ACK, invite2),
        (false, s(SWITCHING.len()), PSH_ACK, &answer),
        (true, c(up + invite.len()), PSH_ACK, &ack),
    ];
    let mut reader = CaptureReader::from_bytes(pcap(segments)).expect("capture");
    let doc = analyse(&mut reader, "websocket.pcap");
    assert_eq!(
        messages(&doc),
        [(7, Transport::Ws, "INVITE".into()), (8, Transport::Ws, "200".into()), (9, Transport::Ws, "ACK".into())]
    );
    assert_eq!(doc.sessions.len(), 1);
    assert_eq!(doc.stats.malformed, 0);
    // The TCP handshake is TCP; everything from the upgrade on is SIP's.
    let packets: BTreeMap<_, _> = doc.stats.by_protocol.iter().map(|(k, v)| (k.as_str(), v.packets)).collect();
    assert_eq!(packets, BTreeMap::from([("sip", 6), ("tcp", 3)]));
}

#[test]
fn websocket_without_the_sip_subprotocol_is_not_analysed() {
    let upgrade = b"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: chat\r\n\r\n";
    let frame = ws_frame(0x81, Some([1, 2, 3, 4]), OK);
    let segments: &[(bool, u32, u8, &[u8])] =
        &[(true, 1, PSH_ACK, upgrade), (true, 1 + upgrade.len() as u32, PSH_ACK, &frame)];
    let mut reader = CaptureReader::from_bytes(pcap(segments)).expect("capture");
    let doc = analyse(&mut reader, "chat.pcap");
    assert_eq!(messages(&doc), []);
}

#[test]
fn capture_that_starts_after_the_handshake() {
    let frame = ws_frame(0x81, None, OK);
    let mut reader = CaptureReader::from_bytes(pcap(&[(false, 77, PSH_ACK, &frame)])).expect("capture");
    let doc = analyse(&mut reader, "late.pcap");
    assert_eq!(messages(&doc), [(1, Transport::Ws, "200".into())]);
}

#[test]
fn heplify_sip_tcp_websocket() {
    let Some(corpus) = common::corpus_dir() else { return };
    let path = corpus.join("public/heplify/sip_tcp_websocket.pcap");
    let mut reader = CaptureReader::open(&path).expect("open capture");
    let doc = analyse(&mut reader, &path.display().to_string());
    let all = messages(&doc);
    let ws: Vec<_> = all.iter().filter(|m| m.1 == Transport::Ws).map(|m| (m.0, m.2.as_str())).collect();
    // The frames and messages `tshark -Y 'sip && websocket'` shows.
    assert_eq!(
        ws,
        [
            (11, "INVITE"),
            (13, "407"),
            (15, "ACK"),
            (18, "INVITE"),
            (19, "100"),
            (24, "180"),
            (34, "183"),
            (46, "200"),
            (49, "ACK"),
            (52, "BYE"),
            (56, "200"),
        ]
    );
    assert_eq!(all.len(), 39, "as tshark -z sip,stat counts");
    assert_eq!(all.iter().filter(|m| m.1 == Transport::Udp).count(), 28);
}
