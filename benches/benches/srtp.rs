//! Criterion benchmark of SRTCP decryption: packets per second per suite (AES-CM with HMAC-SHA1, AES-GCM), through `callflow_decode::srtp::SrtcpContext`.
//!
//! The packets are the ones libsrtp 2.5 protected for the unit tests of
//! `callflow_decode::srtp` (an SR with one report block, 52 bytes of RTCP), decrypted
//! again and again: SRTCP decryption keeps no replay state, so each run does the whole
//! work (tag check, then decryption).

use callflow_decode::srtp::{SrtcpContext, SrtpSuite};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

/// (name, suite, key length, the libsrtp packet in hex).
const PACKETS: [(&str, SrtpSuite, u8, &str); 3] = [
    (
        "aes_cm_128_hmac_sha1_80",
        SrtpSuite::AesCm128HmacSha1_80,
        30,
        "81c8000c12345678f4e419a5fd796df58a21bb125ea2f3b9c7073c6c2bfad9893c14505adfc7ea788837c5d25c014663a026621480000002c2c8c542b9684996a136",
    ),
    (
        "aead_aes_128_gcm",
        SrtpSuite::AeadAes128Gcm,
        28,
        "81c8000c123456782ef9649700dec1c042d1611c87cdb5dad51eacf20a658b5ddec5fe8cec402b06fca8d8429ae0a450b7e58902d223e1287ff37676cdbe1e9427df881e80000002",
    ),
    (
        "aead_aes_256_gcm",
        SrtpSuite::AeadAes256Gcm,
        44,
        "81c8000c12345678c2dcab9a4c2df7781540370a4cc372e93fe0e84383a49ae6df8ca1a9e2ba9c9e38f64c9778342591fef8993af9d9495ac97963a83f5014ec4dd217f580000002",
    ),
];

fn hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

fn srtcp(c: &mut Criterion) {
    let mut group = c.benchmark_group("srtcp_decrypt");
    group.throughput(Throughput::Elements(1));
    for (name, suite, key_len, packet) in PACKETS {
        let key: Vec<u8> = (0..key_len).collect();
        let mut ctx = SrtcpContext::new(suite, &key, None, 0).unwrap();
        let packet = hex(packet);
        let mut out = Vec::with_capacity(packet.len());
        assert!(ctx.decrypt(&packet, &mut out).is_ok(), "{name}");
        group.bench_function(name, |b| b.iter(|| black_box(ctx.decrypt(black_box(&packet), &mut out)).is_ok()));
    }
    group.finish();
}

criterion_group!(benches, srtcp);
criterion_main!(benches);
