//! TLS record keys and record decryption: the cipher suites read, the TLS 1.2 PRF and TLS 1.3 key schedule that turn logged secrets into keys, and each record's decryption.
//!
//! Every primitive is a RustCrypto crate's (`aes-gcm`, `chacha20poly1305`, `aes` with
//! `cbc`, `hmac`, `hkdf`, `sha1`, `sha2`); this module only lays out what TLS puts around
//! them: nonces, additional data, padding, MAC input, key block layout, labels.
//!
//! - TLS 1.3 (RFC 8446): AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305, keys expanded from
//!   a traffic secret, and [`RecordKeys::key_update`] for KeyUpdate.
//! - TLS 1.2 (RFC 5246): the key block from the master secret by the PRF (SHA-256, or
//!   SHA-384 for the suites that name it); AES-GCM (RFC 5288), ChaCha20-Poly1305
//!   (RFC 7905), and AES-CBC with HMAC-SHA1/SHA256/SHA384, MAC-then-encrypt or
//!   encrypt-then-MAC (RFC 7366).
//!
//! A record that does not authenticate is an error and the keys' sequence number does not
//! move: a wrong key never yields plaintext.

use super::{ContentType, Record};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, KeyIvInit};
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha384};

/// The bulk cipher of a suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bulk {
    /// AES-128 in GCM.
    Aes128Gcm,
    /// AES-256 in GCM.
    Aes256Gcm,
    /// ChaCha20-Poly1305.
    ChaCha20Poly1305,
    /// AES-128 in CBC, with an HMAC.
    Aes128Cbc,
    /// AES-256 in CBC, with an HMAC.
    Aes256Cbc,
}

impl Bulk {
    fn key_len(self) -> usize {
        match self {
            Bulk::Aes128Gcm | Bulk::Aes128Cbc => 16,
            Bulk::Aes256Gcm | Bulk::ChaCha20Poly1305 | Bulk::Aes256Cbc => 32,
        }
    }

    fn is_cbc(self) -> bool {
        matches!(self, Bulk::Aes128Cbc | Bulk::Aes256Cbc)
    }
}

/// A hash function of a suite: its PRF or key schedule, or its record MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlg {
    /// SHA-1 (record MACs only).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
}

impl HashAlg {
    /// The output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
        }
    }
}

/// A cipher suite this module decrypts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CipherSuite {
    /// The IANA number.
    pub id: u16,
    /// The IANA name.
    pub name: &'static str,
    /// The bulk cipher.
    pub bulk: Bulk,
    /// The PRF hash (TLS 1.2) or key schedule hash (TLS 1.3).
    pub prf: HashAlg,
    /// The record MAC of a CBC suite.
    pub mac: Option<HashAlg>,
    /// A TLS 1.3 suite.
    pub tls13: bool,
}

macro_rules! suites {
    ($($id:literal $name:literal $bulk:ident $prf:ident $mac:expr, $tls13:literal;)*) => {
        /// The suites decrypted, by number.
        pub const SUITES: &[CipherSuite] = &[$(CipherSuite {
            id: $id, name: $name, bulk: Bulk::$bulk, prf: HashAlg::$prf, mac: $mac, tls13: $tls13,
        }),*];
    };
}

suites! {
    0x1301 "TLS_AES_128_GCM_SHA256" Aes128Gcm Sha256 None, true;
    0x1302 "TLS_AES_256_GCM_SHA384" Aes256Gcm Sha384 None, true;
    0x1303 "TLS_CHACHA20_POLY1305_SHA256" ChaCha20Poly1305 Sha256 None, true;
    0xc02b "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" Aes128Gcm Sha256 None, false;
    0xc02c "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" Aes256Gcm Sha384 None, false;
    0xc02f "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" Aes128Gcm Sha256 None, false;
    0xc030 "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" Aes256Gcm Sha384 None, false;
    0x009c "TLS_RSA_WITH_AES_128_GCM_SHA256" Aes128Gcm Sha256 None, false;
    0x009d "TLS_RSA_WITH_AES_256_GCM_SHA384" Aes256Gcm Sha384 None, false;
    0x009e "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256" Aes128Gcm Sha256 None, false;
    0x009f "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384" Aes256Gcm Sha384 None, false;
    0xcca8 "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" ChaCha20Poly1305 Sha256 None, false;
    0xcca9 "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" ChaCha20Poly1305 Sha256 None, false;
    0xccaa "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256" ChaCha20Poly1305 Sha256 None, false;
    0x002f "TLS_RSA_WITH_AES_128_CBC_SHA" Aes128Cbc Sha256 Some(HashAlg::Sha1), false;
    0x0035 "TLS_RSA_WITH_AES_256_CBC_SHA" Aes256Cbc Sha256 Some(HashAlg::Sha1), false;
    0x003c "TLS_RSA_WITH_AES_128_CBC_SHA256" Aes128Cbc Sha256 Some(HashAlg::Sha256), false;
    0x003d "TLS_RSA_WITH_AES_256_CBC_SHA256" Aes256Cbc Sha256 Some(HashAlg::Sha256), false;
    0x0033 "TLS_DHE_RSA_WITH_AES_128_CBC_SHA" Aes128Cbc Sha256 Some(HashAlg::Sha1), false;
    0x0039 "TLS_DHE_RSA_WITH_AES_256_CBC_SHA" Aes256Cbc Sha256 Some(HashAlg::Sha1), false;
    0x0067 "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256" Aes128Cbc Sha256 Some(HashAlg::Sha256), false;
    0x006b "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256" Aes256Cbc Sha256 Some(HashAlg::Sha256), false;
    0xc009 "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA" Aes128Cbc Sha256 Some(HashAlg::Sha1), false;
    0xc00a "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA" Aes256Cbc Sha256 Some(HashAlg::Sha1), false;
    0xc013 "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA" Aes128Cbc Sha256 Some(HashAlg::Sha1), false;
    0xc014 "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA" Aes256Cbc Sha256 Some(HashAlg::Sha1), false;
    0xc023 "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256" Aes128Cbc Sha256 Some(HashAlg::Sha256), false;
    0xc024 "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384" Aes256Cbc Sha384 Some(HashAlg::Sha384), false;
    0xc027 "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256" Aes128Cbc Sha256 Some(HashAlg::Sha256), false;
    0xc028 "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384" Aes256Cbc Sha384 Some(HashAlg::Sha384), false;
}

impl CipherSuite {
    /// The suite numbered `id`, if this module decrypts it.
    pub fn by_id(id: u16) -> Option<&'static CipherSuite> {
        SUITES.iter().find(|s| s.id == id)
    }
}

/// Which end of a connection wrote a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The end that sent the ClientHello.
    Client,
    /// The other end.
    Server,
}

/// Why a record was not decrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// The record did not authenticate (its tag or MAC, or CBC padding, was wrong): wrong
    /// keys, or records missing before it.
    #[error("record did not authenticate (bad_record_mac)")]
    BadRecordMac,
    /// The record is too short for its cipher's nonce, tag, MAC or block size.
    #[error("record too short for its cipher")]
    TooShort,
    /// A TLS 1.3 record held only padding, or an unknown inner content type.
    #[error("record has no valid inner content type")]
    NoContentType,
}

/// The cipher state of one direction.
#[derive(Clone)]
enum Cipher {
    Aes128Gcm(Box<Aes128Gcm>, [u8; 12]),
    Aes256Gcm(Box<Aes256Gcm>, [u8; 12]),
    ChaCha(Box<ChaCha20Poly1305>, [u8; 12]),
    Cbc { key: Vec<u8>, mac_key: Vec<u8>, mac: HashAlg, encrypt_then_mac: bool },
}

/// The keys of one direction of a connection, and its record sequence number.
#[derive(Clone)]
pub struct RecordKeys {
    cipher: Cipher,
    seq: u64,
    tls13: bool,
    /// TLS 1.3: the traffic secret and its hash, for KeyUpdate.
    secret: Option<(HashAlg, Vec<u8>)>,
}

impl std::fmt::Debug for RecordKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys are not printed.
        f.debug_struct("RecordKeys").field("seq", &self.seq).field("tls13", &self.tls13).finish_non_exhaustive()
    }
}

fn aead(bulk: Bulk, key: &[u8], iv: [u8; 12]) -> Option<Cipher> {
    Some(match bulk {
        Bulk::Aes128Gcm => Cipher::Aes128Gcm(Box::new(Aes128Gcm::new_from_slice(key).ok()?), iv),
        Bulk::Aes256Gcm => Cipher::Aes256Gcm(Box::new(Aes256Gcm::new_from_slice(key).ok()?), iv),
        Bulk::ChaCha20Poly1305 => Cipher::ChaCha(Box::new(ChaCha20Poly1305::new_from_slice(key).ok()?), iv),
        Bulk::Aes128Cbc | Bulk::Aes256Cbc => return None,
    })
}

impl RecordKeys {
    /// TLS 1.3 keys of one direction from its traffic secret (handshake or application).
    pub fn tls13(suite: &CipherSuite, secret: &[u8]) -> Option<RecordKeys> {
        if !suite.tls13 || secret.len() != suite.prf.output_len() {
            return None;
        }
        let key = expand_label(suite.prf, secret, b"key", suite.bulk.key_len())?;
        let iv: [u8; 12] = expand_label(suite.prf, secret, b"iv", 12)?.try_into().ok()?;
        Some(RecordKeys {
            cipher: aead(suite.bulk, &key, iv)?,
            seq: 0,
            tls13: true,
            secret: Some((suite.prf, secret.to_vec())),
        })
    }

    /// TLS 1.2 keys of `side`'s direction from the master secret and the two randoms;
    /// `encrypt_then_mac` when both hellos carried the extension (CBC suites only).
    pub fn tls12(
        suite: &CipherSuite,
        master: &[u8],
        client_random: &[u8; 32],
        server_random: &[u8; 32],
        side: Side,
        encrypt_then_mac: bool,
    ) -> Option<RecordKeys> {
        if suite.tls13 || master.len() != 48 {
            return None;
        }
        let mac_len = suite.mac.map_or(0, HashAlg::output_len);
        let key_len = suite.bulk.key_len();
        // AES-GCM has a 4-byte implicit nonce part, ChaCha20-Poly1305 a 12-byte IV; CBC in
        // TLS 1.1 and later sends its IV in each record.
        let iv_len = match suite.bulk {
            Bulk::Aes128Gcm | Bulk::Aes256Gcm => 4,
            Bulk::ChaCha20Poly1305 => 12,
            Bulk::Aes128Cbc | Bulk::Aes256Cbc => 0,
        };
        let mut block = vec![0u8; 2 * (mac_len + key_len + iv_len)];
        prf(suite.prf, master, b"key expansion", &[server_random, client_random], &mut block)?;
        let pick = |part: usize, len: usize| {
            let start = 2 * part + if side == Side::Server { len } else { 0 };
            block.get(start..start + len)
        };
        // The key block is client MAC, server MAC, client key, server key, client IV, server IV.
        let mac_key = pick(0, mac_len)?.to_vec();
        let key = block.get(2 * mac_len..).and_then(|b| b.get(if side == Side::Server { key_len } else { 0 }..))?;
        let key = key.get(..key_len)?.to_vec();
        let ivs = block.get(2 * (mac_len + key_len)..)?;
        let iv = ivs.get(if side == Side::Server { iv_len } else { 0 }..)?.get(..iv_len)?;
        let cipher = match (suite.bulk, suite.mac) {
            (bulk, Some(mac)) if bulk.is_cbc() => Cipher::Cbc { key, mac_key, mac, encrypt_then_mac },
            (bulk, _) => {
                let mut nonce = [0u8; 12];
                nonce.get_mut(..iv_len)?.copy_from_slice(iv);
                aead(bulk, &key, nonce)?
            }
        };
        Some(RecordKeys { cipher, seq: 0, tls13: false, secret: None })
    }

    /// The next record's sequence number.
    pub fn sequence(&self) -> u64 {
        self.seq
    }

    /// TLS 1.3 KeyUpdate: the next traffic secret and its keys replace these (RFC 8446
    /// 7.2); false for TLS 1.2 keys.
    pub fn key_update(&mut self) -> bool {
        let Some((hash, secret)) = &self.secret else { return false };
        let Some(next) = expand_label(*hash, secret, b"traffic upd", hash.output_len()) else { return false };
        let suite = match self.cipher {
            Cipher::Aes128Gcm(..) => CipherSuite::by_id(0x1301),
            Cipher::Aes256Gcm(..) => CipherSuite::by_id(0x1302),
            Cipher::ChaCha(..) => CipherSuite::by_id(0x1303),
            Cipher::Cbc { .. } => None,
        };
        match suite.and_then(|s| RecordKeys::tls13(s, &next)) {
            Some(keys) => {
                *self = keys;
                true
            }
            None => false,
        }
    }

    /// Decrypts `record` into `out` (cleared first) and returns the plaintext's content
    /// type (for TLS 1.3, the inner one). The sequence number moves on only on success.
    pub fn decrypt(&mut self, record: &Record<'_>, out: &mut Vec<u8>) -> Result<ContentType, DecryptError> {
        out.clear();
        let fragment = record.fragment;
        let seq = self.seq.to_be_bytes();
        let tls12_aad = |len: usize| {
            let mut aad = [0u8; 13];
            aad[..8].copy_from_slice(&seq);
            aad[8] = record.content_type.as_u8();
            aad[9..11].copy_from_slice(&record.version.to_be_bytes());
            aad[11..].copy_from_slice(&(len as u16).to_be_bytes());
            aad
        };
        let content_type = match &self.cipher {
            Cipher::Aes128Gcm(..) | Cipher::Aes256Gcm(..) | Cipher::ChaCha(..) => {
                let explicit = !self.tls13 && !matches!(self.cipher, Cipher::ChaCha(..));
                let (nonce, body) = match (&self.cipher, explicit) {
                    (Cipher::Aes128Gcm(_, iv) | Cipher::Aes256Gcm(_, iv), true) => {
                        // TLS 1.2 AES-GCM: 4 implicit bytes, then the record's 8 explicit ones.
                        let explicit = fragment.get(..8).ok_or(DecryptError::TooShort)?;
                        let mut nonce = *iv;
                        nonce[4..].copy_from_slice(explicit);
                        (nonce, &fragment[8..])
                    }
                    (Cipher::Aes128Gcm(_, iv) | Cipher::Aes256Gcm(_, iv) | Cipher::ChaCha(_, iv), _) => {
                        let mut nonce = *iv;
                        for (n, s) in nonce[4..].iter_mut().zip(seq) {
                            *n ^= s;
                        }
                        (nonce, fragment)
                    }
                    (Cipher::Cbc { .. }, _) => return Err(DecryptError::TooShort),
                };
                let split = body.len().checked_sub(16).ok_or(DecryptError::TooShort)?;
                let (ciphertext, tag) = body.split_at(split);
                let header = record.header();
                let aad12 = tls12_aad(ciphertext.len());
                let aad: &[u8] = if self.tls13 { &header } else { &aad12 };
                out.extend_from_slice(ciphertext);
                let nonce = aes_gcm::Nonce::from_slice(&nonce);
                let tag = aes_gcm::Tag::from_slice(tag);
                let ok = match &self.cipher {
                    Cipher::Aes128Gcm(c, _) => c.decrypt_in_place_detached(nonce, aad, out, tag),
                    Cipher::Aes256Gcm(c, _) => c.decrypt_in_place_detached(nonce, aad, out, tag),
                    Cipher::ChaCha(c, _) => c.decrypt_in_place_detached(nonce, aad, out, tag),
                    Cipher::Cbc { .. } => Err(aes_gcm::Error),
                };
                if ok.is_err() {
                    out.clear();
                    return Err(DecryptError::BadRecordMac);
                }
                if self.tls13 {
                    // TLSInnerPlaintext: content, the real type, then zero padding.
                    let end = out.iter().rposition(|&b| b != 0).ok_or(DecryptError::NoContentType)?;
                    let inner = out.get(end).copied().and_then(ContentType::from_u8);
                    out.truncate(end);
                    inner.ok_or(DecryptError::NoContentType)?
                } else {
                    record.content_type
                }
            }
            Cipher::Cbc { key, mac_key, mac, encrypt_then_mac } => {
                let mac_len = mac.output_len();
                let (iv, rest) = fragment.split_at_checked(16).ok_or(DecryptError::TooShort)?;
                let (ciphertext, tag) = if *encrypt_then_mac {
                    let split = rest.len().checked_sub(mac_len).ok_or(DecryptError::TooShort)?;
                    let (c, t) = rest.split_at(split);
                    if !hmac_verify(*mac, mac_key, &[&tls12_aad(16 + c.len()), iv, c], t) {
                        return Err(DecryptError::BadRecordMac);
                    }
                    (c, Some(t))
                } else {
                    (rest, None)
                };
                if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(16) {
                    return Err(DecryptError::TooShort);
                }
                out.extend_from_slice(ciphertext);
                let decrypted = match key.len() {
                    16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
                        .ok()
                        .and_then(|d| d.decrypt_padded_mut::<NoPadding>(out).ok().map(|p| p.len())),
                    _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
                        .ok()
                        .and_then(|d| d.decrypt_padded_mut::<NoPadding>(out).ok().map(|p| p.len())),
                };
                if decrypted != Some(ciphertext.len()) {
                    out.clear();
                    return Err(DecryptError::TooShort);
                }
                // Padding: `pad` bytes of value `pad`, then the length byte itself.
                let pad = usize::from(out.last().copied().unwrap_or(0));
                let trailer = pad + 1 + if tag.is_none() { mac_len } else { 0 };
                let good_padding = out.len() >= trailer
                    && out.get(out.len() - pad - 1..).is_some_and(|p| p.iter().all(|&b| usize::from(b) == pad));
                if !good_padding {
                    out.clear();
                    return Err(DecryptError::BadRecordMac);
                }
                out.truncate(out.len() - pad - 1);
                if tag.is_none() {
                    let plain_len = out.len() - mac_len;
                    let ok = {
                        let (plain, tag) = out.split_at(plain_len);
                        hmac_verify(*mac, mac_key, &[&tls12_aad(plain_len), plain], tag)
                    };
                    if !ok {
                        out.clear();
                        return Err(DecryptError::BadRecordMac);
                    }
                    out.truncate(plain_len);
                }
                record.content_type
            }
        };
        self.seq = self.seq.wrapping_add(1);
        Ok(content_type)
    }
}

/// Verifies an HMAC over the concatenation of `parts` (in constant time).
fn hmac_verify(alg: HashAlg, key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    fn verify<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
        let Ok(mut mac) = <M as KeyInit>::new_from_slice(key) else { return false };
        for part in parts {
            mac.update(part);
        }
        mac.verify_slice(tag).is_ok()
    }
    match alg {
        HashAlg::Sha1 => verify::<Hmac<Sha1>>(key, parts, tag),
        HashAlg::Sha256 => verify::<Hmac<Sha256>>(key, parts, tag),
        HashAlg::Sha384 => verify::<Hmac<Sha384>>(key, parts, tag),
    }
}

/// The TLS 1.2 PRF (RFC 5246 5): P_hash(secret, label + seed) into `out`.
pub fn prf(alg: HashAlg, secret: &[u8], label: &[u8], seed: &[&[u8]], out: &mut [u8]) -> Option<()> {
    fn p_hash<M: Mac + KeyInit + Clone>(secret: &[u8], seed: &[&[u8]], out: &mut [u8]) -> Option<()> {
        let base = <M as KeyInit>::new_from_slice(secret).ok()?;
        // A(1) = HMAC(secret, seed); A(i) = HMAC(secret, A(i-1)).
        let mut a = {
            let mut m = base.clone();
            seed.iter().for_each(|s| m.update(s));
            m.finalize().into_bytes()
        };
        for chunk in out.chunks_mut(a.len()) {
            let mut m = base.clone();
            m.update(&a);
            seed.iter().for_each(|s| m.update(s));
            let block = m.finalize().into_bytes();
            chunk.copy_from_slice(block.get(..chunk.len())?);
            let mut m = base.clone();
            m.update(&a);
            a = m.finalize().into_bytes();
        }
        Some(())
    }
    let mut full: Vec<&[u8]> = vec![label];
    full.extend_from_slice(seed);
    match alg {
        HashAlg::Sha256 => p_hash::<Hmac<Sha256>>(secret, &full, out),
        HashAlg::Sha384 => p_hash::<Hmac<Sha384>>(secret, &full, out),
        HashAlg::Sha1 => None,
    }
}

/// HKDF-Expand-Label (RFC 8446 7.1) with an empty context.
pub fn expand_label(alg: HashAlg, secret: &[u8], label: &[u8], len: usize) -> Option<Vec<u8>> {
    let mut info = Vec::with_capacity(10 + label.len());
    info.extend_from_slice(&u16::try_from(len).ok()?.to_be_bytes());
    info.push(u8::try_from(6 + label.len()).ok()?);
    info.extend_from_slice(b"tls13 ");
    info.extend_from_slice(label);
    info.push(0);
    let mut out = vec![0u8; len];
    match alg {
        HashAlg::Sha256 => Hkdf::<Sha256>::from_prk(secret).ok()?.expand(&info, &mut out).ok()?,
        HashAlg::Sha384 => Hkdf::<Sha384>::from_prk(secret).ok()?.expand(&info, &mut out).ok()?,
        HashAlg::Sha1 => return None,
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn tls13_keys_from_rfc_8448() {
        // RFC 8448 3 (simple 1-RTT handshake): the server handshake traffic secret and the
        // key and IV derived from it.
        let secret =
            unhex("b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38");
        assert_eq!(
            expand_label(HashAlg::Sha256, &secret, b"key", 16).unwrap(),
            unhex("3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc")
        );
        assert_eq!(
            expand_label(HashAlg::Sha256, &secret, b"iv", 12).unwrap(),
            unhex("5d 31 3e b2 67 12 76 ee 13 00 0b 30")
        );
    }

    /// A TLS 1.3 record of `inner` (content then type 22) protected with `secret`'s keys at
    /// sequence `seq`, made with the AEAD crate directly.
    fn seal13(secret: &[u8], seq: u64, inner: &[u8]) -> Vec<u8> {
        let key = expand_label(HashAlg::Sha256, secret, b"key", 16).unwrap();
        let mut nonce: [u8; 12] = expand_label(HashAlg::Sha256, secret, b"iv", 12).unwrap().try_into().unwrap();
        for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
            *n ^= s;
        }
        let mut body = inner.to_vec();
        body.extend_from_slice(&[22, 0, 0]);
        let header = [23, 3, 3, 0, (body.len() + 16) as u8];
        let cipher = Aes128Gcm::new_from_slice(&key).unwrap();
        let tag = cipher.encrypt_in_place_detached(aes_gcm::Nonce::from_slice(&nonce), &header, &mut body).unwrap();
        [&header[..], &body, &tag].concat()
    }

    #[test]
    fn tls13_records_decrypt_in_sequence_and_a_wrong_key_yields_nothing() {
        let secret = [7u8; 32];
        let suite = CipherSuite::by_id(0x1301).unwrap();
        let mut keys = RecordKeys::tls13(suite, &secret).unwrap();
        let (first, second) = (seal13(&secret, 0, b"hello"), seal13(&secret, 1, b"world"));
        let mut out = Vec::new();
        let mut wrong = RecordKeys::tls13(suite, &[8u8; 32]).unwrap();
        let (record, _) = Record::parse(&first).unwrap();
        assert_eq!(wrong.decrypt(&record, &mut out), Err(DecryptError::BadRecordMac));
        assert_eq!((wrong.sequence(), out.len()), (0, 0));
        // Out of sequence: the nonce differs, the tag fails.
        let (record2, _) = Record::parse(&second).unwrap();
        assert_eq!(keys.decrypt(&record2, &mut out), Err(DecryptError::BadRecordMac));
        assert_eq!(keys.decrypt(&record, &mut out), Ok(ContentType::Handshake));
        assert_eq!((out.as_slice(), keys.sequence()), (&b"hello"[..], 1));
        assert_eq!(keys.decrypt(&record2, &mut out), Ok(ContentType::Handshake));
        assert_eq!(out, b"world");
        // After a KeyUpdate, the next secret's records.
        let next = expand_label(HashAlg::Sha256, &secret, b"traffic upd", 32).unwrap();
        assert!(keys.key_update());
        let third = seal13(&next, 0, b"again");
        let (record3, _) = Record::parse(&third).unwrap();
        assert_eq!(keys.decrypt(&record3, &mut out), Ok(ContentType::Handshake));
        assert_eq!(out, b"again");
    }

    #[test]
    fn tls12_prf_from_the_ietf_test_vector() {
        // The PRF-SHA256 test vector circulated on the TLS working group's list (used by
        // most TLS libraries' tests): 100 bytes of output.
        let secret = unhex("9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35");
        let seed = unhex("a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c");
        let mut out = [0u8; 100];
        prf(HashAlg::Sha256, &secret, b"test label", &[&seed], &mut out).unwrap();
        assert_eq!(
            out.to_vec(),
            unhex(
                "e3 f2 29 ba 72 7b e1 7b 8d 12 26 20 55 7c d4 53 c2 aa b2 1d 07 c3 d4 95 32 9b 52 d4 e6 1e db 5a 6b 30 17 91 e9 0d 35 c9 c9 a4 6b 4e 14 ba f9 af 0f a0 22 f7 07 7d ef 17 ab fd 37 97 c0 56 4b ab 4f bc 91 66 6e 9d ef 9b 97 fc e3 4f 79 67 89 ba a4 80 82 d1 22 ee 42 c5 a7 2e 5a 51 10 ff f7 01 87 34 7b 66"
            )
        );
    }

    #[test]
    fn suites_have_the_key_lengths_their_names_say() {
        for s in SUITES {
            let bits = if s.name.contains("AES_128") { 16 } else { 32 };
            assert_eq!(s.bulk.key_len(), bits, "{}", s.name);
            assert_eq!(s.tls13, s.id >> 8 == 0x13, "{}", s.name);
            assert_eq!(s.prf == HashAlg::Sha384, s.name.ends_with("SHA384"), "{}", s.name);
        }
    }
}
