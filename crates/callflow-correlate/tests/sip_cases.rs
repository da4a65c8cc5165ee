//! SIP's harder cases end to end: re-INVITE/UPDATE media changes, early media, forking, SIP INFO DTMF merged with RFC 4733, and media latched on to a NATed address.

#[path = "common/packets.rs"]
mod packets;

use callflow_correlate::Analyzer;
use callflow_decode::capture::Frame;
use callflow_decode::{LinkType, Timestamp};
use callflow_model::{Relation, Session, SessionKind};
use std::net::SocketAddrV4;

const CALLER: &str = "10.0.0.1:5060";
const CALLEE: &str = "10.0.0.2:5060";

/// One packet of a script (`packets::Scripted`).
type Packet = packets::Scripted;

/// An SDP from `ip` with audio on `port`, payload types `formats`, and `extra` lines.
fn sdp(ip: &str, port: u16, formats: &str, extra: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {formats}\r\n\
         a=rtpmap:101 telephone-event/8000\r\n{extra}"
    )
}

/// A SIP message: `start` line, `from_caller` says the direction, `to_tag` the callee's tag
/// (absent on an initial request), `cseq` as `1 INVITE`, a body of `content_type`.
fn sip(from_caller: bool, start: &str, to_tag: Option<&str>, cseq: &str, body: Option<(&str, &str)>) -> Packet {
    let (src, dst) = if from_caller { (CALLER, CALLEE) } else { (CALLEE, CALLER) };
    let to = match to_tag {
        Some(t) => format!("<sip:bob@b>;tag={t}"),
        None => "<sip:bob@b>".to_string(),
    };
    let branch = format!("z9hG4bK{}", cseq.replace(' ', ""));
    let (ct, body) = match body {
        Some((ct, b)) => (format!("Content-Type: {ct}\r\n"), b.to_string()),
        None => (String::new(), String::new()),
    };
    let text = format!(
        "{start}\r\nVia: SIP/2.0/UDP {CALLER};branch={branch}\r\nFrom: <sip:alice@a>;tag=a1\r\nTo: {to}\r\n\
         Call-ID: case@a\r\nCSeq: {cseq}\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    Packet::new(src, dst, text.into_bytes())
}

fn rtp(src: &str, dst: &str, seq: u16, pt: u8, payload: &[u8]) -> Packet {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&u32::from(src.parse::<SocketAddrV4>().unwrap().port()).to_be_bytes());
    p.extend_from_slice(payload);
    Packet::new(src, dst, p)
}

fn voice(src: &str, dst: &str, seq: u16) -> Packet {
    rtp(src, dst, seq, 0, &[0xff; 160])
}

/// Runs the packets 20 ms apart and returns the one call.
fn call(packets: Vec<Packet>) -> Session {
    let calls = run(packets);
    assert_eq!(calls.len(), 1);
    calls.into_iter().next().unwrap()
}

/// Runs the packets 20 ms apart and returns the calls.
fn run(packets: Vec<Packet>) -> Vec<Session> {
    let mut analyzer = Analyzer::default();
    for (i, p) in packets.iter().enumerate() {
        let data = p.ipv4(i);
        let frame = Frame {
            number: i as u64 + 1,
            ts: Timestamp::from_nanos(1_700_000_000_000_000_000 + i as i64 * 20_000_000),
            link_type: LinkType::IPV4,
            data: &data,
            orig_len: data.len() as u32,
            interface: 0,
        };
        analyzer.process(&frame);
    }
    let (sessions, _) = analyzer.finish();
    sessions.into_iter().filter(|s| s.kind == SessionKind::SipCall).collect()
}

const SDP: &str = "application/sdp";

/// INVITE with `offer`, 200 with `answer`, ACK.
fn setup(offer: &str, answer: &str) -> Vec<Packet> {
    vec![
        sip(true, "INVITE sip:bob@b SIP/2.0", None, "1 INVITE", Some((SDP, offer))),
        sip(false, "SIP/2.0 200 OK", Some("b1"), "1 INVITE", Some((SDP, answer))),
        sip(true, "ACK sip:bob@b SIP/2.0", Some("b1"), "1 ACK", None),
    ]
}

#[test]
fn re_invite_and_update_record_hold_resume_codec_and_address_and_streams_follow() {
    let a = |port, formats: &str, extra: &str| sdp("10.0.0.1", port, formats, extra);
    let b = |port, formats: &str, extra: &str| sdp("10.0.0.2", port, formats, extra);
    let mut p = setup(&a(4000, "0 101", ""), &b(6000, "0 101", ""));
    p.push(voice("10.0.0.1:4000", "10.0.0.2:6000", 1));
    let re_invite = |cseq: &str, offer: String, answer: String| {
        vec![
            sip(true, "INVITE sip:bob@b SIP/2.0", Some("b1"), &format!("{cseq} INVITE"), Some((SDP, &offer))),
            sip(false, "SIP/2.0 200 OK", Some("b1"), &format!("{cseq} INVITE"), Some((SDP, &answer))),
            sip(true, "ACK sip:bob@b SIP/2.0", Some("b1"), &format!("{cseq} ACK"), None),
        ]
    };
    p.extend(re_invite("2", a(4000, "0 101", "a=sendonly\r\n"), b(6000, "0 101", "a=recvonly\r\n")));
    p.extend(re_invite("3", a(4000, "0 101", ""), b(6000, "0 101", "")));
    // UPDATE to G.729 on a new port of the caller's: the callee's media goes there.
    let update = a(4002, "18 101", "");
    p.push(sip(true, "UPDATE sip:bob@b SIP/2.0", Some("b1"), "4 UPDATE", Some((SDP, &update))));
    p.push(sip(false, "SIP/2.0 200 OK", Some("b1"), "4 UPDATE", Some((SDP, &b(6000, "18 101", "")))));
    p.push(rtp("10.0.0.2:6000", "10.0.0.1:4002", 1, 18, &[0; 20]));
    // An RFC 2543 hold.
    p.extend(re_invite("5", sdp("0.0.0.0", 4002, "18 101", ""), b(6000, "18 101", "")));
    p.push(sip(true, "BYE sip:bob@b SIP/2.0", Some("b1"), "6 BYE", None));
    let s = call(p);
    let changes: Vec<String> =
        s.media_changes.iter().map(|c| format!("{:?} {} {}", c.kind, c.frame, c.detail)).collect();
    assert_eq!(
        changes,
        [
            "Hold 5 10.0.0.1:5060: sendrecv -> sendonly",
            "Hold 6 10.0.0.2:5060: sendrecv -> recvonly",
            "Resume 8 10.0.0.1:5060: sendonly -> sendrecv",
            "Resume 9 10.0.0.2:5060: recvonly -> sendrecv",
            "Codec 11 10.0.0.1:5060: PCMU -> G729",
            "Address 11 10.0.0.1:5060: 10.0.0.1:4000 -> 10.0.0.1:4002",
            "Codec 12 10.0.0.2:5060: PCMU -> G729",
            "Hold 14 10.0.0.1:5060: sendrecv -> 0.0.0.0",
        ]
    );
    let streams: Vec<String> = s.media.iter().map(|m| format!("{} -> {} {}", m.src, m.dst, m.codec)).collect();
    assert_eq!(streams, ["10.0.0.1:4000 -> 10.0.0.2:6000 PCMU", "10.0.0.2:6000 -> 10.0.0.1:4002 G729"]);
    assert!(!s.early_media && s.branches.is_empty() && s.dtmf.is_empty());
}

#[test]
fn early_media_after_a_183_with_sdp_is_attached_and_flagged() {
    let offer = sdp("10.0.0.1", 4000, "0 101", "");
    let answer = sdp("10.0.0.2", 6000, "0 101", "");
    let invite = sip(true, "INVITE sip:bob@b SIP/2.0", None, "1 INVITE", Some((SDP, &offer)));
    let early = vec![
        invite,
        sip(false, "SIP/2.0 183 Session Progress", Some("b1"), "1 INVITE", Some((SDP, &answer))),
        voice("10.0.0.2:6000", "10.0.0.1:4000", 1),
        voice("10.0.0.2:6000", "10.0.0.1:4000", 2),
        sip(false, "SIP/2.0 200 OK", Some("b1"), "1 INVITE", Some((SDP, &answer))),
    ];
    let s = call(early);
    assert!(s.early_media);
    assert_eq!(s.media.len(), 1);
    assert_eq!(s.media[0].packets, 2);
    // SDP in the 180 but the media only after the 200: not early.
    let mut late = vec![
        sip(true, "INVITE sip:bob@b SIP/2.0", None, "1 INVITE", Some((SDP, &offer))),
        sip(false, "SIP/2.0 180 Ringing", Some("b1"), "1 INVITE", Some((SDP, &answer))),
        sip(false, "SIP/2.0 200 OK", Some("b1"), "1 INVITE", Some((SDP, &answer))),
    ];
    late.push(voice("10.0.0.2:6000", "10.0.0.1:4000", 1));
    assert!(!call(late).early_media);
}

#[test]
fn forked_invite_shows_its_branches() {
    let offer = sdp("10.0.0.1", 4000, "0", "");
    let s = call(vec![
        sip(true, "INVITE sip:bob@b SIP/2.0", None, "1 INVITE", Some((SDP, &offer))),
        sip(false, "SIP/2.0 100 Trying", None, "1 INVITE", None),
        sip(false, "SIP/2.0 180 Ringing", Some("desk"), "1 INVITE", None),
        sip(false, "SIP/2.0 183 Session Progress", Some("mobile"), "1 INVITE", None),
        sip(false, "SIP/2.0 200 OK", Some("mobile"), "1 INVITE", None),
        sip(false, "SIP/2.0 487 Request Terminated", Some("desk"), "1 INVITE", None),
        sip(true, "ACK sip:bob@b SIP/2.0", Some("mobile"), "1 ACK", None),
    ]);
    let branches: Vec<String> =
        s.branches.iter().map(|b| format!("{} {} {:?}", b.to_tag, b.first_status, b.final_status)).collect();
    assert_eq!(branches, ["desk 180 Some(487)", "mobile 183 Some(200)"]);
    assert_eq!(s.state.as_str(), "IN_CALL", "the 487 of the other branch after the 200 changes nothing");
    // One branch only: nothing listed.
    assert!(call(setup(&offer, &sdp("10.0.0.2", 6000, "0", ""))).branches.is_empty());
    // A proxy's challenge, then the retry answered by the callee: two tags, but no fork
    // (ndpi/sip.pcap has such calls).
    let challenged = call(vec![
        sip(true, "INVITE sip:bob@b SIP/2.0", None, "1 INVITE", Some((SDP, &offer))),
        sip(false, "SIP/2.0 407 Proxy Authentication Required", Some("proxy"), "1 INVITE", None),
        sip(true, "INVITE sip:bob@b SIP/2.0", None, "2 INVITE", Some((SDP, &offer))),
        sip(false, "SIP/2.0 183 Session Progress", Some("bob"), "2 INVITE", None),
        sip(false, "SIP/2.0 480 Temporarily Unavailable", Some("bob"), "2 INVITE", None),
    ]);
    assert!(challenged.branches.is_empty());
}

#[test]
fn sip_info_digits_merge_with_rfc4733_events_in_time_order() {
    let mut p = setup(&sdp("10.0.0.1", 4000, "0 101", ""), &sdp("10.0.0.2", 6000, "0 101", ""));
    p.push(voice("10.0.0.1:4000", "10.0.0.2:6000", 1));
    // Digit 1 as an RFC 4733 event: three packets of one event (same timestamp), 800 units.
    for (seq, duration) in [(2u16, 160u16), (3, 480), (4, 800)] {
        let mut ev = rtp("10.0.0.1:4000", "10.0.0.2:6000", seq, 101, &[1, 0x0a, 0, 0]);
        ev.payload[4..8].copy_from_slice(&320u32.to_be_bytes());
        ev.payload[14..16].copy_from_slice(&duration.to_be_bytes());
        p.push(ev);
    }
    let relay = ("application/dtmf-relay", "Signal=2\r\nDuration=160\r\n");
    p.push(sip(true, "INFO sip:bob@b SIP/2.0", Some("b1"), "2 INFO", Some(relay)));
    p.push(sip(false, "SIP/2.0 200 OK", Some("b1"), "2 INFO", None));
    // A retransmitted INFO is one digit.
    p.push(sip(true, "INFO sip:bob@b SIP/2.0", Some("b1"), "3 INFO", Some(("application/dtmf", "#"))));
    p.push(sip(true, "INFO sip:bob@b SIP/2.0", Some("b1"), "3 INFO", Some(("application/dtmf", "#"))));
    let s = call(p);
    let digits: Vec<String> =
        s.dtmf.iter().map(|d| format!("{} {:?} {:?}", d.digit, d.source, d.duration_ms)).collect();
    assert_eq!(digits, ["1 Rfc4733 Some(100.0)", "2 SipInfo Some(160.0)", "# SipInfo None"]);
    assert!(s.dtmf.windows(2).all(|w| w[0].ts <= w[1].ts));
}

#[test]
fn media_from_an_unannounced_nat_address_is_attached_and_flagged_latched() {
    let mut p = setup(&sdp("10.0.0.1", 4000, "0", ""), &sdp("10.0.0.2", 6000, "0", ""));
    // The caller sits behind a NAT: its media comes from the NAT's address to the announced
    // port, and the callee's goes back there (symmetric RTP).
    for seq in 1..4 {
        p.push(voice("203.0.113.5:31000", "10.0.0.2:6000", seq));
        p.push(voice("10.0.0.2:6000", "203.0.113.5:31000", seq));
    }
    p.push(voice("10.0.0.2:6000", "10.0.0.1:4000", 9));
    let s = call(p);
    let streams: Vec<String> = s.media.iter().map(|m| format!("{} -> {} {}", m.src, m.dst, m.nat_latched)).collect();
    assert_eq!(
        streams,
        [
            "203.0.113.5:31000 -> 10.0.0.2:6000 true",
            "10.0.0.2:6000 -> 203.0.113.5:31000 true",
            "10.0.0.2:6000 -> 10.0.0.1:4000 false",
        ]
    );
}

/// A request or response of call `call_id` between users (`alice@a` style) at two
/// addresses, with extra header lines.
fn msg(
    (src, dst): (&str, &str),
    start: &str,
    call_id: &str,
    (from, to): (&str, &str),
    cseq: &str,
    headers: &str,
) -> Packet {
    let text = format!(
        "{start}\r\nVia: SIP/2.0/UDP {src};branch=z9hG4bK{call_id}{}\r\nFrom: <sip:{from}>;tag=f-{call_id}\r\n\
         To: <sip:{to}>{}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\n{headers}Content-Length: 0\r\n\r\n",
        cseq.replace(' ', ""),
        if start.starts_with("SIP/2.0") || cseq.starts_with('2') || cseq.contains("ACK") || cseq.contains("REFER") {
            format!(";tag=t-{call_id}")
        } else {
            String::new()
        }
    );
    Packet::new(src, dst, text.into_bytes())
}

/// An answered call from `from` at `a` to `to` at `b`, with `headers` on its INVITE.
fn answered(a: &str, b: &str, call_id: &str, from: &str, to: &str, headers: &str) -> Vec<Packet> {
    vec![
        msg((a, b), &format!("INVITE sip:{to} SIP/2.0"), call_id, (from, to), "1 INVITE", headers),
        msg((b, a), "SIP/2.0 200 OK", call_id, (from, to), "1 INVITE", ""),
        msg((a, b), &format!("ACK sip:{to} SIP/2.0"), call_id, (from, to), "1 ACK", ""),
    ]
}

/// Every link of `calls` as `CALL-ID -> CALL-ID relation (key)`, sorted.
fn links(calls: &[Session]) -> Vec<String> {
    let name = |id: &str| calls.iter().find(|s| s.id == id).map_or("?", |s| s.call_id.as_str()).to_string();
    let mut out: Vec<String> = calls
        .iter()
        .flat_map(|s| {
            s.related.iter().map(move |r| {
                let relation = if r.relation == Relation::Transfer { "transfer" } else { "leg" };
                format!("{} -> {} {relation} ({})", s.call_id, name(&r.session), r.key)
            })
        })
        .collect();
    out.sort();
    out
}

#[test]
fn blind_transfer_links_the_referred_call() {
    // Bob, called by Alice, sends her to Carol (RFC 3515); Alice calls Carol, Referred-By Bob.
    let (alice, bob, carol) = ("10.0.0.1:5060", "10.0.0.2:5060", "10.0.0.3:5060");
    let mut p = answered(alice, bob, "x", "alice@a", "bob@b", "");
    let refer_to = "Refer-To: <sip:carol@c>\r\n";
    p.push(msg((bob, alice), "REFER sip:alice@a SIP/2.0", "x", ("bob@b", "alice@a"), "1 REFER", refer_to));
    p.push(msg((alice, bob), "SIP/2.0 202 Accepted", "x", ("bob@b", "alice@a"), "1 REFER", ""));
    p.extend(answered(alice, carol, "z", "alice@a", "carol@c", "Referred-By: <sip:bob@b>\r\n"));
    // Someone else's call to Carol is not the referred one.
    p.extend(answered("10.0.0.9:5060", carol, "other", "dave@d", "carol@c", ""));
    assert_eq!(links(&run(p)), ["x -> z transfer (referred-by:carol|bob)", "z -> x transfer (referred-by:carol|bob)"]);
}

#[test]
fn attended_transfer_links_the_replaced_call() {
    // Bob talks to Alice (x) and to Carol (y), then joins them: his REFER to Alice names
    // the call y to replace, and Alice's INVITE to Carol (z) replaces it (RFC 3891).
    let (alice, bob, carol) = ("10.0.0.1:5060", "10.0.0.2:5060", "10.0.0.3:5060");
    let mut p = answered(alice, bob, "x", "alice@a", "bob@b", "");
    p.extend(answered(bob, carol, "y@b", "bob@b", "carol@c", ""));
    let refer_to = "Refer-To: <sip:carol@c?Replaces=y%40b%3Bto-tag%3Dt-y%3Bfrom-tag%3Df-y>\r\n";
    p.push(msg((bob, alice), "REFER sip:alice@a SIP/2.0", "x", ("bob@b", "alice@a"), "1 REFER", refer_to));
    let replaces = "Replaces: y@b;to-tag=t-y;from-tag=f-y\r\nReferred-By: <sip:bob@b>\r\n";
    p.extend(answered(alice, carol, "z", "alice@a", "carol@c", replaces));
    let got = links(&run(p));
    let pairs: Vec<&str> = got.iter().map(|l| l.split(" (").next().unwrap()).collect();
    assert_eq!(
        pairs,
        [
            "x -> y@b transfer",
            "x -> z transfer",
            "y@b -> x transfer",
            "y@b -> z transfer",
            "z -> x transfer",
            "z -> y@b transfer",
        ],
        "{got:#?}"
    );
    assert!(got.contains(&"z -> y@b transfer (replaces:y@b)".to_string()), "{got:#?}");
    assert!(got.contains(&"y@b -> x transfer (refer-to-replaces:y@b)".to_string()), "{got:#?}");
}
