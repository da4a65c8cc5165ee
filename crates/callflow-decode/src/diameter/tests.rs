//! Tests of the Diameter decoder and framer, from RFC 6733's message and AVP formats and their edges.

use super::*;

/// An AVP: code, flags, optional vendor, data; padded to 4 bytes. `length` overrides the
/// length field (to make it lie).
fn avp_with(code: u32, flags: u8, vendor: Option<u32>, data: &[u8], length: Option<u32>) -> Vec<u8> {
    let header = if vendor.is_some() { 12 } else { 8 };
    let len = length.unwrap_or((header + data.len()) as u32);
    let mut out = code.to_be_bytes().to_vec();
    out.push(flags | if vendor.is_some() { AVP_FLAG_VENDOR } else { 0 });
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    if let Some(v) = vendor {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    out
}

fn avp(code: u32, vendor: Option<u32>, data: &[u8]) -> Vec<u8> {
    avp_with(code, AVP_FLAG_MANDATORY, vendor, data, None)
}

/// A message: flags, command code, application, and AVP bytes.
fn message(flags: u8, code: u32, app: u32, avps: &[u8]) -> Vec<u8> {
    let len = (HEADER_LEN + avps.len()) as u32;
    let mut out = vec![1];
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(flags);
    out.extend_from_slice(&code.to_be_bytes()[1..]);
    out.extend_from_slice(&app.to_be_bytes());
    out.extend_from_slice(&0x1122_3344u32.to_be_bytes());
    out.extend_from_slice(&0x5566_7788u32.to_be_bytes());
    out.extend_from_slice(avps);
    out
}

/// The tree of a message written as `code[children]` lists, or the error.
fn tree(bytes: &[u8]) -> String {
    let msg = match DiameterMessage::parse(bytes) {
        Ok(msg) => msg,
        Err(e) => return format!("error: {e}"),
    };
    fn show(nodes: &[AvpNode<'_>]) -> String {
        let items: Vec<String> = nodes
            .iter()
            .map(|n| {
                let v = n.avp.vendor_id.map_or(String::new(), |v| format!("/{v}"));
                if n.children.is_empty() {
                    format!("{}{v}:{}", n.avp.code, n.avp.data.len())
                } else {
                    format!("{}{v}[{}]", n.avp.code, show(&n.children))
                }
            })
            .collect();
        items.join(" ")
    }
    let t = avp_tree(&msg, Dictionary::builtin());
    match t.error {
        None => show(&t.avps),
        Some(e) => format!("{} | error: {e}", show(&t.avps)),
    }
}

#[test]
fn header_fields_and_flags() {
    let bytes = message(FLAG_REQUEST | FLAG_PROXIABLE, 272, 4, &avp(263, None, b"s;1"));
    let msg = DiameterMessage::parse(&bytes).unwrap();
    let h = msg.header;
    assert_eq!(
        (h.version, h.length, h.command_code, h.application_id, h.hop_by_hop, h.end_to_end),
        (1, 32, 272, 4, 0x1122_3344, 0x5566_7788)
    );
    assert_eq!((h.is_request(), h.is_proxiable(), h.is_error(), h.is_retransmit()), (true, true, false, false));
    let answer = message(FLAG_ERROR | FLAG_RETRANSMIT, 272, 4, &[]);
    let h = parse_header(&answer).unwrap();
    assert_eq!((h.is_request(), h.is_error(), h.is_retransmit()), (false, true, true));
    let s = msg.find(263, None).unwrap();
    assert_eq!((s.as_str(), s.offset, s.is_mandatory(), s.is_protected()), (Some("s;1"), 20, true, false));
    assert_eq!(msg.find(263, Some(10415)), None);
}

#[test]
fn avps_vendor_padding_and_groups() {
    // Subscription-Id { Subscription-Id-Type 1, Subscription-Id-Data "001010123456789" }.
    let inner = [avp(450, None, &1u32.to_be_bytes()), avp(444, None, b"001010123456789")].concat();
    let body = [avp(263, None, b"a"), avp(443, None, &inner), avp(1028, Some(10415), &1u32.to_be_bytes())].concat();
    assert_eq!(tree(&message(0x80, 272, 16777238, &body)), "263:1 443[450:4 444:15] 1028/10415:4");
    let msg_bytes = message(0x80, 272, 16777238, &body);
    let msg = DiameterMessage::parse(&msg_bytes).unwrap();
    let sub = msg.find(443, None).unwrap();
    let kids: Vec<(u32, usize)> = sub.children().map(|a| a.map(|a| (a.code, a.offset)).unwrap()).collect();
    // Session-Id takes 12 bytes (8 + 1 + 3 padding) after the header; the group's header 8.
    assert_eq!(kids, [(450, 40), (444, 52)]);
    assert_eq!(msg.find(1028, Some(10415)).and_then(|a| a.as_u32()), Some(1));
    // An AVP the dictionary does not know is kept, never an error; its data stays opaque.
    let unknown = avp(99_999, Some(4242), &[0xde, 0xad, 0xbe, 0xef, 0x01]);
    assert_eq!(tree(&message(0x80, 272, 4, &unknown)), "99999/4242:5");
    // The padding of the last AVP of a group may be missing.
    let mut unpadded = avp(444, None, b"abcde");
    unpadded.truncate(13);
    assert_eq!(tree(&message(0x80, 272, 4, &avp(443, None, &unpadded))), "443[444:5]");
}

#[test]
fn lying_lengths_and_truncation_are_named_errors() {
    let lie = |len| message(0x80, 272, 4, &avp_with(263, 0x40, None, b"abcd", Some(len)));
    // A length past the message.
    assert_eq!(tree(&lie(200)), " | error: diameter: truncated at offset 20: needs 200 bytes, 12 available");
    // A length shorter than the AVP header.
    assert_eq!(tree(&lie(5)), " | error: diameter: invalid AVP length at offset 25: shorter than the AVP header");
    // Inside a group: what came before is kept.
    let bad_inner = avp_with(444, 0x40, None, b"x", Some(99));
    let group = [avp(263, None, b"s"), avp(443, None, &[avp(450, None, &[0, 0, 0, 1]), bad_inner].concat())].concat();
    assert_eq!(
        tree(&message(0x80, 272, 4, &group)),
        "263:1 443[450:4] | error: diameter: truncated at offset 52: needs 99 bytes, 12 available"
    );
    // A header cut short, a message shorter than its length, an AVP header cut short.
    assert_eq!(tree(&[1, 0, 0]), "error: diameter: truncated at offset 0: needs 20 bytes, 3 available");
    let full = message(0x80, 272, 4, &avp(263, None, b"abcd"));
    assert_eq!(tree(&full[..24]), "error: diameter: truncated at offset 0: needs 32 bytes, 24 available");
    let mut cut = message(0x80, 272, 4, &[0, 0, 1, 7]);
    cut[3] = 24;
    assert_eq!(tree(&cut), " | error: diameter: truncated at offset 20: needs 8 bytes, 4 available");
}

#[test]
fn bad_headers_are_named_errors() {
    let mut m = message(0x80, 272, 4, &[]);
    m[0] = 2;
    assert_eq!(tree(&m), "error: diameter: invalid version at offset 0: not 1");
    let mut m = message(0x80, 272, 4, &[]);
    m[4] = 0x81;
    assert_eq!(tree(&m), "error: diameter: invalid command flags at offset 4: reserved bits set");
    let mut m = message(0x80, 272, 4, &[]);
    m[3] = 22;
    assert_eq!(tree(&m), "error: diameter: invalid message length at offset 1: not a multiple of 4");
    m[3] = 16;
    assert_eq!(tree(&m), "error: diameter: invalid message length at offset 1: shorter than the 20-byte header");
    // A 20 MB length: refused from the header alone, nothing is allocated or awaited.
    let mut m = message(0x80, 272, 4, &[]);
    m[1..4].copy_from_slice(&(20_000_000u32).to_be_bytes()[1..]);
    assert_eq!(tree(&m), "error: diameter: invalid message length at offset 1: above the 1 MiB maximum");
}

#[test]
fn grouped_avps_nested_past_the_limit_stop_with_an_error() {
    // Failed-AVP (279, Grouped) inside itself, deeper than the limit: the 12th level (at
    // offset 20 + 11 * 8) is where the walk stops.
    let mut nested = avp(263, None, b"x");
    for _ in 0..MAX_DEPTH + 3 {
        nested = avp(279, None, &nested);
    }
    let got = tree(&message(0x80, 272, 4, &nested));
    assert!(
        got.ends_with("| error: diameter: invalid grouped AVP at offset 108: nested deeper than the limit"),
        "{got}"
    );
    // At the limit it decodes.
    let mut ok = avp(263, None, b"x");
    for _ in 0..MAX_DEPTH - 1 {
        ok = avp(279, None, &ok);
    }
    assert!(!tree(&message(0x80, 272, 4, &ok)).contains("error"));
}

fn frames(stream: &[u8]) -> Vec<Framing> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let f = frame_message(&stream[at..]);
        out.push(f);
        match f {
            Framing::Message(n) | Framing::Skip(n) => at += n,
            Framing::NeedMore => break,
        }
    }
    out
}

#[test]
fn framer_cuts_messages_by_their_length() {
    let a = message(0x80, 280, 0, &avp(264, None, b"peer.example"));
    let b = message(0x00, 280, 0, &avp(268, None, &2001u32.to_be_bytes()));
    let both = [a.clone(), b.clone()].concat();
    assert_eq!(frames(&both), [Framing::Message(a.len()), Framing::Message(b.len())]);
    assert_eq!(frame_message(&both[..a.len() - 1]), Framing::NeedMore);
    assert_eq!(frame_message(&both[..3]), Framing::NeedMore);
    assert_eq!(frame_message(&[]), Framing::NeedMore);
    // Mid-message start: junk is skipped to the next plausible header.
    let junk = [&[0xaa; 7][..], &a].concat();
    assert_eq!(frames(&junk), [Framing::Skip(7), Framing::Message(a.len())]);
    assert_eq!(frame_message(&[0xaa; 10]), Framing::Skip(6));
    assert_eq!(frame_message(&[0xaa]), Framing::Skip(1));
}

#[test]
fn framer_hands_on_a_20_mb_header_without_waiting_for_it() {
    let mut huge = message(0x80, 272, 4, &[]);
    huge[1..4].copy_from_slice(&(20_000_000u32).to_be_bytes()[1..]);
    // It is cut as a 20-byte message (which then fails to parse) as soon as the header is in.
    assert_eq!(frame_message(&huge[..10]), Framing::NeedMore);
    assert_eq!(frame_message(&huge), Framing::Message(HEADER_LEN));
    assert!(DiameterMessage::parse(&huge).is_err());
    // What follows it is found again.
    let next = message(0x80, 280, 0, &[]);
    let stream = [huge, vec![0xee; 12], next.clone()].concat();
    assert_eq!(frames(&stream), [Framing::Message(20), Framing::Skip(12), Framing::Message(next.len())]);
}

#[test]
fn sctp_payload_probe() {
    let m = message(0x80, 316, 16777251, &avp(263, None, b"s"));
    assert!(looks_like_diameter(&m));
    assert!(!looks_like_diameter(&m[..m.len() - 4]));
    assert!(!looks_like_diameter(b"INVITE sip:a@b SIP/2.0\r\n\r\n"));
}
