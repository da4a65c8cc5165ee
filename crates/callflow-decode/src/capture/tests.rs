//! Tests of the capture reader: captures built in memory, read every way a capture can arrive.

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

// ---- Writers for test captures ----

fn put16(out: &mut Vec<u8>, v: u16, big: bool) {
    out.extend_from_slice(&if big { v.to_be_bytes() } else { v.to_le_bytes() });
}

fn put32(out: &mut Vec<u8>, v: u32, big: bool) {
    out.extend_from_slice(&if big { v.to_be_bytes() } else { v.to_le_bytes() });
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn pcap_header(big: bool, nsec: bool, link: u32) -> Vec<u8> {
    let mut out = Vec::new();
    put32(&mut out, if nsec { 0xA1B2_3C4D } else { 0xA1B2_C3D4 }, big);
    put16(&mut out, 2, big);
    put16(&mut out, 4, big);
    put32(&mut out, 0, big); // thiszone
    put32(&mut out, 0, big); // sigfigs
    put32(&mut out, 65535, big); // snaplen
    put32(&mut out, link, big);
    out
}

fn pcap_record(big: bool, secs: u32, frac: u32, data: &[u8], orig: u32) -> Vec<u8> {
    let mut out = Vec::new();
    put32(&mut out, secs, big);
    put32(&mut out, frac, big);
    put32(&mut out, data.len() as u32, big);
    put32(&mut out, orig, big);
    out.extend_from_slice(data);
    out
}

/// A pcap file with records `(secs, fraction, data)`, each with an original length 2 more
/// than captured (so the two are told apart).
fn pcap(big: bool, nsec: bool, link: u32, records: &[(u32, u32, &[u8])]) -> Vec<u8> {
    let mut out = pcap_header(big, nsec, link);
    for &(secs, frac, data) in records {
        out.extend(pcap_record(big, secs, frac, data, data.len() as u32 + 2));
    }
    out
}

fn block(big: bool, block_type: u32, body: &[u8]) -> Vec<u8> {
    let mut padded = body.to_vec();
    pad4(&mut padded);
    let total = 12 + padded.len() as u32;
    let mut out = Vec::new();
    put32(&mut out, block_type, big);
    put32(&mut out, total, big);
    out.extend(padded);
    put32(&mut out, total, big);
    out
}

fn options(big: bool, opts: &[(u16, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(code, value) in opts {
        put16(&mut out, code, big);
        put16(&mut out, value.len() as u16, big);
        out.extend_from_slice(value);
        pad4(&mut out);
    }
    if !opts.is_empty() {
        out.extend([0, 0, 0, 0]);
    }
    out
}

fn shb(big: bool) -> Vec<u8> {
    let mut body = Vec::new();
    put32(&mut body, 0x1A2B_3C4D, big);
    put16(&mut body, 1, big);
    put16(&mut body, 0, big);
    body.extend([0xff; 8]); // section length: unknown
    body.extend(options(big, &[(4, b"callflow test")])); // shb_userappl
    block(big, PCAPNG_SHB, &body)
}

fn idb(big: bool, link: u16, snaplen: u32, opts: &[(u16, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    put16(&mut body, link, big);
    put16(&mut body, 0, big);
    put32(&mut body, snaplen, big);
    body.extend(options(big, opts));
    block(big, PCAPNG_IDB, &body)
}

fn epb(big: bool, interface: u32, units: u64, data: &[u8]) -> Vec<u8> {
    epb_with(big, interface, units, data, data.len() as u32 + 2, &[])
}

fn epb_with(big: bool, interface: u32, units: u64, data: &[u8], orig: u32, opts: &[(u16, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    put32(&mut body, interface, big);
    put32(&mut body, (units >> 32) as u32, big);
    put32(&mut body, units as u32, big);
    put32(&mut body, data.len() as u32, big);
    put32(&mut body, orig, big);
    body.extend_from_slice(data);
    pad4(&mut body);
    body.extend(options(big, opts));
    block(big, PCAPNG_EPB, &body)
}

fn opb(big: bool, interface: u16, units: u64, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    put16(&mut body, interface, big);
    put16(&mut body, 0, big); // drops
    put32(&mut body, (units >> 32) as u32, big);
    put32(&mut body, units as u32, big);
    put32(&mut body, data.len() as u32, big);
    put32(&mut body, data.len() as u32, big);
    body.extend_from_slice(data);
    block(big, PCAPNG_OPB, &body)
}

fn spb(big: bool, orig: u32, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    put32(&mut body, orig, big);
    body.extend_from_slice(data);
    block(big, PCAPNG_SPB, &body)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

// ---- Reading every way ----

/// A reader that hands out a few bytes at a time and is interrupted now and then, to drive
/// the stream buffer through every refill path.
struct Trickle {
    inner: Cursor<Vec<u8>>,
    calls: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.calls.is_multiple_of(5) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
        }
        let n = buf.len().min(self.calls % 4 + 1);
        self.inner.read(&mut buf[..n])
    }
}

/// A reader that yields `data` and then fails.
struct Failing(Cursor<Vec<u8>>);

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf)? {
            0 => Err(io::Error::other("boom")),
            n => Ok(n),
        }
    }
}

/// One line per frame: number, interface, link type, timestamp (ns), data in hex,
/// captured/original length; then `error: ...` if reading stopped with an error.
fn summary(reader: &mut CaptureReader) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        match reader.next_frame() {
            Ok(Some(f)) => {
                let hex: String = f.data.iter().map(|b| format!("{b:02x}")).collect();
                lines.push(format!(
                    "#{} if{} {} {} {hex} {}/{}",
                    f.number,
                    f.interface,
                    f.link_type,
                    f.ts.as_nanos(),
                    f.data.len(),
                    f.orig_len
                ));
            }
            Ok(None) => break,
            Err(e) => {
                lines.push(format!("error: {e}"));
                break;
            }
        }
    }
    assert!(matches!(reader.next_frame(), Ok(None)), "reading goes on after the end or an error");
    lines
}

fn open_result(r: Result<CaptureReader, CaptureError>) -> Vec<String> {
    match r {
        Ok(mut reader) => summary(&mut reader),
        Err(e) => vec![format!("open error: {e}")],
    }
}

static TEMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A file in the temp directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(bytes: &[u8]) -> TempFile {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("callflow-capture-test-{}-{n}.bin", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reads `bytes` every way a capture can arrive, plain and gzip-compressed, and returns the
/// summary each way gave, labelled.
fn read_every_way(bytes: &[u8]) -> Vec<(&'static str, Vec<String>)> {
    let gz = gzip(bytes);
    let plain_file = TempFile::new(bytes);
    let gz_file = TempFile::new(&gz);
    let tiny_stream = |b: &[u8]| {
        let stream = Stream::with_read_size(Box::new(Cursor::new(b.to_vec())), false, 7);
        CaptureReader::from_input(Input::Stream(stream), None, false)
    };
    vec![
        ("from_bytes", open_result(CaptureReader::from_bytes(bytes.to_vec()))),
        ("from_bytes gzip", open_result(CaptureReader::from_bytes(gz.clone()))),
        ("from_reader", open_result(CaptureReader::from_reader(Box::new(Cursor::new(bytes.to_vec()))))),
        ("from_reader gzip", open_result(CaptureReader::from_reader(Box::new(Cursor::new(gz.clone()))))),
        (
            "from_reader trickle",
            open_result(CaptureReader::from_reader(Box::new(Trickle { inner: Cursor::new(bytes.to_vec()), calls: 0 }))),
        ),
        (
            "from_reader trickle gzip",
            open_result(CaptureReader::from_reader(Box::new(Trickle { inner: Cursor::new(gz.clone()), calls: 0 }))),
        ),
        ("tiny stream buffer", open_result(tiny_stream(bytes))),
        ("open", open_result(CaptureReader::open(&plain_file.0))),
        ("open gzip", open_result(CaptureReader::open(&gz_file.0))),
    ]
}

/// Checks that every way of reading `bytes` gives `expected`.
#[track_caller]
fn check(bytes: &[u8], expected: &[&str]) {
    for (how, got) in read_every_way(bytes) {
        assert_eq!(got, expected, "read by {how}");
    }
}

/// The whole summary of the reader over `bytes` (from_bytes only).
fn read(bytes: Vec<u8>) -> Vec<String> {
    open_result(CaptureReader::from_bytes(bytes))
}

const SEC: i64 = 1_000_000_000;

// ---- pcap ----

#[test]
fn pcap_little_endian_microseconds() {
    let file = pcap(false, false, 1, &[(1, 500_000, b"\xaa\xbb"), (2, 1, b"\xcc")]);
    check(
        &file,
        &[
            &format!("#1 if0 ETHERNET {} aabb 2/4", SEC + SEC / 2),
            &format!("#2 if0 ETHERNET {} cc 1/3", 2 * SEC + 1000),
        ],
    );
}

#[test]
fn pcap_big_endian_microseconds() {
    let file = pcap(true, false, 113, &[(1_700_000_000, 999_999, b"\x01\x02\x03")]);
    check(&file, &[&format!("#1 if0 LINUX_SLL {} 010203 3/5", 1_700_000_000 * SEC + 999_999_000)]);
}

#[test]
fn pcap_nanoseconds_both_byte_orders() {
    for big in [false, true] {
        let file = pcap(big, true, 101, &[(3, 123_456_789, b"\x45")]);
        check(&file, &[&format!("#1 if0 RAW {} 45 1/3", 3 * SEC + 123_456_789)]);
        let reader = CaptureReader::from_bytes(file).unwrap();
        assert_eq!(reader.format(), CaptureFormat::Pcap { nanosecond: true, big_endian: big, gzip: false });
        assert_eq!(reader.format().name(), "pcap-ns");
    }
}

#[test]
fn pcap_empty_of_records_has_no_frames_but_a_link_type() {
    check(&pcap(false, false, 239, &[]), &[]);
    let reader = CaptureReader::from_bytes(pcap(false, false, 239, &[])).unwrap();
    assert_eq!(reader.link_types(), &[LinkType::NFLOG]);
}

#[test]
fn pcap_link_type_keeps_only_the_link_type_bits() {
    // The upper bits of the field carry the FCS length, not the link type.
    let reader = CaptureReader::from_bytes(pcap(false, false, 0x1000_0001, &[])).unwrap();
    assert_eq!(reader.link_types(), &[LinkType::ETHERNET]);
}

#[test]
fn pcap_microsecond_fraction_out_of_range_carries_into_seconds() {
    let file = pcap(false, false, 1, &[(1, 1_500_000, b"")]);
    check(&file, &[&format!("#1 if0 ETHERNET {}  0/2", 2 * SEC + SEC / 2)]);
}

/// A pcap file of format version 2.`minor` whose one record has its length fields written
/// as (`first`, `second`) around `data`.
fn old_pcap(minor: u16, first: u32, second: u32, data: &[u8]) -> Vec<u8> {
    let mut file = pcap_header(false, false, 1);
    file[6..8].copy_from_slice(&minor.to_le_bytes());
    for v in [1, 0, first, second] {
        put32(&mut file, v, false);
    }
    file.extend_from_slice(data);
    file
}

#[test]
fn pcap_before_version_2_3_has_its_record_lengths_swapped_as_libpcap_reads_them() {
    // nDPI's fuzz-2021-10-13.pcap (version 2.0) has 524501 where the captured length
    // is expected: read the other way round, as libpcap does, its record is a 3-byte frame.
    check(&old_pcap(0, 524_501, 3, b"\x01\x02\x03"), &[&format!("#1 if0 ETHERNET {SEC} 010203 3/524501")]);
    // Version 2.3: swapped only when the captured length is the larger.
    check(&old_pcap(3, 9, 3, b"\x01\x02\x03"), &[&format!("#1 if0 ETHERNET {SEC} 010203 3/9")]);
    check(&old_pcap(3, 3, 9, b"\x01\x02\x03"), &[&format!("#1 if0 ETHERNET {SEC} 010203 3/9")]);
}

#[test]
fn pcap_caplen_over_the_bound_is_corrupt() {
    let mut file = pcap(false, false, 1, &[(1, 0, b"\x01")]);
    let mut header = Vec::new();
    put32(&mut header, 2, false);
    put32(&mut header, 0, false);
    put32(&mut header, MAX_CAPLEN + 1, false);
    put32(&mut header, MAX_CAPLEN + 1, false);
    file.extend(header);
    check(
        &file,
        &[
            &format!("#1 if0 ETHERNET {SEC} 01 1/3"),
            "error: corrupt capture: record at offset 41: captured length 262145 exceeds the 262144-byte bound",
        ],
    );
}

#[test]
fn pcap_caplen_over_snaplen_but_within_the_bound_is_accepted() {
    let data = vec![0x5a; MAX_CAPLEN as usize];
    let file = cat(&[pcap_header(false, false, 1), pcap_record(false, 0, 0, &data, MAX_CAPLEN)]);
    for (how, reader) in [
        ("bytes", CaptureReader::from_bytes(file.clone())),
        ("stream", CaptureReader::from_reader(Box::new(Cursor::new(file.clone())))),
    ] {
        let mut reader = reader.unwrap();
        let frame = reader.next_frame().unwrap().unwrap();
        assert_eq!(frame.data, &data[..], "{how}");
        assert!(reader.next_frame().unwrap().is_none(), "{how}");
    }
}

#[test]
fn pcap_cut_mid_record_returns_the_frames_before_then_truncated() {
    let file = pcap(false, false, 1, &[(1, 0, b"\x01\x02"), (2, 0, b"\x03\x04\x05\x06")]);
    // Header 24, first record 16 + 2 = 18, so the second record starts at 42 and needs 20.
    assert_eq!(file.len(), 62);
    let first = format!("#1 if0 ETHERNET {SEC} 0102 2/4");
    check(&file[..60], &[&first, "error: capture truncated: record at offset 42 needs 20 bytes, 18 available"]);
    check(&file[..50], &[&first, "error: capture truncated: record at offset 42 needs 16 bytes, 8 available"]);
    check(&file[..43], &[&first, "error: capture truncated: record at offset 42 needs 16 bytes, 1 available"]);
    check(&file[..42], &[&first]);
    check(&file[..30], &["error: capture truncated: record at offset 24 needs 16 bytes, 6 available"]);
    check(&file[..41], &["error: capture truncated: record at offset 24 needs 18 bytes, 17 available"]);
    check(&file[..24], &[]);
}

#[test]
fn short_headers_are_truncated() {
    check(&file_prefix(10), &["open error: capture truncated: record at offset 0 needs 24 bytes, 10 available"]);
    check(&[0xd4, 0xc3, 0xb2], &["open error: capture truncated: record at offset 0 needs 4 bytes, 3 available"]);
    check(
        &[0x0a, 0x0d, 0x0d, 0x0a, 0x10],
        &["open error: capture truncated: record at offset 0 needs 12 bytes, 5 available"],
    );
}

fn file_prefix(n: usize) -> Vec<u8> {
    pcap_header(false, false, 1)[..n].to_vec()
}

// ---- not a capture ----

#[test]
fn bad_magic_message_is_exact() {
    check(b"<html><body>nope</body></html>", &["open error: not a capture file: bad magic 0x3c68746d at offset 0"]);
    let err = CaptureReader::from_bytes(b"<htm".to_vec()).unwrap_err();
    assert!(matches!(err, CaptureError::NotACapture { magic: 0x3c68_746d, offset: 0 }));
}

#[test]
fn empty_input_is_named_empty() {
    // `check` would also gzip it: an empty gzip member decompresses to nothing, which is empty too.
    check(b"", &["open error: not a capture file: empty"]);
    assert!(matches!(CaptureReader::from_bytes(Vec::new()), Err(CaptureError::Empty)));
}

#[test]
fn missing_file_is_io() {
    let err = CaptureReader::open("/nonexistent/callflow/capture.pcap").unwrap_err();
    assert!(matches!(err, CaptureError::Io(_)), "{err:?}");
    assert!(err.to_string().starts_with("I/O error: "), "{err}");
}

#[test]
fn gzip_that_is_not_deflate_is_io_with_the_offset() {
    let mut bytes = gzip(&pcap(false, false, 1, &[(1, 0, b"\x01")]));
    // Damage the deflate stream right after the 10-byte gzip header.
    for b in bytes.iter_mut().skip(10).take(8) {
        *b = 0xff;
    }
    let got = read(bytes);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("open error: I/O error: decompressing the capture failed at offset 0 "), "{got:?}");
}

// ---- pcapng ----

#[test]
fn pcapng_two_interfaces_with_their_own_link_types_and_resolutions() {
    for big in [false, true] {
        let file = cat(&[
            shb(big),
            // Ethernet, default resolution (microseconds).
            idb(big, 1, 65535, &[(2, b"eth0")]),
            // Raw IP, nanoseconds (10^-9), with an offset of 10 seconds.
            idb(big, 101, 0, &[(9, &[9]), (14, &if big { 10u64.to_be_bytes() } else { 10u64.to_le_bytes() })]),
            // Linux cooked v2, 2^-10 second units.
            idb(big, 276, 0, &[(9, &[0x8a])]),
            epb(big, 0, 1_500_000, b"\x01"),
            epb(big, 1, 2 * SEC as u64 + 7, b"\x02\x03"),
            epb(big, 2, 3 * 1024 + 512, b"\x04\x05\x06\x07\x08"),
            epb(big, 0, 5_000_001, b""),
        ]);
        check(
            &file,
            &[
                &format!("#1 if0 ETHERNET {} 01 1/3", SEC + SEC / 2),
                &format!("#2 if1 RAW {} 0203 2/4", 12 * SEC + 7),
                &format!("#3 if2 LINUX_SLL2 {} 0405060708 5/7", 3 * SEC + SEC / 2),
                &format!("#4 if0 ETHERNET {}  0/2", 5 * SEC + 1000),
            ],
        );
        let mut reader = CaptureReader::from_bytes(file).unwrap();
        assert_eq!(reader.format(), CaptureFormat::PcapNg { big_endian: big, gzip: false });
        assert_eq!(reader.link_types(), &[] as &[LinkType], "nothing read yet");
        while reader.next_frame().unwrap().is_some() {}
        assert_eq!(reader.link_types(), &[LinkType::ETHERNET, LinkType::RAW, LinkType::LINUX_SLL2]);
    }
}

#[test]
fn pcapng_link_types_are_distinct() {
    let file = cat(&[shb(false), idb(false, 1, 0, &[]), idb(false, 113, 0, &[]), idb(false, 1, 0, &[])]);
    let mut reader = CaptureReader::from_bytes(file).unwrap();
    assert!(reader.next_frame().unwrap().is_none());
    assert_eq!(reader.link_types(), &[LinkType::ETHERNET, LinkType::LINUX_SLL]);
}

#[test]
fn tsresol_conversions() {
    assert_eq!(TsResol::Pow10(6).to_nanos(1_000_001), 1_000_001_000);
    assert_eq!(TsResol::Pow10(0).to_nanos(2), 2 * 1_000_000_000);
    assert_eq!(TsResol::Pow10(12).to_nanos(1_234_567_890_123), 1_234_567_890);
    assert_eq!(TsResol::Pow10(127).to_nanos(u64::MAX), 0);
    assert_eq!(TsResol::Pow2(0).to_nanos(3), 3 * 1_000_000_000);
    assert_eq!(TsResol::Pow2(1).to_nanos(3), 1_500_000_000);
    assert_eq!(TsResol::Pow2(30).to_nanos(1 << 30), 1_000_000_000);
    assert_eq!(TsResol::Pow2(127).to_nanos(u64::MAX), 0);
    assert_eq!(TsResol::from_option(0x89), TsResol::Pow2(9));
    assert_eq!(TsResol::from_option(9), TsResol::Pow10(9));
}

#[test]
fn pcapng_simple_packet_block_uses_interface_0_snaplen_and_previous_timestamp() {
    let file = cat(&[
        shb(false),
        idb(false, 1, 4, &[]),
        spb(false, 6, b"\x01\x02\x03\x04\x05\x06"),
        epb(false, 0, 2_000_000, b"\x07"),
        spb(false, 2, b"\x08\x09"),
        // The block holds fewer bytes than the original length: only those are captured.
        spb(false, 100, b"\x0a"),
    ]);
    check(
        &file,
        &[
            "#1 if0 ETHERNET 0 01020304 4/6",
            &format!("#2 if0 ETHERNET {} 07 1/3", 2 * SEC),
            &format!("#3 if0 ETHERNET {} 0809 2/2", 2 * SEC),
            // Padding is part of the block; the data is bounded by the block, not by padding.
            &format!("#4 if0 ETHERNET {} 0a000000 4/100", 2 * SEC),
        ],
    );
}

#[test]
fn pcapng_simple_packet_block_without_interface_is_corrupt() {
    let file = cat(&[shb(false), spb(false, 1, b"\x01")]);
    let at = shb(false).len();
    check(
        &file,
        &[&format!(
            "error: corrupt capture: record at offset {at}: simple packet block before any interface description"
        )],
    );
}

#[test]
fn pcapng_obsolete_packet_block() {
    let file = cat(&[shb(true), idb(true, 0, 0, &[]), idb(true, 108, 0, &[]), opb(true, 1, 42, b"\x02\x00\x00\x00")]);
    check(&file, &[&format!("#1 if1 LOOP {} 02000000 4/4", 42_000)]);
}

#[test]
fn pcapng_unknown_blocks_and_options_are_skipped() {
    let mut isb_body = Vec::new();
    put32(&mut isb_body, 0, false);
    isb_body.extend([0; 8]);
    let file = cat(&[
        shb(false),
        block(false, 0x0000_0BAD, b"custom block"),
        idb(false, 1, 0, &[(1, b"a comment"), (0x1234, b"unknown option"), (9, b"too long for tsresol")]),
        block(false, 4, b"\x01\x00\x04\x00\x0a\x00\x00\x01\x00\x00\x00\x00"), // name resolution
        epb_with(false, 0, 1, b"\x01\x02\x03", 3, &[(1, b"packet comment"), (2, &[0; 4])]),
        block(false, 5, &isb_body),            // interface statistics
        block(false, 0x0000_000A, b"secrets"), // decryption secrets
        block(false, 0x4000_0BAD, b""),
        epb(false, 0, 2, b"\x04"),
    ]);
    check(&file, &["#1 if0 ETHERNET 1000 010203 3/3", "#2 if0 ETHERNET 2000 04 1/3"]);
}

#[test]
fn pcapng_malformed_interface_options_end_the_option_list_only() {
    // An option claiming 200 bytes in a short block: the interface is still described.
    let mut body = Vec::new();
    put16(&mut body, 1, false);
    put16(&mut body, 0, false);
    put32(&mut body, 0, false);
    put16(&mut body, 9, false);
    put16(&mut body, 200, false);
    body.extend([9, 0, 0, 0]);
    let file = cat(&[shb(false), block(false, PCAPNG_IDB, &body), epb(false, 0, 3, b"\x01")]);
    check(&file, &["#1 if0 ETHERNET 3000 01 1/3"]);
}

#[test]
fn pcapng_sections_may_change_byte_order_and_reset_interfaces() {
    let file = cat(&[
        shb(false),
        idb(false, 1, 0, &[]),
        idb(false, 1, 0, &[]),
        epb(false, 1, 1, b"\x01"),
        shb(true),
        idb(true, 229, 0, &[(9, &[3])]),
        epb(true, 0, 5, b"\x02"),
        // Interface 1 belonged to the first section.
        epb(true, 1, 5, b"\x03"),
    ]);
    let offset = file.len() - epb(true, 1, 5, b"\x03").len();
    check(
        &file,
        &[
            "#1 if1 ETHERNET 1000 01 1/3",
            &format!("#2 if0 IPV6 {} 02 1/3", 5_000_000),
            &format!("error: corrupt capture: record at offset {offset}: packet on undescribed interface 1"),
        ],
    );
    let mut reader = CaptureReader::from_bytes(file).unwrap();
    while let Ok(Some(_)) = reader.next_frame() {}
    assert_eq!(reader.link_types(), &[LinkType::ETHERNET, LinkType::IPV6]);
}

#[test]
fn pcapng_bad_block_lengths_are_corrupt() {
    let good = cat(&[shb(false), idb(false, 1, 0, &[]), epb(false, 0, 1, b"\x01")]);
    let at = good.len();
    let first = "#1 if0 ETHERNET 1000 01 1/3";
    let with_header = |block_type: u32, len: u32| {
        let mut file = good.clone();
        put32(&mut file, block_type, false);
        put32(&mut file, len, false);
        file.extend([0; 32]);
        file
    };
    check(
        &with_header(6, 8),
        &[first, &format!("error: corrupt capture: record at offset {at}: pcapng block length 8 is less than 12")],
    );
    check(
        &with_header(6, 30),
        &[
            first,
            &format!("error: corrupt capture: record at offset {at}: pcapng block length 30 is not a multiple of 4"),
        ],
    );
    check(
        &with_header(6, MAX_BLOCK_LEN + 4),
        &[
            first,
            &format!("error: corrupt capture: record at offset {at}: pcapng block length 16777220 exceeds the 16777216-byte bound"),
        ],
    );
    // The trailing copy of the length must agree.
    check(
        &with_header(0x0BAD, 16),
        &[first, &format!("error: corrupt capture: record at offset {at}: pcapng block length 16 does not match the trailing length 0")],
    );
    // A block longer than the rest of the file is truncated.
    check(
        &with_header(0x0BAD, 64),
        &[first, &format!("error: capture truncated: record at offset {at} needs 64 bytes, 40 available")],
    );
}

#[test]
fn pcapng_bad_packet_blocks_are_corrupt() {
    let head = cat(&[shb(false), idb(false, 1, 0, &[])]);
    let at = head.len();
    let mut over = cat(&[head.clone(), epb(false, 0, 1, &[0; 8])]);
    // Claim a captured length past the block's end (8 bytes of data there).
    over[at + 20..at + 24].copy_from_slice(&9u32.to_le_bytes());
    check(
        &over,
        &[&format!("error: corrupt capture: record at offset {at}: captured length 9 runs past the end of the block")],
    );
    over[at + 20..at + 24].copy_from_slice(&(MAX_CAPLEN + 1).to_le_bytes());
    check(
        &over,
        &[&format!(
            "error: corrupt capture: record at offset {at}: captured length 262145 exceeds the 262144-byte bound"
        )],
    );
    let short = cat(&[head.clone(), block(false, PCAPNG_EPB, &[0; 16])]);
    check(
        &short,
        &[&format!("error: corrupt capture: record at offset {at}: packet block shorter than its 20-byte fixed part")],
    );
    let short_idb = cat(&[shb(false), block(false, PCAPNG_IDB, &[1, 0, 0, 0])]);
    let at = shb(false).len();
    check(
        &short_idb,
        &[&format!("error: corrupt capture: record at offset {at}: interface description block shorter than 20 bytes")],
    );
}

#[test]
fn pcapng_bad_section_headers_are_corrupt() {
    let mut bad_bom = shb(false);
    bad_bom[8..12].copy_from_slice(&[1, 2, 3, 4]);
    check(&bad_bom, &["open error: corrupt capture: record at offset 0: bad pcapng byte-order magic 0x01020304"]);
    let mut v2 = shb(false);
    v2[12..14].copy_from_slice(&2u16.to_le_bytes());
    check(&v2, &["error: corrupt capture: record at offset 0: unsupported pcapng version 2.0"]);
    // A bad byte-order magic in a later section.
    let mut file = cat(&[shb(false), idb(false, 1, 0, &[]), epb(false, 0, 1, b"\x01")]);
    let at = file.len();
    let mut later = shb(true);
    later[8..12].copy_from_slice(&[0, 0, 0, 0]);
    file.extend(later);
    check(
        &file,
        &[
            "#1 if0 ETHERNET 1000 01 1/3",
            &format!("error: corrupt capture: record at offset {at}: bad pcapng byte-order magic 0x00000000"),
        ],
    );
}

#[test]
fn pcapng_cut_mid_block_returns_the_frames_before_then_truncated() {
    let file = cat(&[shb(false), idb(false, 1, 0, &[]), epb(false, 0, 1, b"\x01"), epb(false, 0, 2, b"\x02\x03")]);
    let last = epb(false, 0, 2, b"\x02\x03").len();
    let at = file.len() - last;
    check(
        &file[..file.len() - 1],
        &[
            "#1 if0 ETHERNET 1000 01 1/3",
            &format!("error: capture truncated: record at offset {at} needs {last} bytes, {} available", last - 1),
        ],
    );
    check(
        &file[..at + 5],
        &[
            "#1 if0 ETHERNET 1000 01 1/3",
            &format!("error: capture truncated: record at offset {at} needs 8 bytes, 5 available"),
        ],
    );
}

// ---- gzip and streams ----

#[test]
fn gzip_with_several_members_is_read_through() {
    let file = pcap(false, false, 1, &[(1, 0, b"\x01"), (2, 0, b"\x02")]);
    let (a, b) = file.split_at(30);
    let both = cat(&[gzip(a), gzip(b)]);
    assert_eq!(read(both), [format!("#1 if0 ETHERNET {SEC} 01 1/3"), format!("#2 if0 ETHERNET {} 02 1/3", 2 * SEC)]);
}

#[test]
fn gzip_cut_short_returns_the_frames_before_then_an_error_naming_the_offset() {
    let records: Vec<(u32, u32, Vec<u8>)> = (0..200u32).map(|i| (i, 0, vec![i as u8; 100])).collect();
    let records: Vec<(u32, u32, &[u8])> = records.iter().map(|(s, f, d)| (*s, *f, &d[..])).collect();
    let file = pcap(false, false, 1, &records);
    let gz = gzip(&file);
    for cut in [gz.len() - 1, gz.len() - 8, gz.len() / 2, 20, 12] {
        let mut frames = 0;
        let mut offset = 0;
        let err = match CaptureReader::from_bytes(gz[..cut].to_vec()) {
            // Cut inside the compressed file header: nothing comes out at all.
            Err(e) => e,
            Ok(mut reader) => loop {
                match reader.next_frame() {
                    Ok(Some(f)) => {
                        frames += 1;
                        assert_eq!(f.data, &[f.number as u8 - 1; 100][..]);
                        offset = 24 + frames * 116;
                    }
                    Ok(None) => panic!("a cut gzip stream read to a clean end (cut at {cut})"),
                    Err(e) => {
                        offset = offset.max(24);
                        break e;
                    }
                }
            },
        };
        let msg = err.to_string();
        assert!(matches!(err, CaptureError::Io(_) | CaptureError::Truncated { .. }), "{msg}");
        assert!(msg.contains(&format!("record at offset {offset} ")), "cut at {cut}: {msg}");
        assert!(cut < gz.len() / 2 + 1 || frames > 50, "cut at {cut}: only {frames} frames before the error");
    }
}

#[test]
fn stream_read_error_names_the_offset() {
    let file = pcap(false, false, 1, &[(1, 0, b"\x01"), (2, 0, b"\x02")]);
    let mut reader = CaptureReader::from_reader(Box::new(Failing(Cursor::new(file[..50].to_vec())))).unwrap();
    assert!(reader.next_frame().unwrap().is_some());
    let err = reader.next_frame().unwrap_err();
    assert!(matches!(err, CaptureError::Io(_)));
    assert_eq!(
        err.to_string(),
        "I/O error: reading the capture failed at offset 50 (record at offset 41 needs 16 bytes, 9 available): boom"
    );
    // A stream failing before it says anything.
    let err = CaptureReader::from_reader(Box::new(Failing(Cursor::new(Vec::new())))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "I/O error: reading the capture failed at offset 0 (record at offset 0 needs 4 bytes, 0 available): boom"
    );
}

#[test]
fn totals_and_progress() {
    let file = pcap(false, false, 1, &[(1, 0, b"\x01\x02"), (2, 0, b"\x03")]);
    let gz = gzip(&file);
    let gz_file = TempFile::new(&gz);
    let plain_file = TempFile::new(&file);
    for (how, reader, total) in [
        ("bytes", CaptureReader::from_bytes(file.clone()), Some(file.len() as u64)),
        ("bytes gzip", CaptureReader::from_bytes(gz.clone()), Some(gz.len() as u64)),
        ("reader", CaptureReader::from_reader(Box::new(Cursor::new(file.clone()))), None),
        ("reader gzip", CaptureReader::from_reader(Box::new(Cursor::new(gz.clone()))), None),
        ("open", CaptureReader::open(&plain_file.0), Some(file.len() as u64)),
        ("open gzip", CaptureReader::open(&gz_file.0), Some(gz.len() as u64)),
    ] {
        let mut reader = reader.unwrap();
        assert_eq!(reader.total_bytes(), total, "{how}");
        assert_eq!(reader.format().is_gzip(), how.ends_with("gzip"), "{how}");
        assert_eq!(reader.bytes_consumed(), 24, "{how}");
        let mut progress = Vec::new();
        while let Some(frame) = reader.next_frame().unwrap() {
            progress.push((frame.number, reader.bytes_consumed()));
        }
        assert_eq!(progress, [(1, 42), (2, 59)], "{how}");
        assert_eq!(reader.frames_read(), 2, "{how}");
    }
}

#[test]
fn plain_frames_borrow_the_buffer_without_copying() {
    let file = pcap(false, false, 1, &[(1, 0, b"\x01\x02\x03")]);
    let mut reader = CaptureReader::from_bytes(file).unwrap();
    let whole = reader.input.buffer().as_ptr() as usize;
    let data = reader.next_frame().unwrap().unwrap().data.as_ptr() as usize;
    assert_eq!(data, whole + 40);
}

#[test]
fn stream_buffer_holds_one_read_or_one_record() {
    let big = vec![7u8; 5000];
    let file = pcap(false, false, 1, &[(1, 0, b"\x01"), (2, 0, &big), (3, 0, b"\x02"), (4, 0, b"\x03")]);
    let stream = Stream::with_read_size(Box::new(Cursor::new(file)), false, 64);
    let mut reader = CaptureReader::from_input(Input::Stream(stream), None, false).unwrap();
    let buffer = |r: &CaptureReader| r.input.stream().map_or(0, Stream::buffer_len);
    let mut sizes = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        let len = frame.data.len();
        sizes.push((len, buffer(&reader)));
    }
    // The big record needs a buffer of its size; afterwards the buffer shrinks back.
    assert_eq!(sizes, [(1, 64), (5000, 5016), (1, 64), (1, 64)]);
}

#[test]
fn reader_is_send() {
    fn send<T: Send>() {}
    send::<CaptureReader>();
}

#[test]
fn no_panic_on_damaged_captures() {
    let file = cat(&[
        shb(false),
        idb(false, 1, 8, &[(9, &[0x85]), (14, &[1; 8])]),
        epb(false, 0, 1, b"\x01\x02\x03"),
        spb(false, 9, b"\x04\x05\x06\x07\x08\x09"),
        opb(false, 0, 3, b"\x0a"),
    ]);
    let pcap_file = pcap(true, true, 1, &[(1, 2, b"\x01\x02"), (3, 4, b"\x03")]);
    for base in [file, pcap_file] {
        for cut in 0..base.len() {
            let _ = read(base[..cut].to_vec());
        }
        for i in 0..base.len() {
            for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut damaged = base.clone();
                damaged[i] = v;
                let _ = read(damaged.clone());
                let stream = Stream::with_read_size(Box::new(Cursor::new(damaged)), false, 3);
                let _ = CaptureReader::from_input(Input::Stream(stream), None, false).map(|mut r| summary(&mut r));
            }
        }
    }
}

// ---- the shared corpus ----

use crate::test_support::corpus_dir;

fn capture_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            capture_files(&path, out);
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("pcap" | "pcapng" | "cap" | "gz")) {
            out.push(path);
        }
    }
}

/// What a whole read of a capture gave: frames, captured bytes, original bytes, last timestamp.
#[derive(Debug, PartialEq, Eq)]
struct Totals {
    frames: u64,
    captured: u64,
    original: u64,
    last_ts: i64,
}

fn totals(reader: &mut CaptureReader, path: &Path) -> Totals {
    let mut t = Totals { frames: 0, captured: 0, original: 0, last_ts: 0 };
    loop {
        match reader.next_frame() {
            Ok(Some(f)) => {
                t.frames += 1;
                assert_eq!(f.number, t.frames);
                t.captured += f.data.len() as u64;
                t.original += u64::from(f.orig_len);
                t.last_ts = f.ts.as_nanos();
            }
            Ok(None) => return t,
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
}

/// The MANIFEST's index: file -> (link type name, packets, bytes).
fn manifest(dir: &Path) -> BTreeMap<String, (String, u64, u64)> {
    let text = std::fs::read_to_string(dir.join("public/MANIFEST.md")).unwrap();
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(file), Some(encap), Some(pkts), Some(bytes)) =
            (cells.get(1), cells.get(2), cells.get(3), cells.get(4))
        else {
            continue;
        };
        let is_capture = [".pcap", ".pcapng", ".cap"].iter().any(|ext| file.ends_with(ext));
        let (true, Ok(pkts), Ok(bytes)) = (is_capture, pkts.parse(), bytes.parse()) else { continue };
        let link = match *encap {
            "Ethernet" => "ETHERNET",
            "Linux cooked-mode capture v1" => "LINUX_SLL",
            "Linux cooked-mode capture v2" => "LINUX_SLL2",
            "Raw IP" => "RAW",
            "Raw IPv4" => "IPV4",
            "NFLOG" => "NFLOG",
            other => panic!("unknown encapsulation {other} in the manifest"),
        };
        rows.insert(file.to_string(), (link.to_string(), pkts, bytes));
    }
    rows
}

#[test]
fn every_corpus_capture_reads_to_the_end() {
    let Some(dir) = corpus_dir() else { return };
    let mut files = Vec::new();
    capture_files(&dir, &mut files);
    assert!(files.len() >= 90, "only {} captures under {}", files.len(), dir.display());
    let manifest = manifest(&dir);
    // The corpus grows (79 captures, then 90): every capture the manifest lists must be
    // there and agree with it, however many there are.
    assert!(manifest.len() >= 79, "only {} captures in the manifest", manifest.len());
    let mut checked = 0;
    for path in &files {
        let mut reader = CaptureReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let size = std::fs::metadata(path).unwrap().len();
        assert_eq!(reader.total_bytes(), Some(size));
        let t = totals(&mut reader, path);
        assert_eq!(reader.bytes_consumed(), size, "{}: bytes left unread", path.display());
        let relative = path.strip_prefix(dir.join("public")).ok().and_then(Path::to_str).unwrap_or("");
        if let Some((link, packets, bytes)) = manifest.get(relative) {
            assert_eq!(t.frames, *packets, "{relative}: packets");
            assert_eq!(size, *bytes, "{relative}: bytes");
            let names: Vec<String> = reader.link_types().iter().map(|l| l.name()).collect();
            assert_eq!(names, std::slice::from_ref(link), "{relative}");
            checked += 1;
        }
        // Small captures are also read compressed and as a stream: same frames every way.
        if size < 64 * 1024 {
            let bytes = std::fs::read(path).unwrap();
            let mut gz = CaptureReader::from_bytes(gzip(&bytes)).unwrap();
            assert_eq!(totals(&mut gz, path), t, "{} gzip", path.display());
            let trickle = Trickle { inner: Cursor::new(bytes), calls: 0 };
            let mut stream = CaptureReader::from_reader(Box::new(trickle)).unwrap();
            assert_eq!(totals(&mut stream, path), t, "{} stream", path.display());
        }
    }
    assert_eq!(checked, manifest.len(), "every capture in the manifest was found");
}

#[test]
fn corpus_counts_of_a_few_captures() {
    let Some(dir) = corpus_dir() else { return };
    for (file, frames, format) in [
        ("public/sngrep/aaa.pcap", 691, "pcap"),
        ("public/zeek/pcapng-multi-interface.pcapng", 6, "pcapng"),
        ("public/ndpi/gre.pcapng", 1, "pcapng"),
        ("public/arkime/ipv6-gtp6.pcap", 1, "pcap-ns"),
        ("public/pcapplusplus/ip-frag.pcap", 3000, "pcap"),
        ("public/ndpi/http_on_sip_port.pcap", 4, "pcapng"),
    ] {
        let path = dir.join(file);
        let mut reader = CaptureReader::open(&path).unwrap();
        assert_eq!(reader.format().name(), format, "{file}");
        assert_eq!(totals(&mut reader, &path).frames, frames, "{file}");
    }
}

/// Every frame as `next_shared_frame` gives it, resolved against the shared bytes.
fn shared_frames(mut reader: CaptureReader) -> Vec<(u64, Timestamp, Vec<u8>, u32, bool)> {
    let shared = reader.shared_bytes();
    let mut out = Vec::new();
    while let Some(frame) = reader.next_shared_frame().expect("reads") {
        let (frame, is_ref) = match frame {
            SharedFrame::At(at) => (at.frame(shared.as_deref().expect("a reference needs shared bytes")), true),
            SharedFrame::Here(frame) => (frame, false),
        };
        out.push((frame.number, frame.ts, frame.data.to_vec(), frame.orig_len, is_ref));
    }
    out
}

#[test]
fn shared_frames_are_the_frames_of_next_frame_wherever_the_capture_is() {
    let bytes = pcap(false, false, 1, &[(1, 5, b"first"), (2, 6, b"second frame"), (3, 7, b"")]);
    let mut plain = CaptureReader::from_bytes(bytes.clone()).unwrap();
    let mut expected = Vec::new();
    while let Some(f) = plain.next_frame().unwrap() {
        expected.push((f.number, f.ts, f.data.to_vec(), f.orig_len));
    }
    assert_eq!(expected.len(), 3);
    let strip = |v: Vec<(u64, Timestamp, Vec<u8>, u32, bool)>| {
        v.into_iter().map(|(n, t, d, o, _)| (n, t, d, o)).collect::<Vec<_>>()
    };

    // Held in memory: references into the shared bytes, never a borrowed frame.
    let in_memory = shared_frames(CaptureReader::from_bytes(bytes.clone()).unwrap());
    assert!(in_memory.iter().all(|f| f.4));
    assert_eq!(strip(in_memory), expected);

    // Mapped from a file: the same.
    let file = TempFile::new(&bytes);
    let mapped = shared_frames(CaptureReader::open(&file.0).unwrap());
    assert!(mapped.iter().all(|f| f.4));
    assert_eq!(strip(mapped), expected);

    // A stream has no shared bytes: its frames come borrowed.
    let stream = CaptureReader::from_reader(Box::new(Cursor::new(gzip(&bytes)))).unwrap();
    assert!(stream.shared_bytes().is_none());
    let streamed = shared_frames(stream);
    assert!(streamed.iter().all(|f| !f.4));
    assert_eq!(strip(streamed), expected);
}

#[test]
fn a_frame_ref_into_other_bytes_has_no_data_rather_than_panicking() {
    let bytes = pcap(false, false, 1, &[(1, 5, b"first")]);
    let mut reader = CaptureReader::from_bytes(bytes).unwrap();
    let Some(SharedFrame::At(at)) = reader.next_shared_frame().unwrap() else { panic!("a frame in memory") };
    assert_eq!(at.frame(b"short").data, b"");
    assert_eq!(at.frame(&[]).data, b"");
}

fn dsb(big: bool, kind: u32, secrets: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    put32(&mut body, kind, big);
    put32(&mut body, secrets.len() as u32, big);
    body.extend_from_slice(secrets);
    pad4(&mut body);
    block(big, PCAPNG_DSB, &body)
}

#[test]
fn pcapng_decryption_secrets_blocks_feed_the_tls_key_log() {
    let random = "11".repeat(32);
    let line = format!("CLIENT_RANDOM {random} {}\n", "ab".repeat(48));
    for big in [false, true] {
        let file = cat(&[
            shb(big),
            idb(big, 1, 65535, &[]),
            dsb(big, DSB_TLS_KEY_LOG, line.as_bytes()),
            // A WireGuard key log (another secrets type) is not ours.
            dsb(big, 0x5747_4b4c, b"LOCAL_STATIC_PRIVATE_KEY = x\n"),
            epb(big, 0, 1, b"\x01"),
        ]);
        let mut reader = CaptureReader::from_bytes(file.clone()).unwrap();
        let shared = SharedKeyLog::default();
        reader.share_tls_keys(shared.clone());
        assert!(reader.next_frame().unwrap().is_some());
        assert_eq!(shared.get(&[0x11; 32]).and_then(|s| s.master_secret), Some(vec![0xab; 48]));
        assert_eq!(shared.len(), 1);
        // A secrets length past the block: that block is skipped, the packets after it read.
        let mut bad = dsb(big, DSB_TLS_KEY_LOG, line.as_bytes());
        let len = line.len() as u32 + 100;
        bad[12..16].copy_from_slice(&if big { len.to_be_bytes() } else { len.to_le_bytes() });
        let mut reader =
            CaptureReader::from_bytes(cat(&[shb(big), idb(big, 1, 65535, &[]), bad, epb(big, 0, 1, b"\x01")])).unwrap();
        assert!(reader.next_frame().unwrap().is_some());
        assert!(reader.tls_keys().is_empty());
    }
}
