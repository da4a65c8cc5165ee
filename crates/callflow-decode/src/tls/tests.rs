//! Tests of the record layer and the hellos.

use super::*;

fn record(t: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![t, 3, 3];
    r.extend_from_slice(&(body.len() as u16).to_be_bytes());
    r.extend_from_slice(body);
    r
}

fn handshake(t: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![t, 0, (body.len() >> 8) as u8, body.len() as u8];
    m.extend_from_slice(body);
    m
}

fn ext(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut e = kind.to_be_bytes().to_vec();
    e.extend_from_slice(&(data.len() as u16).to_be_bytes());
    e.extend_from_slice(data);
    e
}

fn sni(name: &str) -> Vec<u8> {
    let mut entry = vec![0];
    entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
    entry.extend_from_slice(name.as_bytes());
    let mut list = (entry.len() as u16).to_be_bytes().to_vec();
    list.extend_from_slice(&entry);
    ext(0, &list)
}

/// A ClientHello body: random 0x11.., session id of `sid`, two suites, the extensions.
fn client_hello(sid: &[u8], exts: &[Vec<u8>]) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&[0x11; 32]);
    b.push(sid.len() as u8);
    b.extend_from_slice(sid);
    b.extend_from_slice(&[0, 4, 0x13, 0x01, 0xc0, 0x2f, 1, 0]);
    let all: Vec<u8> = exts.concat();
    b.extend_from_slice(&(all.len() as u16).to_be_bytes());
    b.extend_from_slice(&all);
    b
}

fn server_hello(random: [u8; 32], suite: u16, exts: &[Vec<u8>]) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&random);
    b.push(0);
    b.extend_from_slice(&suite.to_be_bytes());
    b.push(0);
    let all: Vec<u8> = exts.concat();
    b.extend_from_slice(&(all.len() as u16).to_be_bytes());
    b.extend_from_slice(&all);
    b
}

#[test]
fn records_in_a_buffer_then_the_truncated_tail() {
    let mut buf = record(22, &handshake(1, b"abc"));
    buf.extend(record(20, &[1]));
    buf.extend(record(23, &[0xaa; 10]));
    let whole = buf.len();
    buf.extend(&record(23, &[0xbb; 10])[..9]);
    let got: Vec<_> = records(&buf).collect();
    assert_eq!(got.len(), 4);
    let types: Vec<_> = got[..3].iter().map(|r| r.as_ref().unwrap().content_type).collect();
    assert_eq!(types, [ContentType::Handshake, ContentType::ChangeCipherSpec, ContentType::ApplicationData]);
    assert_eq!(got[2].as_ref().unwrap().fragment, &[0xaa; 10]);
    assert_eq!(got[3], Err(DecodeError::truncated(Layer::Tls, whole + 5, 10, 4)));
    // A cut header.
    assert_eq!(records(&buf[..3]).collect::<Vec<_>>(), [Err(DecodeError::truncated(Layer::Tls, 0, 5, 3))]);
    assert_eq!(records(&[]).count(), 0);
}

#[test]
fn damaged_headers_are_invalid() {
    let check = |header: &[u8], field: &'static str| {
        assert!(
            matches!(Record::parse(header), Err(DecodeError::Invalid { field: f, .. }) if f == field),
            "{header:?}"
        );
        assert_eq!(frame_record(header), Framing::Skip(header.len()));
    };
    check(&[25, 3, 3, 0, 1, 0], "content type");
    check(&[23, 2, 0, 0, 1, 0], "version");
    check(&[23, 3, 5, 0, 1, 0], "version");
    check(&[23, 3, 3, 0x48, 0x01, 0], "length");
}

#[test]
fn framing_a_stream_of_records() {
    let r = record(23, &[1, 2, 3]);
    assert_eq!(frame_record(&r[..4]), Framing::NeedMore);
    assert_eq!(frame_record(&r[..7]), Framing::NeedMore);
    assert_eq!(frame_record(&r), Framing::Message(8));
    let (parsed, len) = Record::parse(&r).unwrap();
    assert_eq!((parsed.header(), len), ([23, 3, 3, 0, 3], 8));
}

#[test]
fn connections_that_start_with_tls() {
    let hello = record(22, &handshake(1, &client_hello(&[], &[])));
    assert!(starts_tls(&hello));
    assert!(starts_tls(&record(23, &[1; 40])));
    assert!(!starts_tls(&record(22, &handshake(11, b"cert"))));
    assert!(!starts_tls(b"INVITE sip:a SIP/2.0\r\n"));
    assert!(!starts_tls(&[22, 3]));
}

#[test]
fn client_hello_fields() {
    let versions = ext(43, &[4, 3, 4, 3, 3]);
    let body =
        client_hello(&[7; 32], &[sni("sip.example.com"), versions, ext(51, &[0, 0]), ext(22, &[]), ext(35, &[])]);
    let msg = handshake(1, &body);
    let (m, len) = handshake_message(&msg).unwrap();
    assert_eq!((m.msg_type, len), (HANDSHAKE_CLIENT_HELLO, msg.len()));
    let hello = ClientHello::parse(m.body).unwrap();
    assert_eq!(hello.random, &[0x11; 32]);
    assert_eq!(hello.session_id, &[7; 32]);
    assert_eq!(hello.cipher_suites, &[0x13, 0x01, 0xc0, 0x2f]);
    assert_eq!(hello.extensions.server_name, Some("sip.example.com"));
    assert!(hello.offers_tls13() && hello.extensions.key_share && hello.extensions.encrypt_then_mac);
    assert_eq!(hello.extensions.session_ticket, Some(&[][..]));
    assert!(!hello.extensions.pre_shared_key && !hello.extensions.extended_master_secret);
    // Without extensions at all (an SSL 3.0-style hello).
    let mut bare = client_hello(&[], &[]);
    bare.truncate(bare.len() - 2);
    let hello = ClientHello::parse(&bare).unwrap();
    assert_eq!((hello.extensions, hello.offers_tls13()), (HelloExtensions::default(), false));
}

#[test]
fn server_hello_version_and_retry() {
    let bodies = [
        server_hello([9; 32], 0x1302, &[ext(43, &[3, 4]), ext(51, &[0, 29, 0, 0])]),
        server_hello([9; 32], 0xc02f, &[ext(23, &[])]),
        server_hello(HELLO_RETRY_RANDOM, 0x1301, &[ext(43, &[3, 4])]),
    ];
    let tls13 = ServerHello::parse(&bodies[0]).unwrap();
    assert_eq!((tls13.version(), tls13.cipher_suite, tls13.extensions.key_share), (0x0304, 0x1302, true));
    assert!(!tls13.is_retry_request());
    let tls12 = ServerHello::parse(&bodies[1]).unwrap();
    assert_eq!((tls12.version(), tls12.extensions.extended_master_secret), (0x0303, true));
    let retry = ServerHello::parse(&bodies[2]).unwrap();
    assert!(retry.is_retry_request());
    assert_eq!(version_name(tls13.version()), Some("TLS 1.3"));
}

#[test]
fn truncated_hellos_say_where() {
    let body = client_hello(&[], &[sni("a")]);
    for cut in [0, 1, 20, 34, 36, 40, body.len() - 1] {
        assert!(
            matches!(ClientHello::parse(&body[..cut]), Err(DecodeError::Truncated { layer: Layer::Tls, .. })),
            "cut {cut}"
        );
    }
    let sh = server_hello([1; 32], 0x1301, &[]);
    assert!(ServerHello::parse(&sh[..37]).is_err());
    // A handshake message spanning records: the length it needs.
    let msg = handshake(2, &sh);
    assert_eq!(handshake_message(&msg[..10]), Err(DecodeError::truncated(Layer::Tls, 4, sh.len(), 6)));
    let two = [handshake(20, &[1; 12]), handshake(24, &[0])].concat();
    let types: Vec<_> = handshake_messages(&two).map(|m| m.unwrap().msg_type).collect();
    assert_eq!(types, [HANDSHAKE_FINISHED, HANDSHAKE_KEY_UPDATE]);
}
