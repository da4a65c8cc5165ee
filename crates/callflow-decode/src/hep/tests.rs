//! HEP decoder tests: hand-built packets for each rule, and the real HEP captures of the corpus against their chunk table.

use super::*;
use crate::capture::CaptureReader;
use crate::packet::{decode_frame, Transport};
use crate::test_support::corpus_dir;
use std::fmt::Write as _;
use std::path::Path;

fn sip_packet() -> Vec<u8> {
    Hep3Builder::new()
        .ip_family(2)
        .ip_proto(17)
        .src_ip("10.0.0.1".parse().unwrap())
        .dst_ip("10.0.0.2".parse().unwrap())
        .src_port(5060)
        .dst_port(5070)
        .ts_sec(1_700_000_000)
        .ts_usec(250_000)
        .proto_type(ProtoType::Sip)
        .capture_id(2001)
        .auth_key(b"secret")
        .payload(b"OPTIONS sip:a SIP/2.0\r\n\r\n")
        .build()
}

/// Decodes `bytes` and describes the result in one line, or the error.
fn check(bytes: &[u8], expected: &str) {
    let got = match HepPacket::parse(bytes) {
        Ok(p) => format!(
            "{:?} {}:{} -> {}:{} proto {:?} type {:?} agent {:?} ts {:?} key {:?} unknown {} payload {:?}",
            p.version.unwrap(),
            p.src_ip.map(|i| i.to_string()).unwrap_or_default(),
            p.src_port.unwrap_or(0),
            p.dst_ip.map(|i| i.to_string()).unwrap_or_default(),
            p.dst_port.unwrap_or(0),
            p.ip_proto,
            p.proto(),
            p.capture_id,
            p.timestamp().map(|t| t.as_nanos()),
            p.auth_key.map(String::from_utf8_lossy),
            p.unknown_chunks,
            String::from_utf8_lossy(&p.payload_bytes().unwrap()),
        ),
        Err(e) => format!("error: {e}"),
    };
    assert_eq!(got, expected);
}

#[test]
fn hep3_fields_decode() {
    check(
        &sip_packet(),
        "V3 10.0.0.1:5060 -> 10.0.0.2:5070 proto Some(17) type Some(Sip) agent Some(2001) ts Some(1700000000250000000) \
         key Some(\"secret\") unknown 0 payload \"OPTIONS sip:a SIP/2.0\\r\\n\\r\\n\"",
    );
}

#[test]
fn hep3_ipv6_and_compressed_payload_decode() {
    use flate2::write::ZlibEncoder;
    use std::io::Write;
    let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(b"BYE sip:b SIP/2.0\r\n\r\n").unwrap();
    let packet = Hep3Builder::new()
        .ip_family(10)
        .ip_proto(6)
        .src_ip("2001:db8::1".parse().unwrap())
        .dst_ip("2001:db8::2".parse().unwrap())
        .src_port(5061)
        .dst_port(5060)
        .proto_type(ProtoType::Sip)
        .compressed_payload(&z.finish().unwrap())
        .build();
    check(
        &packet,
        "V3 2001:db8::1:5061 -> 2001:db8::2:5060 proto Some(6) type Some(Sip) agent None ts None key None unknown 0 \
         payload \"BYE sip:b SIP/2.0\\r\\n\\r\\n\"",
    );
}

#[test]
fn unknown_chunks_are_skipped_by_length() {
    // A vendor chunk, an unknown generic type, and a 16-bit capture id between known ones.
    let packet = Hep3Builder::new()
        .chunk(0x0022, 1, b"vendor data")
        .src_port(1)
        .chunk(0, 0x0fff, &[0xff; 40])
        .chunk(0, chunk::CAPTURE_ID, &7u16.to_be_bytes())
        .dst_port(2)
        .payload(b"x")
        .build();
    check(&packet, "V3 :1 -> :2 proto None type None agent Some(7) ts None key None unknown 2 payload \"x\"");
}

#[test]
fn text_chunks_lose_their_c_string_nul() {
    let packet = Hep3Builder::new().auth_key(b"pw\0").correlation_id(b"call-1\0").build();
    let p = HepPacket::parse(&packet).unwrap();
    assert_eq!((p.auth_key, p.correlation_id), (Some(&b"pw"[..]), Some(&b"call-1"[..])));
}

#[test]
fn malformed_hep3_packets_name_the_field_and_offset() {
    let good = sip_packet();
    check(&good[..3], "error: hep: truncated at offset 0: needs 6 bytes, 3 available");
    check(b"HEP4\0\x06", "error: hep: invalid magic at offset 0: not HEP3");
    check(
        &good[..good.len() - 1],
        &format!("error: hep: truncated at offset 0: needs {} bytes, {} available", good.len(), good.len() - 1),
    );
    let mut longer = good.clone();
    longer.push(0);
    check(&longer, "error: hep: invalid total length at offset 4: shorter than the datagram");
    check(b"HEP3\0\x03", "error: hep: invalid total length at offset 4: shorter than the 6-byte header");
    // A chunk whose length says 3 (less than its header).
    check(
        b"HEP3\0\x0c\0\0\0\x07\0\x03",
        "error: hep: invalid chunk length at offset 10: shorter than the 6-byte chunk header",
    );
    // A chunk running past the packet's end.
    check(b"HEP3\0\x0d\0\0\0\x0f\0\x20x", "error: hep: truncated at offset 6: needs 32 bytes, 7 available");
    // A chunk header cut short.
    check(b"HEP3\0\x09\0\0\0", "error: hep: truncated at offset 6: needs 6 bytes, 3 available");
    // A port of three bytes.
    check(
        b"HEP3\0\x0f\0\0\0\x07\0\x09abc",
        "error: hep: invalid source port at offset 10: chunk length does not fit the field",
    );
    let bomb = Hep3Builder::new().compressed_payload(b"not zlib").build();
    let p = HepPacket::parse(&bomb).unwrap();
    assert_eq!(
        p.payload_bytes().unwrap_err().to_string(),
        "hep: invalid compressed payload at offset 0: not a valid zlib stream"
    );
}

#[test]
fn a_compressed_payload_inflating_beyond_the_bound_is_refused() {
    use flate2::write::ZlibEncoder;
    use std::io::Write;
    let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&vec![b'a'; MAX_INFLATED + 1]).unwrap();
    let packet = Hep3Builder::new().compressed_payload(&z.finish().unwrap()).build();
    let p = HepPacket::parse(&packet).unwrap();
    assert_eq!(
        p.payload_bytes().unwrap_err().to_string(),
        "hep: invalid compressed payload at offset 0: inflates beyond 1 MiB"
    );
}

fn v2_packet(version: u8, v6: bool) -> Vec<u8> {
    let mut b = vec![version, 0, if v6 { 10 } else { 2 }, 17];
    b.extend_from_slice(&5060u16.to_be_bytes());
    b.extend_from_slice(&5080u16.to_be_bytes());
    if v6 {
        b.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        b.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
    } else {
        b.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
    }
    if version == 2 {
        b.extend_from_slice(&1_600_000_000u32.to_le_bytes());
        b.extend_from_slice(&42u32.to_le_bytes());
        b.extend_from_slice(&9u16.to_le_bytes());
        b.extend_from_slice(&[0, 0]);
    }
    b.extend_from_slice(b"ACK sip:x SIP/2.0\r\n\r\n");
    b[1] = b.len().min(255) as u8;
    b
}

#[test]
fn hep2_and_hep1_decode() {
    check(
        &v2_packet(2, false),
        "V2 192.0.2.1:5060 -> 192.0.2.2:5080 proto Some(17) type Some(Sip) agent Some(9) ts Some(1600000000000042000) \
         key None unknown 0 payload \"ACK sip:x SIP/2.0\\r\\n\\r\\n\"",
    );
    check(
        &v2_packet(1, true),
        "V1 2001:db8::1:5060 -> 2001:db8::2:5080 proto Some(17) type Some(Sip) agent None ts None key None unknown 0 \
         payload \"ACK sip:x SIP/2.0\\r\\n\\r\\n\"",
    );
    check(&v2_packet(2, false)[..20], "error: hep: truncated at offset 16: needs 12 bytes, 4 available");
    let mut bad_family = v2_packet(2, false);
    bad_family[2] = 7;
    check(&bad_family, "error: hep: invalid ip family at offset 2: neither 2 (IPv4) nor 10 (IPv6)");
    check(&[9, 0, 2], "error: hep: invalid version at offset 0: neither HEP3 nor 1 or 2");
}

#[test]
fn tcp_framing_cuts_packets_by_their_length() {
    let one = sip_packet();
    let two = [one.clone(), one.clone()].concat();
    assert_eq!(frame_packet(&two).unwrap(), Framing::Message(one.len()));
    assert_eq!(frame_packet(&one[..10]).unwrap(), Framing::NeedMore);
    assert_eq!(frame_packet(b"HE").unwrap(), Framing::NeedMore);
    assert_eq!(frame_packet(b"").unwrap(), Framing::NeedMore);
    assert_eq!(frame_packet(b"GET / HTTP/1.1").unwrap_err().to_string(), "hep: invalid magic at offset 0: not HEP3");
    assert_eq!(frame_packet(b"X").unwrap_err().to_string(), "hep: invalid magic at offset 0: not HEP3");
}

/// The HEP packets of a capture: (frame number, UDP payload).
fn hep_datagrams(path: &Path) -> Vec<(u64, Vec<u8>)> {
    let mut reader = CaptureReader::open(path).unwrap();
    let mut out = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        if let Transport::Udp { payload, .. } = decode_frame(frame.link_type, frame.data).transport {
            out.push((frame.number, payload.to_vec()));
        }
    }
    out
}

/// One row of the corpus's chunk table, as `hep-decode-local/*.tsv` writes it.
fn row(frame: u64, p: &HepPacket<'_>, chunks: &[u16]) -> String {
    let mut s = String::new();
    let kinds: Vec<String> = chunks.iter().map(|k| k.to_string()).collect();
    let addr = |ip: Option<IpAddr>, port: Option<u16>| format!("{}:{}", ip.unwrap(), port.unwrap());
    let payload = p.payload_bytes().unwrap();
    let first_line = payload.split(|&b| b == b'\n').next().unwrap_or_default();
    let first_line = String::from_utf8_lossy(first_line.strip_suffix(b"\r").unwrap_or(first_line));
    let text = |v: Option<&[u8]>| v.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
    write!(
        s,
        "{frame}\t3\t{}\t{}\t{}\t{}\t{}\t{}\t{}.{:06}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        p.length,
        kinds.join(","),
        p.ip_family.unwrap(),
        p.ip_proto.unwrap(),
        addr(p.src_ip, p.src_port),
        addr(p.dst_ip, p.dst_port),
        p.ts_sec.unwrap(),
        p.ts_usec.unwrap(),
        p.proto_type.unwrap(),
        p.capture_id.unwrap(),
        text(p.auth_key),
        text(p.correlation_id),
        match p.payload {
            Some(Payload::Zlib(_)) => "0x0010(zlib)",
            _ => "0x000f",
        },
        payload.len(),
        first_line,
    )
    .unwrap();
    s
}

/// Rebuilds a packet from its decoded fields, chunk by chunk in the order it came in.
fn rebuild(p: &HepPacket<'_>, chunks: &[u16]) -> Vec<u8> {
    let mut b = Hep3Builder::new();
    for &kind in chunks {
        b = match kind {
            chunk::IP_FAMILY => b.ip_family(p.ip_family.unwrap()),
            chunk::IP_PROTO => b.ip_proto(p.ip_proto.unwrap()),
            chunk::IPV4_SRC | chunk::IPV6_SRC => b.src_ip(p.src_ip.unwrap()),
            chunk::IPV4_DST | chunk::IPV6_DST => b.dst_ip(p.dst_ip.unwrap()),
            chunk::SRC_PORT => b.src_port(p.src_port.unwrap()),
            chunk::DST_PORT => b.dst_port(p.dst_port.unwrap()),
            chunk::TS_SEC => b.ts_sec(p.ts_sec.unwrap()),
            chunk::TS_USEC => b.ts_usec(p.ts_usec.unwrap()),
            chunk::PROTO_TYPE => b.proto_type(p.proto().unwrap()),
            chunk::CAPTURE_ID => b.capture_id(p.capture_id.unwrap()),
            chunk::AUTH_KEY => b.auth_key(p.auth_key.unwrap()),
            chunk::CORRELATION_ID => b.correlation_id(p.correlation_id.unwrap()),
            chunk::PAYLOAD | chunk::COMPRESSED_PAYLOAD => match p.payload.unwrap() {
                Payload::Plain(x) => b.payload(x),
                Payload::Zlib(x) => b.compressed_payload(x),
            },
            other => panic!("no builder method for chunk {other}"),
        };
    }
    b.build()
}

#[test]
fn corpus_hep3_captures_match_their_chunk_table_and_the_builder_rebuilds_them_byte_for_byte() {
    let Some(corpus) = corpus_dir() else { return };
    let dir = corpus.join("public/hep-wireshark");
    for name in ["hep.pcap", "hep3_compressed.pcap.pcapng"] {
        let table = std::fs::read_to_string(dir.join("expected/hep-decode-local").join(format!("{name}.tsv"))).unwrap();
        // The table's rows without their outer addresses (columns 2 and 3), which are the
        // capture's, not HEP's.
        let expected: Vec<String> = table
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("frame"))
            .map(|l| {
                let cols: Vec<&str> = l.split('\t').collect();
                [&cols[..1], &cols[3..]].concat().join("\t")
            })
            .collect();
        let mut got = Vec::new();
        for (frame, bytes) in hep_datagrams(&dir.join(name)) {
            let p = HepPacket::parse(&bytes).unwrap_or_else(|e| panic!("{name} frame {frame}: {e}"));
            let chunks: Vec<u16> = Chunks::new(&bytes).map(|c| c.unwrap().kind).collect();
            got.push(row(frame, &p, &chunks));
            assert_eq!(rebuild(&p, &chunks), bytes, "{name} frame {frame}: rebuilt packet differs");
        }
        assert_eq!(got, expected, "{name}");
    }
}
