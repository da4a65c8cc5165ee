//! Criterion benchmark of TLS record decryption: MB/s of TLS records per cipher suite (TLS 1.3 AES-GCM and ChaCha20-Poly1305, TLS 1.2 AES-GCM and AES-CBC with HMAC-SHA256, MAC-then-encrypt and encrypt-then-MAC).
//!
//! Records of 1 KiB of plaintext (a SIP message's size) are sealed here with the
//! RustCrypto crates directly, from keys derived as TLS derives them, then decrypted in
//! sequence by `callflow_decode::tls::crypto::RecordKeys`.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use callflow_decode::tls::crypto::{expand_label, prf, CipherSuite, RecordKeys, Side};
use callflow_decode::tls::Record;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockEncryptMut, KeyIvInit};
use chacha20poly1305::ChaCha20Poly1305;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::hint::black_box;

const RECORDS: u64 = 256;
const PLAIN: usize = 1024;
const MASTER: [u8; 48] = [7; 48];
const CLIENT_RANDOM: [u8; 32] = [1; 32];
const SERVER_RANDOM: [u8; 32] = [2; 32];

fn header(t: u8, len: usize) -> [u8; 5] {
    [t, 3, 3, (len >> 8) as u8, len as u8]
}

fn xor_seq(iv: &[u8; 12], seq: u64) -> [u8; 12] {
    let mut n = *iv;
    for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
        *b ^= s;
    }
    n
}

fn aad12(seq: u64, t: u8, len: usize) -> Vec<u8> {
    let mut a = seq.to_be_bytes().to_vec();
    a.extend_from_slice(&[t, 3, 3, (len >> 8) as u8, len as u8]);
    a
}

/// TLS 1.3 records of `suite` from traffic secret [9; hash length].
fn tls13_records(id: u16) -> (Vec<Vec<u8>>, Vec<u8>) {
    let suite = CipherSuite::by_id(id).unwrap();
    let secret = vec![9u8; suite.prf.output_len()];
    let key_len = if id == 0x1301 { 16 } else { 32 };
    let key = expand_label(suite.prf, &secret, b"key", key_len).unwrap();
    let iv: [u8; 12] = expand_label(suite.prf, &secret, b"iv", 12).unwrap().try_into().unwrap();
    let records = (0..RECORDS)
        .map(|seq| {
            let mut body = vec![b'x'; PLAIN];
            body.push(23);
            let head = header(23, body.len() + 16);
            let nonce = xor_seq(&iv, seq);
            let nonce = aes_gcm::Nonce::from_slice(&nonce);
            let tag = match id {
                0x1301 => Aes128Gcm::new_from_slice(&key).unwrap().encrypt_in_place_detached(nonce, &head, &mut body),
                0x1302 => Aes256Gcm::new_from_slice(&key).unwrap().encrypt_in_place_detached(nonce, &head, &mut body),
                _ => ChaCha20Poly1305::new_from_slice(&key).unwrap().encrypt_in_place_detached(nonce, &head, &mut body),
            }
            .unwrap();
            [&head[..], &body, &tag].concat()
        })
        .collect();
    (records, secret)
}

/// The client's key, IV (or MAC key) from the TLS 1.2 key block.
fn key_block(suite: &CipherSuite, mac_len: usize, key_len: usize, iv_len: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut block = vec![0u8; 2 * (mac_len + key_len + iv_len)];
    prf(suite.prf, &MASTER, b"key expansion", &[&SERVER_RANDOM, &CLIENT_RANDOM], &mut block).unwrap();
    let mac = block[..mac_len].to_vec();
    let key = block[2 * mac_len..2 * mac_len + key_len].to_vec();
    let iv = block[2 * (mac_len + key_len)..2 * (mac_len + key_len) + iv_len].to_vec();
    (mac, key, iv)
}

fn tls12_gcm_records() -> Vec<Vec<u8>> {
    let suite = CipherSuite::by_id(0xc02f).unwrap();
    let (_, key, iv) = key_block(suite, 0, 16, 4);
    let cipher = Aes128Gcm::new_from_slice(&key).unwrap();
    (0..RECORDS)
        .map(|seq| {
            let mut nonce = [0u8; 12];
            nonce[..4].copy_from_slice(&iv);
            nonce[4..].copy_from_slice(&seq.to_be_bytes());
            let mut body = vec![b'x'; PLAIN];
            let tag = cipher
                .encrypt_in_place_detached(aes_gcm::Nonce::from_slice(&nonce), &aad12(seq, 23, PLAIN), &mut body)
                .unwrap();
            let fragment = [&seq.to_be_bytes()[..], &body, &tag].concat();
            [&header(23, fragment.len())[..], &fragment].concat()
        })
        .collect()
}

fn hmac256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn tls12_cbc_records(etm: bool) -> Vec<Vec<u8>> {
    let suite = CipherSuite::by_id(0xc027).unwrap();
    let (mac_key, key, _) = key_block(suite, 32, 16, 0);
    (0..RECORDS)
        .map(|seq| {
            let iv = [seq as u8; 16];
            let plain = vec![b'x'; PLAIN];
            let mut body = plain.clone();
            if !etm {
                body.extend(hmac256(&mac_key, &[&aad12(seq, 23, PLAIN), &plain]));
            }
            let pad = 15 - body.len() % 16;
            body.extend(std::iter::repeat_n(pad as u8, pad + 1));
            let len = body.len();
            cbc::Encryptor::<aes::Aes128>::new_from_slices(&key, &iv)
                .unwrap()
                .encrypt_padded_mut::<NoPadding>(&mut body, len)
                .unwrap();
            let mut fragment = [&iv[..], &body].concat();
            if etm {
                let mac = hmac256(&mac_key, &[&aad12(seq, 23, fragment.len()), &fragment]);
                fragment.extend(mac);
            }
            [&header(23, fragment.len())[..], &fragment].concat()
        })
        .collect()
}

fn decrypt_all(mut keys: RecordKeys, records: &[Vec<u8>], out: &mut Vec<u8>) {
    for r in records {
        let (record, _) = Record::parse(r).unwrap();
        keys.decrypt(&record, out).expect("record decrypts");
        black_box(&out);
    }
}

fn tls(c: &mut Criterion) {
    let mut g = c.benchmark_group("tls_decrypt");
    let mut out = Vec::new();
    for (name, id) in [("tls13_aes128gcm", 0x1301), ("tls13_aes256gcm", 0x1302), ("tls13_chacha20poly1305", 0x1303)] {
        let (records, secret) = tls13_records(id);
        let suite = CipherSuite::by_id(id).unwrap();
        g.throughput(Throughput::Bytes(records.iter().map(|r| r.len() as u64).sum()));
        g.bench_function(name, |b| {
            b.iter(|| decrypt_all(RecordKeys::tls13(suite, &secret).unwrap(), &records, &mut out))
        });
    }
    let tls12 = |id: u16, etm: bool| {
        RecordKeys::tls12(CipherSuite::by_id(id).unwrap(), &MASTER, &CLIENT_RANDOM, &SERVER_RANDOM, Side::Client, etm)
            .unwrap()
    };
    let gcm = tls12_gcm_records();
    g.throughput(Throughput::Bytes(gcm.iter().map(|r| r.len() as u64).sum()));
    g.bench_function("tls12_aes128gcm", |b| b.iter(|| decrypt_all(tls12(0xc02f, false), &gcm, &mut out)));
    for (name, etm) in [("tls12_aes128cbc_sha256", false), ("tls12_aes128cbc_sha256_etm", true)] {
        let records = tls12_cbc_records(etm);
        g.throughput(Throughput::Bytes(records.iter().map(|r| r.len() as u64).sum()));
        g.bench_function(name, |b| b.iter(|| decrypt_all(tls12(0xc027, etm), &records, &mut out)));
    }
    g.finish();
}

criterion_group!(benches, tls);
criterion_main!(benches);
