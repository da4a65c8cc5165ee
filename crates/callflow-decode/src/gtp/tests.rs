//! Unit tests of the GTP decoders: the formats of TS 29.060, 29.274 and 29.281 and their edges.

use super::v2::ie;
use super::*;

/// A GTPv2 IE: type, length, instance, value.
fn ie2(t: u8, instance: u8, value: &[u8]) -> Vec<u8> {
    let mut v = vec![t];
    v.extend((value.len() as u16).to_be_bytes());
    v.push(instance);
    v.extend(value);
    v
}

/// A GTPv2 message with a TEID, sequence 0x000102, and `ies`.
fn msg2(t: u8, teid: Option<u32>, ies: &[u8]) -> Vec<u8> {
    let mut v = vec![if teid.is_some() { 0x48 } else { 0x40 }, t];
    let len = ies.len() + if teid.is_some() { 8 } else { 4 };
    v.extend((len as u16).to_be_bytes());
    if let Some(teid) = teid {
        v.extend(teid.to_be_bytes());
    }
    v.extend([0, 1, 2, 0]);
    v.extend(ies);
    v
}

#[test]
fn tbcd_digits() {
    let check = |b: &[u8], want: &str| assert_eq!(Digits::tbcd(b, 0).unwrap().as_str(), want);
    // IMSI 001010123456789 (odd: the last byte filled with F).
    check(&[0x00, 0x01, 0x01, 0x21, 0x43, 0x65, 0x87, 0xf9], "001010123456789");
    check(&[0x21, 0x43, 0xf5], "12345");
    check(&[0x21, 0x43], "1234");
    check(&[], "");
    check(&[0xba], "*#");
    assert_eq!(
        Digits::tbcd(&[0x11; 17], 30),
        Err(DecodeError::invalid(Layer::Gtp, 30, "TBCD digits", "longer than 16 bytes"))
    );
}

#[test]
fn apn_labels() {
    let apn = Apn::parse(b"\x03ims\x06mnc001\x06mcc001\x04gprs", 0).unwrap();
    assert_eq!(apn.to_string(), "ims.mnc001.mcc001.gprs");
    assert_eq!(Apn::parse(b"", 0).unwrap().to_string(), "");
    // A label longer than what is left.
    assert_eq!(Apn::parse(b"\x03ims\x09internet", 40), Err(DecodeError::truncated(Layer::Gtp, 45, 9, 8)));
}

#[test]
fn plmn_two_and_three_digit_mnc() {
    assert_eq!(Plmn::from_bytes([0x00, 0xf1, 0x10]).to_string(), "001-01");
    assert_eq!(Plmn::from_bytes([0x13, 0x00, 0x14]).to_string(), "310-410");
}

#[test]
fn v1_header_optional_word_and_extensions() {
    // Flags 0x32: version 1, PT 1, S set; the E flag is clear, so byte 11 is not read
    // even though it is not zero.
    let h = v1_header(&[0x32, 0x10, 0, 4, 0, 0, 0, 0, 0x13, 0x0b, 0, 0x85]).unwrap();
    assert_eq!((h.sequence, h.npdu, h.header_len, h.end, h.extensions), (Some(0x130b), None, 12, 12, 0));
    // E set: a PDU session container (type 0x85, 4 bytes) then a UDP port one (0x40).
    let mut b = vec![0x34, 0xff, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0x85];
    b.extend([1, 0x10, 0x01, 0x40, 1, 0x08, 0x68, 0x00]);
    let h = v1_header(&b).unwrap();
    assert_eq!((h.teid, h.sequence, h.header_len, h.extensions), (1, None, 20, 2));
    // Truncated: 8 bytes needed.
    assert_eq!(v1_header(&[0x30, 0xff, 0]), Err(DecodeError::truncated(Layer::Gtp, 0, 8, 3)));
    // An extension header whose length runs past the buffer.
    let b = [0x34, 0xff, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0x85, 2, 0, 0];
    assert_eq!(v1_header(&b), Err(DecodeError::truncated(Layer::Gtp, 12, 8, 3)));
    assert_eq!(v1_header(&[0x50; 8]), Err(DecodeError::invalid(Layer::Gtp, 0, "version", "not 1")));
}

#[test]
fn v1_ies_tv_and_tlv() {
    // Cause 128 (TV), IMSI (TV 8), NSAPI 5, TEID Data I, APN (TLV), End User Address IPv4.
    let mut b = vec![1, 128, 2, 0x64, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0xf1];
    b.extend([20, 5, 16, 0, 0, 0, 7]);
    b.extend([131, 0, 9, 8, b'i', b'n', b't', b'e', b'r', b'n', b'e', b't']);
    b.extend([128, 0, 6, 0xf1, 0x21, 10, 0, 0, 1]);
    let ies: Vec<_> = V1Ies::new(&b, 12).collect::<Result<_, _>>().unwrap();
    let types: Vec<u8> = ies.iter().map(|i| i.ie_type).collect();
    assert_eq!(types, [1, 2, 20, 16, 131, 128]);
    assert_eq!(Digits::tbcd(ies[1].value, 0).unwrap().as_str(), "460040100000001");
    assert_eq!(ies[3].offset, 12 + 13);
    assert_eq!(Apn::parse(ies[4].value, 0).unwrap().to_string(), "internet");
    let eua = EndUserAddress::parse(ies[5].value, 0).unwrap();
    assert_eq!((eua.number, eua.ipv4), (0x21, Some(Ipv4Addr::new(10, 0, 0, 1))));
    // A TV type of unknown length stops the walk with an error naming it.
    let got: Vec<_> = V1Ies::new(&[1, 128, 100, 0], 12).collect();
    assert_eq!(got[1], Err(DecodeError::invalid(Layer::Gtp, 14, "IE type", "a TV type of unknown length")));
    assert_eq!(got.len(), 2);
    // A TLV length that lies.
    let got: Vec<_> = V1Ies::new(&[131, 0, 200, 3], 12).collect();
    assert_eq!(got, [Err(DecodeError::truncated(Layer::Gtp, 15, 200, 1))]);
}

#[test]
fn v1_qos_profile_and_msisdn() {
    // ARP 2, delay 3 / reliability 3, peak 9 / precedence 2, mean 31, R99: conversational,
    // MBR UL 0x40 (64 kbps), DL 0x80 (576), GBR UL 0x3f (63), DL 0xff (0).
    let q = QosProfile::parse(&[2, 0x1b, 0x92, 0x1f, 0x23, 0x96, 0x40, 0x80, 0x44, 0x10, 0x3f, 0xff], 0).unwrap();
    assert_eq!((q.arp, q.delay_class, q.reliability_class, q.peak_throughput), (2, 3, 3, 9));
    assert_eq!((q.precedence, q.mean_throughput, q.traffic_class), (2, 31, Some(1)));
    assert_eq!((q.mbr_uplink, q.mbr_downlink, q.gbr_uplink, q.gbr_downlink), (Some(64), Some(576), Some(63), Some(0)));
    let short = QosProfile::parse(&[1, 0x23, 0x31, 0x1f], 0).unwrap();
    assert_eq!((short.traffic_class, short.mbr_uplink), (None, None));
    assert_eq!(QosProfile::parse(&[1, 2], 50), Err(DecodeError::truncated(Layer::Gtp, 50, 4, 2)));
    assert_eq!(v1::msisdn(&[0x91, 0x64, 0x07, 0x12, 0xf3], 0).unwrap().as_str(), "4670213");
}

#[test]
fn v2_header_and_piggybacking() {
    let echo = msg2(1, None, &ie2(3, 0, &[7]));
    let ms: Vec<_> = v2_messages(&echo).collect::<Result<_, _>>().unwrap();
    assert_eq!(ms.len(), 1);
    assert_eq!((ms[0].header.teid, ms[0].header.sequence, ms[0].ies_offset), (None, 0x102, 8));
    // A Create Session Response with the P flag, then a Create Bearer Request.
    let mut first = msg2(33, Some(0x1234), &ie2(ie::CAUSE, 0, &[16, 0]));
    first[0] |= 0x10;
    let second = msg2(95, Some(0x1234), &ie2(ie::EBI, 0, &[5]));
    let both = [first.clone(), second].concat();
    let ms: Vec<_> = v2_messages(&both).collect::<Result<_, _>>().unwrap();
    assert_eq!(ms.iter().map(|m| m.header.message_type).collect::<Vec<_>>(), [33, 95]);
    assert_eq!(ms[1].offset, first.len());
    assert_eq!(ms[1].ies().next().unwrap().unwrap().offset, first.len() + 12);
    // A length running past the datagram (a capture's snapshot length, or a lie): the
    // header is whole, the IEs are what there is, and the message says it was cut.
    let mut lying = msg2(32, Some(7), &ie2(ie::EBI, 0, &[5]));
    lying[3] = 40;
    let cut = v2_messages(&lying).next().unwrap().unwrap();
    assert_eq!((cut.header.teid, cut.ies.len()), (Some(7), 5));
    assert_eq!(cut.cut, Some(DecodeError::truncated(Layer::Gtp, 0, 44, 17)));
    // A header cut short.
    assert_eq!(v2_messages(&lying[..10]).next(), Some(Err(DecodeError::truncated(Layer::Gtp, 0, 12, 10))));
    // A length shorter than the TEID the T flag announces.
    let short = [0x48, 32, 0, 2, 0, 0];
    assert_eq!(
        v2_messages(&short).next(),
        Some(Err(DecodeError::invalid(Layer::Gtp, 2, "length", "shorter than the header")))
    );
}

#[test]
fn v2_ies_values() {
    let check_paa = |v: &[u8], want: Paa| assert_eq!(Paa::parse(v, 0).unwrap(), want);
    check_paa(&[1, 10, 45, 0, 7], Paa::Ipv4(Ipv4Addr::new(10, 45, 0, 7)));
    let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
    check_paa(&[[2, 64].as_slice(), &v6.octets()].concat(), Paa::Ipv6(64, v6));
    check_paa(
        &[[3, 64].as_slice(), &v6.octets(), &[10, 0, 0, 9]].concat(),
        Paa::Ipv4v6(Ipv4Addr::new(10, 0, 0, 9), 64, v6),
    );
    assert_eq!(Paa::parse(&[1, 10, 45], 60), Err(DecodeError::truncated(Layer::Gtp, 61, 4, 2)));

    // S1-U SGW F-TEID with IPv4.
    let f = Fteid::parse(&[0x81, 0, 0, 0x12, 0x34, 192, 168, 0, 1], 0).unwrap();
    assert_eq!((f.interface_type, f.teid, f.ipv4, f.ipv6), (1, 0x1234, Some(Ipv4Addr::new(192, 168, 0, 1)), None));
    // Both addresses.
    let f = Fteid::parse(&[[0xc0, 0, 0, 0, 9, 1, 2, 3, 4].as_slice(), &v6.octets()].concat(), 0).unwrap();
    assert_eq!((f.interface_type, f.ipv6), (0, Some(v6)));
    // V4 announced, the address missing.
    assert_eq!(Fteid::parse(&[0x81, 0, 0, 0, 1, 10], 100), Err(DecodeError::truncated(Layer::Gtp, 105, 4, 1)));

    // ARP: PCI 1 (may not pre-empt), PL 9, PVI 0 (pre-emptable); QCI 1; MBR 128/128, GBR 64/64.
    let mut q = vec![0x40 | 9 << 2, 1];
    for r in [128u64, 128, 64, 64] {
        q.extend(&r.to_be_bytes()[3..]);
    }
    let qos = BearerQos::parse(&q, 0).unwrap();
    assert_eq!((qos.preemption_capability, qos.priority_level, qos.preemption_vulnerability), (false, 9, true));
    assert_eq!((qos.qci, qos.mbr_uplink, qos.gbr_downlink), (1, 128, 64));
    assert_eq!(BearerQos::parse(&q[..21], 8), Err(DecodeError::truncated(Layer::Gtp, 8, 22, 21)));

    let cause = Cause::parse(&[64, 0x01], 0).unwrap();
    assert_eq!((cause.value, cause.source, cause.accepted()), (64, true, false));
    assert!(Cause::parse(&[16, 0], 0).unwrap().accepted());
    assert_eq!(Ambr::parse(&[0, 0, 0x03, 0xe8, 0, 0, 0x07, 0xd0], 0), Ok(Ambr { uplink: 1000, downlink: 2000 }));

    // ULI with TAI (001-01, TAC 1) and ECGI (ECI 0x0000101).
    let uli = Uli::parse(&[0x18, 0x00, 0xf1, 0x10, 0, 1, 0x00, 0xf1, 0x10, 0, 0, 0x01, 0x01], 0).unwrap();
    assert_eq!(uli.tai.map(|(p, tac)| (p.to_string(), tac)), Some(("001-01".into(), 1)));
    assert_eq!(uli.ecgi.map(|(_, eci)| eci), Some(0x101));
    assert_eq!(Uli::parse(&[0x18, 0, 0xf1, 0x10, 0, 1, 0], 0).unwrap_err().layer(), Layer::Gtp);
}

#[test]
fn v2_grouped_ies_and_depth_limit() {
    let bearer = [ie2(ie::EBI, 0, &[5]), ie2(ie::FTEID, 2, &[0x85, 0, 0, 0, 1, 1, 1, 1, 1])].concat();
    let m = msg2(32, Some(0), &ie2(ie::BEARER_CONTEXT, 0, &bearer));
    let msg = v2_messages(&m).next().unwrap().unwrap();
    let ctx = msg.ies().next().unwrap().unwrap();
    assert!(ctx.is_grouped());
    let inner: Vec<_> = ctx.group().unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(inner.iter().map(|i| (i.ie_type, i.instance, i.depth)).collect::<Vec<_>>(), [(73, 0, 1), (87, 2, 1)]);
    assert_eq!(inner[1].offset, 12 + 4 + 5);

    // Bearer contexts nested six deep: the walk refuses the fifth level, naming where.
    let mut nested = ie2(ie::EBI, 0, &[5]);
    for _ in 0..6 {
        nested = ie2(ie::BEARER_CONTEXT, 0, &nested);
    }
    let mut ies = V2Ies::new(&nested, 0);
    let mut depth = 0;
    let err = loop {
        let ie = ies.next().unwrap().unwrap();
        match ie.group() {
            Ok(next) => ies = next,
            Err(e) => break e,
        }
        depth += 1;
    };
    assert_eq!(depth, MAX_GROUP_DEPTH);
    assert_eq!(err, DecodeError::invalid(Layer::Gtp, 16, "grouped IE", "nested deeper than 4 levels"));

    // A grouped IE whose inner length lies.
    let lying = ie2(ie::BEARER_CONTEXT, 0, &[73, 0, 9, 0, 5]);
    let ctx = V2Ies::new(&lying, 20).next().unwrap().unwrap();
    assert_eq!(ctx.group().unwrap().next(), Some(Err(DecodeError::truncated(Layer::Gtp, 28, 9, 1))));
    // An IE header cut short.
    assert_eq!(V2Ies::new(&[1, 0], 12).next(), Some(Err(DecodeError::truncated(Layer::Gtp, 12, 4, 2))));
}
