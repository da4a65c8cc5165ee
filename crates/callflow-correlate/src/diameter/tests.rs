//! Unit tests of the Diameter handler's helpers: flags, TBCD digits, values by type, subscriber keys.

use super::*;
use callflow_decode::diameter::Avps;

#[test]
fn flags_as_letters() {
    assert_eq!(flags_text(0xc0), "RP--");
    assert_eq!(flags_text(0x30), "--ET");
    assert_eq!(flags_text(0), "----");
}

#[test]
fn tbcd_digits_skip_the_filler() {
    assert_eq!(tbcd(&[0x33, 0x16, 0x32, 0x54, 0xf6]), "336123456");
    assert_eq!(tbcd(&[]), "");
}

#[test]
fn values_by_type() {
    let check = |t, code, data: &[u8], expected: Option<&str>| {
        assert_eq!(render(t, code, None, data).as_deref(), expected, "{t:?} {data:02x?}");
    };
    check(AvpType::Unsigned32, 1, &[0, 0, 7, 209], Some("2001"));
    check(AvpType::Integer32, 1, &[0xff, 0xff, 0xff, 0xfe], Some("-2"));
    check(AvpType::Enumerated, 1, &[0xff, 0xff, 0xff, 0xff], Some("4294967295"));
    check(AvpType::Unsigned64, 1, &[0, 0, 0, 0, 0, 0, 1, 0], Some("256"));
    check(AvpType::Unsigned32, 1, &[0, 7, 209], None);
    check(AvpType::Address, 1, &[0, 1, 10, 0, 0, 1], Some("10.0.0.1"));
    check(AvpType::Address, 1, &[0, 2, 0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], Some("2001:db8::1"));
    check(AvpType::Address, 1, &[0, 9, 1], None);
    // NTP seconds: the Unix epoch is 2208988800 s after 1900.
    check(AvpType::Time, 1, &3_509_988_800u32.to_be_bytes(), Some("1301000000 (unix time)"));
    check(AvpType::Utf8String, 1, b"host", Some("host"));
    check(AvpType::OctetString, 8, &[10, 45, 0, 2], Some("10.45.0.2"));
    check(AvpType::OctetString, 25, &[1, 2], None);
}

/// The subscriber keys of an AVP sequence, as (kind, value).
fn keys_of(bytes: &[u8], app: u32) -> Vec<(SubscriberKeyKind, String)> {
    let nodes: Vec<AvpNode<'_>> =
        Avps::new(bytes, 20).map(|a| AvpNode { avp: a.unwrap(), children: Vec::new() }).collect();
    let mut keys = Vec::new();
    subscriber_keys(&nodes, app, &mut keys);
    keys.into_iter().map(|k| (k.kind, k.value)).collect()
}

fn avp(code: u32, vendor: Option<u32>, data: &[u8]) -> Vec<u8> {
    let header = if vendor.is_some() { 12 } else { 8 };
    let mut out = code.to_be_bytes().to_vec();
    out.push(if vendor.is_some() { 0x80 } else { 0 });
    out.extend_from_slice(&((header + data.len()) as u32).to_be_bytes()[1..]);
    if let Some(v) = vendor {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

#[test]
fn subscriber_keys_by_application_and_avp() {
    use SubscriberKeyKind as K;
    // User-Name is an IMSI on S6a, an IMPI on Cx, and nothing said elsewhere.
    assert_eq!(keys_of(&avp(1, None, b"001010000000001"), APP_S6A), [(K::Imsi, "001010000000001".into())]);
    assert_eq!(keys_of(&avp(1, None, b"user@ims.example"), APP_CX), [(K::Impi, "user@ims.example".into())]);
    assert_eq!(keys_of(&avp(1, None, b"001010000000001"), 4), []);
    // Not digits: not an IMSI.
    assert_eq!(keys_of(&avp(1, None, b"mme@example"), APP_S6A), []);
    // Framed-IPv6-Prefix: reserved, 64 bits, 8 bytes of prefix.
    let prefix = avp(97, None, &[0, 64, 0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2]);
    assert_eq!(keys_of(&prefix, 16_777_238), [(K::UeAddress, "2001:db8:1:2::".into())]);
    // MSISDN in TBCD, IMEI, 3GPP-IMSI; each once.
    let many = [
        avp(701, Some(VENDOR_3GPP), &[0x33, 0x16, 0x32, 0x54, 0x76, 0xf8]),
        avp(1402, Some(VENDOR_3GPP), b"35358800000000"),
        avp(1, Some(VENDOR_3GPP), b"001010000000001"),
        avp(1, Some(VENDOR_3GPP), b"001010000000001"),
    ]
    .concat();
    assert_eq!(
        keys_of(&many, APP_S6A),
        [(K::Msisdn, "33612345678".into()), (K::Imei, "35358800000000".into()), (K::Imsi, "001010000000001".into())]
    );
}

/// A bare message: request or answer, command 280 (watchdog), hop-by-hop id `hbh`.
fn watchdog(request: bool, hbh: u32) -> Vec<u8> {
    let mut m = vec![1, 0, 0, 20, if request { 0x80 } else { 0 }, 0, 1, 24, 0, 0, 0, 0];
    m.extend_from_slice(&hbh.to_be_bytes());
    m.extend_from_slice(&hbh.to_be_bytes());
    m
}

#[test]
fn requests_waiting_for_an_answer_are_bounded_and_the_oldest_given_up() {
    let mut handler = DiameterHandler::new(None);
    let lifetimes = crate::handler::Lifetimes { linger: 0, idle: i64::MAX };
    let mut services = Services {
        media: crate::media::MediaTable::default(),
        stats: crate::stats::StatsBuilder::default(),
        lifetimes,
    };
    let (client, server): (SocketAddr, SocketAddr) =
        ("10.0.0.1:40000".parse().unwrap(), "10.0.0.2:3868".parse().unwrap());
    let ctx = |src, dst| PacketCtx {
        ts: Timestamp::default(),
        frame: 1,
        src,
        dst,
        transport: Transport::Tcp,
        tunnel: None,
        context: 0,
        wire_len: 60,
        flow: None,
        udp: None,
    };
    let total = MAX_PENDING as u32 + 10;
    for hbh in 0..total {
        handler.on_payload(AppProtocol::Diameter, &ctx(client, server), &mut (), &watchdog(true, hbh), &mut services);
    }
    assert_eq!(handler.pending_count, MAX_PENDING);
    // The oldest was given up on: its answer pairs with nothing; the newest's does.
    for hbh in [0, total - 1] {
        handler.on_payload(AppProtocol::Diameter, &ctx(server, client), &mut (), &watchdog(false, hbh), &mut services);
    }
    let peers = handler.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!((peers[0].pairs, peers[0].unanswered), (1, MAX_PENDING as u64 - 1));
    assert_eq!(peers[0].messages["DWR"], u64::from(total));
    assert!(handler.arrivals.len() <= 4 * MAX_PENDING + 1);
}
