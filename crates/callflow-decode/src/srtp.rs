//! SRTP (RFC 3711): the crypto suites SDP security descriptions negotiate (RFC 4568, RFC 6188, RFC 7714), what each adds to a packet, and SRTCP decryption.
//!
//! [`SrtpSuite`] names a suite as an `a=crypto` line writes it and says what the
//! analysis needs of it: the lengths of its master key and salt (to check an inline key)
//! and of its authentication tags, which SRTP appends after the encrypted payload and
//! which are therefore not payload. SRTCP's tag is 80 bits for both HMAC-SHA1 suites:
//! `_32` shortens SRTP's tag only (RFC 4568 section 6.2.2).
//!
//! [`SrtcpContext`] decrypts one sender's SRTCP with the master key and salt its
//! `a=crypto` line gave. Every primitive is a RustCrypto crate's (`aes` with `ctr`,
//! `hmac` with `sha1`, `aes-gcm`); this module lays out what SRTP puts around them:
//!
//! - Key derivation (RFC 3711 section 4.3, AES-CM as the PRF, RFC 6188 for AES-192/256):
//!   each session key is the keystream of the master key at IV `(label || r) XOR salt`,
//!   shifted 16 bits; SRTCP's labels are 3 (cipher key), 4 (authentication key) and 5
//!   (salt), and `r` is the SRTCP index divided by the key derivation rate (0 without
//!   `KDR`). A 96-bit GCM master salt is padded with zeros to 112 bits, as libsrtp does.
//! - AES-CM with HMAC-SHA1 (RFC 3711 section 3.4): the packet is the RTCP header (8 bytes
//!   in clear), the encrypted rest, the E flag and 31-bit SRTCP index, the MKI if any, and
//!   an 80-bit tag over everything before the MKI (80 bits under the `_32` suites too, which
//!   shorten SRTP's tag only; a 32-bit SRTCP tag is tried when 80 bits do not authenticate). The counter is the session salt XOR the
//!   SSRC (bits 64-95) XOR the index (bits 16-47).
//! - AEAD_AES_128_GCM and AEAD_AES_256_GCM (RFC 7714 section 9): the 16-byte tag ends the
//!   ciphertext, then come the E flag and index, then the MKI; the 12-byte IV is the
//!   session salt XOR `00 00 || SSRC || 00 00 || index`, and the additional data the header
//!   and the index word (the whole packet before the tag when E is 0).
//!
//! DTLS-SRTP says its suite in the handshake, not in the SDP: [`dtls_srtp_profile`] reads
//! it from a DTLS 1.2 ServerHello's `use_srtp` extension (RFC 5764 section 4.1.2), which
//! is sent in clear on the media port (DTLS 1.3 encrypts it).
//!
//! The tag is checked before anything is decrypted: a packet that does not authenticate
//! is an error ([`SrtpError::Authentication`]) and yields nothing. `F8_128_HMAC_SHA1_80` and
//! unknown suites are not decrypted.

use crate::tls::ServerHello;
use aes::{Aes128, Aes192, Aes256};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::fmt;

/// An SRTP crypto suite, as `a=crypto` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SrtpSuite {
    /// `AES_CM_128_HMAC_SHA1_80` (RFC 4568): AES-128 in counter mode, 80-bit HMAC-SHA1 tags.
    AesCm128HmacSha1_80,
    /// `AES_CM_128_HMAC_SHA1_32` (RFC 4568): as `_80`, with 32-bit SRTP tags.
    AesCm128HmacSha1_32,
    /// `AES_192_CM_HMAC_SHA1_80` (RFC 6188).
    AesCm192HmacSha1_80,
    /// `AES_192_CM_HMAC_SHA1_32` (RFC 6188).
    AesCm192HmacSha1_32,
    /// `AES_256_CM_HMAC_SHA1_80` (RFC 6188).
    AesCm256HmacSha1_80,
    /// `AES_256_CM_HMAC_SHA1_32` (RFC 6188).
    AesCm256HmacSha1_32,
    /// `F8_128_HMAC_SHA1_80` (RFC 4568): AES-128 in f8 mode.
    F8_128HmacSha1_80,
    /// `AEAD_AES_128_GCM` (RFC 7714): AES-128-GCM, 128-bit tags.
    AeadAes128Gcm,
    /// `AEAD_AES_256_GCM` (RFC 7714): AES-256-GCM, 128-bit tags.
    AeadAes256Gcm,
    /// A suite this module does not know (its name stays in the attribute).
    Unknown,
}

impl SrtpSuite {
    /// The suite `name` names, in any case (ABNF's strings are case-insensitive); other
    /// names are [`SrtpSuite::Unknown`].
    pub fn from_name(name: &str) -> SrtpSuite {
        const KNOWN: [SrtpSuite; 9] = [
            SrtpSuite::AesCm128HmacSha1_80,
            SrtpSuite::AesCm128HmacSha1_32,
            SrtpSuite::AesCm192HmacSha1_80,
            SrtpSuite::AesCm192HmacSha1_32,
            SrtpSuite::AesCm256HmacSha1_80,
            SrtpSuite::AesCm256HmacSha1_32,
            SrtpSuite::F8_128HmacSha1_80,
            SrtpSuite::AeadAes128Gcm,
            SrtpSuite::AeadAes256Gcm,
        ];
        KNOWN.into_iter().find(|s| s.name().eq_ignore_ascii_case(name)).unwrap_or(SrtpSuite::Unknown)
    }

    /// The registered name (`"unknown"` for [`SrtpSuite::Unknown`]).
    pub fn name(self) -> &'static str {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            SrtpSuite::AesCm192HmacSha1_80 => "AES_192_CM_HMAC_SHA1_80",
            SrtpSuite::AesCm192HmacSha1_32 => "AES_192_CM_HMAC_SHA1_32",
            SrtpSuite::AesCm256HmacSha1_80 => "AES_256_CM_HMAC_SHA1_80",
            SrtpSuite::AesCm256HmacSha1_32 => "AES_256_CM_HMAC_SHA1_32",
            SrtpSuite::F8_128HmacSha1_80 => "F8_128_HMAC_SHA1_80",
            SrtpSuite::AeadAes128Gcm => "AEAD_AES_128_GCM",
            SrtpSuite::AeadAes256Gcm => "AEAD_AES_256_GCM",
            SrtpSuite::Unknown => "unknown",
        }
    }

    /// The master key's length in bytes (`None` when unknown).
    pub fn master_key_len(self) -> Option<usize> {
        match self {
            SrtpSuite::AesCm128HmacSha1_80
            | SrtpSuite::AesCm128HmacSha1_32
            | SrtpSuite::F8_128HmacSha1_80
            | SrtpSuite::AeadAes128Gcm => Some(16),
            SrtpSuite::AesCm192HmacSha1_80 | SrtpSuite::AesCm192HmacSha1_32 => Some(24),
            SrtpSuite::AesCm256HmacSha1_80 | SrtpSuite::AesCm256HmacSha1_32 | SrtpSuite::AeadAes256Gcm => Some(32),
            SrtpSuite::Unknown => None,
        }
    }

    /// The master salt's length in bytes: 112 bits, 96 for the GCM suites (`None` when unknown).
    pub fn master_salt_len(self) -> Option<usize> {
        match self {
            SrtpSuite::AeadAes128Gcm | SrtpSuite::AeadAes256Gcm => Some(12),
            SrtpSuite::Unknown => None,
            _ => Some(14),
        }
    }

    /// The authentication tag SRTP appends to each RTP packet, in bytes (`None` when unknown).
    pub fn srtp_tag_len(self) -> Option<usize> {
        match self {
            SrtpSuite::AesCm128HmacSha1_80
            | SrtpSuite::AesCm192HmacSha1_80
            | SrtpSuite::AesCm256HmacSha1_80
            | SrtpSuite::F8_128HmacSha1_80 => Some(10),
            SrtpSuite::AesCm128HmacSha1_32 | SrtpSuite::AesCm192HmacSha1_32 | SrtpSuite::AesCm256HmacSha1_32 => Some(4),
            SrtpSuite::AeadAes128Gcm | SrtpSuite::AeadAes256Gcm => Some(16),
            SrtpSuite::Unknown => None,
        }
    }

    /// The authentication tag SRTCP appends to each RTCP packet, in bytes: 80 bits for
    /// every HMAC-SHA1 suite, 128 for GCM (`None` when unknown).
    pub fn srtcp_tag_len(self) -> Option<usize> {
        match self {
            SrtpSuite::AeadAes128Gcm | SrtpSuite::AeadAes256Gcm => Some(16),
            SrtpSuite::Unknown => None,
            _ => Some(10),
        }
    }
}

/// The SRTP authentication tag assumed when no suite is known (DTLS-SRTP negotiates it in
/// its handshake, which DTLS 1.3 encrypts and a capture may miss): 80 bits, as
/// `SRTP_AES128_CM_HMAC_SHA1_80`, the profile every DTLS-SRTP endpoint must offer
/// (RFC 5764 section 4.1.2).
pub const ASSUMED_SRTP_TAG_LEN: usize = 10;

/// The SRTP suite a DTLS 1.2 ServerHello in `datagram` chose through `use_srtp` (RFC 5764
/// section 4.1.2; profile ids of RFC 5764 and RFC 7714), or `None` when the datagram holds
/// none: not DTLS, another handshake message, a ServerHello in fragments or without the
/// extension, or a profile that is no suite here (the NULL ones).
pub fn dtls_srtp_profile(datagram: &[u8]) -> Option<SrtpSuite> {
    const RECORD_HEADER: usize = 13;
    const HANDSHAKE_HEADER: usize = 12;
    const HANDSHAKE: u8 = 22;
    const SERVER_HELLO: u8 = 2;
    let u24 = |b: &[u8]| b.iter().fold(0usize, |n, x| (n << 8) | usize::from(*x));
    let mut rest = datagram;
    // A datagram may carry several records: the ServerHello, the certificate, ...
    while rest.len() >= RECORD_HEADER {
        let len = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
        let record = rest.get(RECORD_HEADER..RECORD_HEADER + len)?;
        // DTLS 1.0/1.2 (0xfeff, 0xfefd), epoch 0: the handshake is still in clear.
        if rest[0] == HANDSHAKE && rest[1] == 0xfe && rest[3..5] == [0, 0] && record.len() >= HANDSHAKE_HEADER {
            let (length, offset, fragment) = (u24(&record[1..4]), u24(&record[6..9]), u24(&record[9..12]));
            let body = &record[HANDSHAKE_HEADER..];
            if record[0] == SERVER_HELLO && offset == 0 && fragment == length && body.len() >= length {
                let hello = ServerHello::parse(&body[..length]).ok()?;
                let data = hello.extensions.use_srtp?;
                // SRTPProtectionProfiles (vec16 of ids), then srtp_mki (vec8).
                let (list_len, profile) = (data.get(..2)?, data.get(2..4)?);
                if u16::from_be_bytes([list_len[0], list_len[1]]) < 2 {
                    return None;
                }
                return match u16::from_be_bytes([profile[0], profile[1]]) {
                    0x0001 => Some(SrtpSuite::AesCm128HmacSha1_80),
                    0x0002 => Some(SrtpSuite::AesCm128HmacSha1_32),
                    0x0007 => Some(SrtpSuite::AeadAes128Gcm),
                    0x0008 => Some(SrtpSuite::AeadAes256Gcm),
                    _ => None,
                };
            }
        }
        rest = &rest[RECORD_HEADER + len..];
    }
    None
}

/// Why an SRTCP packet was not decrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SrtpError {
    /// The packet is shorter than its header, index word, MKI and tag.
    #[error("srtcp: truncated: {len} bytes, at least {needed} needed")]
    Truncated {
        /// The packet's length.
        len: usize,
        /// The least a packet of the suite takes.
        needed: usize,
    },
    /// The packet carries another key's MKI.
    #[error("srtcp: the packet names another master key (MKI)")]
    OtherKey,
    /// The authentication tag does not match: a wrong key, or a damaged packet.
    #[error("srtcp: authentication failed")]
    Authentication,
    /// The suite is not one this module decrypts (F8, an unknown suite).
    #[error("srtcp: suite {0} is not decrypted")]
    UnsupportedSuite(&'static str),
    /// The master key or salt is not of the suite's length.
    #[error("srtcp: the master key and salt are not of the suite's length")]
    KeyLength,
}

/// What a decrypted SRTCP packet said of itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Srtcp {
    /// The SRTCP index (31 bits).
    pub index: u32,
    /// The E flag: the packet was encrypted (else only authenticated).
    pub encrypted: bool,
}

/// The session keys of one key derivation (one value of `r`).
struct SessionKeys {
    r: u64,
    cipher: [u8; 32],
    salt: [u8; 14],
    /// HMAC-SHA1 keyed with the session authentication key (CM suites only).
    auth: Option<Hmac<Sha1>>,
}

/// Decrypts the SRTCP of one sender: a master key and salt from an `a=crypto` line.
pub struct SrtcpContext {
    suite: SrtpSuite,
    master_key: [u8; 32],
    master_salt: [u8; 14],
    /// Packets carry an MKI of this value and length.
    mki: Option<(u64, usize)>,
    /// The key derivation rate's exponent: keys change every 2^kdr packets (0: never).
    kdr: u8,
    keys: SessionKeys,
}

/// Keys stay out of debug output.
impl fmt::Debug for SrtcpContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtcpContext").field("suite", &self.suite).field("kdr", &self.kdr).finish_non_exhaustive()
    }
}

/// The SRTCP key derivation labels (RFC 3711 section 4.3.2).
const LABEL_CIPHER: u8 = 3;
const LABEL_AUTH: u8 = 4;
const LABEL_SALT: u8 = 5;

/// The most bytes of MKI the context compares (longer ones are skipped unchecked).
const MKI_COMPARED: usize = 8;

impl SrtcpContext {
    /// A context for `suite` from its master key followed by its master salt (`key_salt`,
    /// as an inline key gives them), with the MKI packets carry (value, length in bytes)
    /// and the key derivation rate's exponent (`KDR`, 0 when not given).
    pub fn new(suite: SrtpSuite, key_salt: &[u8], mki: Option<(u64, usize)>, kdr: u8) -> Result<Self, SrtpError> {
        if matches!(suite, SrtpSuite::F8_128HmacSha1_80 | SrtpSuite::Unknown) {
            return Err(SrtpError::UnsupportedSuite(suite.name()));
        }
        let (Some(key_len), Some(salt_len)) = (suite.master_key_len(), suite.master_salt_len()) else {
            return Err(SrtpError::UnsupportedSuite(suite.name()));
        };
        if key_salt.len() != key_len + salt_len || kdr > 48 {
            return Err(SrtpError::KeyLength);
        }
        let mut master_key = [0; 32];
        let mut master_salt = [0; 14];
        master_key[..key_len].copy_from_slice(&key_salt[..key_len]);
        // A 96-bit salt is padded with zeros on the right (libsrtp's layout).
        master_salt[..salt_len].copy_from_slice(&key_salt[key_len..]);
        let mut ctx = SrtcpContext {
            suite,
            master_key,
            master_salt,
            mki,
            kdr,
            keys: SessionKeys { r: u64::MAX, cipher: [0; 32], salt: [0; 14], auth: None },
        };
        ctx.derive(0);
        Ok(ctx)
    }

    /// The suite.
    pub fn suite(&self) -> SrtpSuite {
        self.suite
    }

    fn key_len(&self) -> usize {
        self.suite.master_key_len().unwrap_or(16)
    }

    fn is_gcm(&self) -> bool {
        matches!(self.suite, SrtpSuite::AeadAes128Gcm | SrtpSuite::AeadAes256Gcm)
    }

    /// Derives the session keys for `r` (the index divided by the key derivation rate).
    fn derive(&mut self, r: u64) {
        if self.keys.r == r {
            return;
        }
        let key_len = self.key_len();
        let (master_key, master_salt) = (&self.master_key[..key_len], &self.master_salt);
        let mut cipher = [0; 32];
        derive_key(master_key, master_salt, LABEL_CIPHER, r, &mut cipher[..key_len]);
        let mut salt = [0; 14];
        let salt_len = self.suite.master_salt_len().unwrap_or(14);
        derive_key(master_key, master_salt, LABEL_SALT, r, &mut salt[..salt_len]);
        let auth = (!self.is_gcm()).then(|| {
            let mut key = [0; 20];
            derive_key(master_key, master_salt, LABEL_AUTH, r, &mut key);
            <Hmac<Sha1> as Mac>::new_from_slice(&key).expect("HMAC takes keys of any length")
        });
        self.keys = SessionKeys { r, cipher, salt, auth };
    }

    /// Checks and decrypts one SRTCP packet, writing the compound RTCP packet it carries
    /// (header included) into `out` (cleared first). Nothing is written unless the packet
    /// authenticates.
    pub fn decrypt(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<Srtcp, SrtpError> {
        let tag_len = self.suite.srtcp_tag_len().unwrap_or(10);
        let first = self.decrypt_with(packet, tag_len, out);
        // Under a `_32` suite SRTCP's tag is still 80 bits (RFC 4568 section 6.2.2, as
        // libsrtp sends it); a sender that took the suite's name for SRTCP too (as Wireshark
        // 4.0 reads it) sends 32, which is tried when 80 did not authenticate.
        match first {
            Err(SrtpError::Authentication | SrtpError::OtherKey | SrtpError::Truncated { .. })
                if self.suite.srtp_tag_len() == Some(4) =>
            {
                self.decrypt_with(packet, 4, out).or(first)
            }
            _ => first,
        }
    }

    /// [`SrtcpContext::decrypt`] with a tag of `tag_len` bytes (HMAC-SHA1 suites).
    fn decrypt_with(&mut self, packet: &[u8], tag_len: usize, out: &mut Vec<u8>) -> Result<Srtcp, SrtpError> {
        out.clear();
        let mki_len = self.mki.map_or(0, |(_, len)| len);
        let needed = 8 + 4 + mki_len + tag_len;
        if packet.len() < needed {
            return Err(SrtpError::Truncated { len: packet.len(), needed });
        }
        // Where the index word and the MKI sit: GCM puts its tag before them.
        let (word_at, mki_at) = if self.is_gcm() {
            (packet.len() - mki_len - 4, packet.len() - mki_len)
        } else {
            (packet.len() - tag_len - mki_len - 4, packet.len() - tag_len - mki_len)
        };
        if let Some((value, len)) = self.mki {
            let mki = &packet[mki_at..mki_at + len];
            let tail = &mki[len.saturating_sub(MKI_COMPARED)..];
            let got = tail.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            let head_zero = mki[..len.saturating_sub(MKI_COMPARED)].iter().all(|b| *b == 0);
            if got != value || !head_zero {
                return Err(SrtpError::OtherKey);
            }
        }
        let word = u32::from_be_bytes([packet[word_at], packet[word_at + 1], packet[word_at + 2], packet[word_at + 3]]);
        let (encrypted, index) = (word >> 31 == 1, word & 0x7fff_ffff);
        self.derive(u64::from(index).checked_shr(u32::from(self.kdr)).filter(|_| self.kdr > 0).unwrap_or(0));
        let ssrc = [packet[4], packet[5], packet[6], packet[7]];
        if self.is_gcm() {
            self.open_gcm(packet, word_at, ssrc, index, encrypted, out)?;
        } else {
            self.open_cm(packet, word_at, mki_at, ssrc, index, encrypted, out)?;
        }
        Ok(Srtcp { index, encrypted })
    }

    /// AES-CM with HMAC-SHA1: the tag over header, payload and index word, then the counter mode.
    #[allow(clippy::too_many_arguments)]
    fn open_cm(
        &self,
        packet: &[u8],
        word_at: usize,
        mki_at: usize,
        ssrc: [u8; 4],
        index: u32,
        encrypted: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), SrtpError> {
        let mki_len = self.mki.map_or(0, |(_, len)| len);
        let tag = &packet[mki_at + mki_len..];
        let mut mac = self.keys.auth.clone().ok_or(SrtpError::Authentication)?;
        mac.update(&packet[..word_at + 4]);
        mac.verify_truncated_left(tag).map_err(|_| SrtpError::Authentication)?;
        out.extend_from_slice(&packet[..word_at]);
        if encrypted {
            let mut iv = [0u8; 16];
            iv[..14].copy_from_slice(&self.keys.salt);
            for (i, b) in ssrc.iter().enumerate() {
                iv[4 + i] ^= b;
            }
            for (i, b) in index.to_be_bytes().iter().enumerate() {
                iv[10 + i] ^= b;
            }
            aes_cm(&self.keys.cipher[..self.key_len()], &iv, &mut out[8..]);
        }
        Ok(())
    }

    /// AEAD AES-GCM: the IV from the salt, SSRC and index; the header and index word as
    /// additional data (and the payload too when it is not encrypted).
    fn open_gcm(
        &self,
        packet: &[u8],
        word_at: usize,
        ssrc: [u8; 4],
        index: u32,
        encrypted: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), SrtpError> {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc);
        iv[8..12].copy_from_slice(&index.to_be_bytes());
        for (b, s) in iv.iter_mut().zip(&self.keys.salt[..12]) {
            *b ^= s;
        }
        let key = &self.keys.cipher[..self.key_len()];
        match self.suite {
            SrtpSuite::AeadAes256Gcm => gcm_open::<Aes256Gcm>(key, &iv, packet, word_at, encrypted, out),
            _ => gcm_open::<Aes128Gcm>(key, &iv, packet, word_at, encrypted, out),
        }
    }
}

/// Opens a GCM SRTCP packet (index word at `word_at`, the 16-byte tag before it) with
/// cipher `C` under `key` and `iv` into `out`, which holds nothing unless it authenticates.
fn gcm_open<C: KeyInit + AeadInPlace>(
    key: &[u8],
    iv: &[u8; 12],
    packet: &[u8],
    word_at: usize,
    encrypted: bool,
    out: &mut Vec<u8>,
) -> Result<(), SrtpError> {
    let cipher = C::new_from_slice(key).map_err(|_| SrtpError::KeyLength)?;
    let tag_at = word_at - 16;
    let tag = aes_gcm::aead::Tag::<C>::from_slice(&packet[tag_at..word_at]);
    let word = &packet[word_at..word_at + 4];
    let nonce = aes_gcm::aead::Nonce::<C>::from_slice(iv);
    // Encrypted, the ciphertext is opened in place in `out`, after the clear header; else
    // the whole packet before the tag is additional data and nothing is encrypted.
    out.extend_from_slice(&packet[..tag_at]);
    let mut aad = [0u8; 12];
    let unencrypted_aad;
    let (aad, body): (&[u8], &mut [u8]) = if encrypted {
        aad[..8].copy_from_slice(&packet[..8]);
        aad[8..].copy_from_slice(word);
        (&aad, &mut out[8..])
    } else {
        unencrypted_aad = [&packet[..tag_at], word].concat();
        (&unencrypted_aad, &mut [])
    };
    if cipher.decrypt_in_place_detached(nonce, aad, body, tag).is_err() {
        out.clear();
        return Err(SrtpError::Authentication);
    }
    Ok(())
}

/// XORs `data` with AES-CM's keystream (AES in counter mode, the counter being the whole
/// 128-bit block, big-endian) under `key` (16, 24 or 32 bytes) from `iv`.
fn aes_cm(key: &[u8], iv: &[u8; 16], data: &mut [u8]) {
    // The keys are the master key (checked by `SrtcpContext::new`) or derived from it.
    match key.len() {
        16 => ctr::Ctr128BE::<Aes128>::new(key.into(), iv.into()).apply_keystream(data),
        24 => ctr::Ctr128BE::<Aes192>::new(key.into(), iv.into()).apply_keystream(data),
        32 => ctr::Ctr128BE::<Aes256>::new(key.into(), iv.into()).apply_keystream(data),
        _ => {}
    }
}

/// RFC 3711 section 4.3.1: the session key of `label` for `r`, from the master key and the
/// (112-bit, zero-padded) master salt, written into `out` (its length is the key's).
fn derive_key(master_key: &[u8], master_salt: &[u8; 14], label: u8, r: u64, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(master_salt);
    // key_id = label || r (48 bits), aligned on the salt's least significant bits.
    iv[7] ^= label;
    for (i, b) in r.to_be_bytes()[2..].iter().enumerate() {
        iv[8 + i] ^= b;
    }
    out.fill(0);
    aes_cm(master_key, &iv, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_round_trip_their_names_and_tag_lengths() {
        let all = [
            (SrtpSuite::AesCm128HmacSha1_80, 16, 14, 10, 10),
            (SrtpSuite::AesCm128HmacSha1_32, 16, 14, 4, 10),
            (SrtpSuite::AesCm192HmacSha1_80, 24, 14, 10, 10),
            (SrtpSuite::AesCm192HmacSha1_32, 24, 14, 4, 10),
            (SrtpSuite::AesCm256HmacSha1_80, 32, 14, 10, 10),
            (SrtpSuite::AesCm256HmacSha1_32, 32, 14, 4, 10),
            (SrtpSuite::F8_128HmacSha1_80, 16, 14, 10, 10),
            (SrtpSuite::AeadAes128Gcm, 16, 12, 16, 16),
            (SrtpSuite::AeadAes256Gcm, 32, 12, 16, 16),
        ];
        for (suite, key, salt, tag, rtcp_tag) in all {
            assert_eq!(SrtpSuite::from_name(suite.name()), suite);
            let got = (suite.master_key_len(), suite.master_salt_len(), suite.srtp_tag_len(), suite.srtcp_tag_len());
            assert_eq!(got, (Some(key), Some(salt), Some(tag), Some(rtcp_tag)), "{suite:?}");
        }
        assert_eq!(SrtpSuite::from_name("aes_cm_128_hmac_sha1_80"), SrtpSuite::AesCm128HmacSha1_80);
        assert_eq!(SrtpSuite::from_name("AES_CM_128_HMAC_SHA1_81"), SrtpSuite::Unknown);
        assert_eq!(SrtpSuite::Unknown.srtp_tag_len(), None);
    }

    fn hex(text: &str) -> Vec<u8> {
        let text: String = text.split_whitespace().collect();
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
    }

    #[test]
    fn rfc3711_b2_aes_cm_keystream() {
        let key = hex("2B7E151628AED2A6ABF7158809CF4F3C");
        let iv: [u8; 16] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000").try_into().unwrap();
        // The RFC's segment: 65282 blocks, the first three and the last three given.
        let mut stream = vec![0u8; 65282 * 16];
        aes_cm(&key, &iv, &mut stream);
        let first =
            "E03EAD0935C95E80E166B16DD92B4EB4 D23513162B02D0F72A43A2FE4A5F97AB 41E95B3BB0A2E8DD477901E4FCA894C0";
        let last = "EC8CDF7398607CB0F2D21675EA9EA1E4 362B7C3C6773516318A077D7FC5073AE 6A2CC3787889374FBEB4C81B17BA6C44";
        assert_eq!(stream[..48], hex(first)[..]);
        assert_eq!(stream[stream.len() - 48..], hex(last)[..]);
    }

    #[test]
    fn rfc3711_b3_key_derivation() {
        let key = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let salt: [u8; 14] = hex("0EC675AD498AFEEBB6960B3AABE6").try_into().unwrap();
        let derive = |label, len| {
            let mut out = vec![0; len];
            derive_key(&key, &salt, label, 0, &mut out);
            out
        };
        assert_eq!(derive(0, 16), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        assert_eq!(derive(2, 14), hex("30CBBC08863D8C85D49DB34A9AE1"));
        let auth =
            "CEBE321F6FF7716B6FD4AB49AF256A15 6D38BAA48F0A0ACF3C34E2359E6CDBCE E049646C43D9327AD175578EF7227098 \
                    6371C10C9A369AC2F94A8C5FBCDDDC25 6D6E919A48B610EF17C2041E47403576 6B68642C59BBFC2F34DB60DBDFB2";
        assert_eq!(derive(1, 94), hex(auth));
        // With a key derivation rate, r (here the index itself, rate 1) sits in the IV's
        // low 48 bits: the vector OpenSSL's SRTP KDF tests carry.
        let key = hex("8C307F105F79D5D2C26B1A933AE22CD5");
        let salt: [u8; 14] = hex("563B4C15458D977B68080242CEE1").try_into().unwrap();
        let mut out = [0; 16];
        derive_key(&key, &salt, 0, 0x0828_4B49_F520, &mut out);
        assert_eq!(out[..], hex("A920DF50EAA111D03FBE9B203121C07D")[..]);
    }

    /// A DTLS 1.2 record (epoch 0) holding a ServerHello whose `use_srtp` chose `profile`.
    fn dtls_server_hello(profile: u16) -> Vec<u8> {
        let mut body = vec![0xfe, 0xfd];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&[0xc0, 0x2b, 0]);
        let use_srtp = [0, 14, 0, 5, 0, 2, (profile >> 8) as u8, profile as u8, 0];
        body.extend_from_slice(&(use_srtp.len() as u16 + 4).to_be_bytes());
        body.extend_from_slice(&[0xff, 0x01, 0, 0]);
        body.extend_from_slice(&use_srtp);
        let len = body.len() as u32;
        let mut handshake = vec![2];
        handshake.extend_from_slice(&len.to_be_bytes()[1..]);
        handshake.extend_from_slice(&[0, 0, 0, 0, 0]);
        handshake.extend_from_slice(&len.to_be_bytes()[1..]);
        handshake.extend_from_slice(&body);
        let mut record = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1];
        record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
        record.extend_from_slice(&handshake);
        record
    }

    #[test]
    fn dtls_srtp_profiles_are_read_from_the_server_hello() {
        for (profile, suite) in [
            (1, Some(SrtpSuite::AesCm128HmacSha1_80)),
            (2, Some(SrtpSuite::AesCm128HmacSha1_32)),
            (7, Some(SrtpSuite::AeadAes128Gcm)),
            (8, Some(SrtpSuite::AeadAes256Gcm)),
            (5, None),
        ] {
            assert_eq!(dtls_srtp_profile(&dtls_server_hello(profile)), suite, "{profile}");
        }
        // After another record in the same datagram (a HelloVerifyRequest, say).
        let mut two = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0];
        two.extend_from_slice(&dtls_server_hello(7));
        assert_eq!(dtls_srtp_profile(&two), Some(SrtpSuite::AeadAes128Gcm));
        // Every cut, a later epoch, another message, a fragment: nothing, and no panic.
        let hello = dtls_server_hello(7);
        for len in 0..hello.len() {
            assert_eq!(dtls_srtp_profile(&hello[..len]), None, "cut at {len}");
        }
        let mut epoch = hello.clone();
        epoch[4] = 1;
        let mut client_hello = hello.clone();
        client_hello[13] = 1;
        let mut fragment = hello.clone();
        fragment[24] -= 1;
        for other in [epoch, client_hello, fragment, vec![0x80; 40]] {
            assert_eq!(dtls_srtp_profile(&other), None);
        }
    }

    /// A context holding RFC 7714 section 17's session key and salt as they are (its
    /// vectors start after key derivation).
    fn rfc7714_context() -> SrtcpContext {
        let mut ctx = SrtcpContext::new(SrtpSuite::AeadAes128Gcm, &[0; 28], None, 0).unwrap();
        ctx.keys.cipher[..16].copy_from_slice(&hex("000102030405060708090a0b0c0d0e0f"));
        ctx.keys.salt[..12].copy_from_slice(&hex("517569642070726f2071756f"));
        ctx
    }

    const RFC7714_RTCP: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61 \
                                deadbeef deadbeef deadbeef deadbeef deadbeef";

    #[test]
    fn rfc7714_17_1_srtcp_aead_aes_128_gcm() {
        let packet = hex("81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7 6c06f32d \
             c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872 45d9eade 800005d4");
        let mut out = Vec::new();
        assert_eq!(rfc7714_context().decrypt(&packet, &mut out), Ok(Srtcp { index: 0x5d4, encrypted: true }));
        assert_eq!(out, hex(RFC7714_RTCP));
        // A bit flipped anywhere, the index included, and nothing comes out.
        for at in [0, 9, packet.len() - 20, packet.len() - 1] {
            let mut damaged = packet.clone();
            damaged[at] ^= 0x08;
            assert_eq!(rfc7714_context().decrypt(&damaged, &mut out), Err(SrtpError::Authentication), "byte {at}");
            assert_eq!(out, []);
        }
    }

    #[test]
    fn unencrypted_gcm_srtcp_is_authenticated_over_the_whole_packet() {
        // RFC 7714 section 9.3 with E = 0: no ciphertext; the tag covers the packet and the
        // index word as additional data. Made here with aes-gcm, as the RFC lays it out.
        let rtcp = hex(RFC7714_RTCP);
        let word = 0x0000_05d4u32.to_be_bytes();
        let iv = hex("517524055203726F207170BB");
        let cipher = Aes128Gcm::new_from_slice(&hex("000102030405060708090a0b0c0d0e0f")).unwrap();
        let aad = [&rtcp[..], &word].concat();
        let tag = cipher.encrypt_in_place_detached(aes_gcm::Nonce::from_slice(&iv), &aad, &mut []).unwrap();
        let packet = [&rtcp[..], &tag, &word].concat();
        let mut out = Vec::new();
        assert_eq!(rfc7714_context().decrypt(&packet, &mut out), Ok(Srtcp { index: 0x5d4, encrypted: false }));
        assert_eq!(out, rtcp);
        let mut damaged = packet.clone();
        damaged[20] ^= 1;
        assert_eq!(rfc7714_context().decrypt(&damaged, &mut out), Err(SrtpError::Authentication));
        assert_eq!(out, []);
    }

    /// SRTCP that libsrtp 2.5 (Debian's libsrtp2-1, through python3-pylibsrtp) protected:
    /// an SR with one report block, SSRC 0x12345678, SRTCP index 2, with keys 00 01 02 ...
    const LIBSRTP_RTCP: &str =
        "81c8000c123456780000123456780000000003e80000000500000320876543210500000300000064000000f01234567800008000";

    #[test]
    fn srtcp_protected_by_libsrtp_decrypts_under_each_suite() {
        let cases = [
            (
                SrtpSuite::AesCm128HmacSha1_80,
                30,
                "81c8000c12345678f4e419a5fd796df58a21bb125ea2f3b9c7073c6c2bfad9893c14505adfc7ea788837c5d25c014663a026621480000002c2c8c542b9684996a136",
            ),
            (
                SrtpSuite::AesCm128HmacSha1_32,
                30,
                "81c8000c12345678f4e419a5fd796df58a21bb125ea2f3b9c7073c6c2bfad9893c14505adfc7ea788837c5d25c014663a026621480000002c2c8c542b9684996a136",
            ),
            (
                SrtpSuite::AeadAes128Gcm,
                28,
                "81c8000c123456782ef9649700dec1c042d1611c87cdb5dad51eacf20a658b5ddec5fe8cec402b06fca8d8429ae0a450b7e58902d223e1287ff37676cdbe1e9427df881e80000002",
            ),
            (
                SrtpSuite::AeadAes256Gcm,
                44,
                "81c8000c12345678c2dcab9a4c2df7781540370a4cc372e93fe0e84383a49ae6df8ca1a9e2ba9c9e38f64c9778342591fef8993af9d9495ac97963a83f5014ec4dd217f580000002",
            ),
        ];
        for (suite, key_len, packet) in cases {
            let key: Vec<u8> = (0..key_len).collect();
            let mut ctx = SrtcpContext::new(suite, &key, None, 0).unwrap();
            let mut out = Vec::new();
            assert_eq!(ctx.decrypt(&hex(packet), &mut out), Ok(Srtcp { index: 2, encrypted: true }), "{suite:?}");
            assert_eq!(out, hex(LIBSRTP_RTCP), "{suite:?}");
            // Another key does not authenticate.
            let mut other = key.clone();
            other[0] ^= 1;
            let mut wrong = SrtcpContext::new(suite, &other, None, 0).unwrap();
            assert_eq!(wrong.decrypt(&hex(packet), &mut out), Err(SrtpError::Authentication), "{suite:?}");
            assert_eq!(out, []);
        }
    }

    /// Protects `rtcp` as RFC 3711 section 3.4 says, with the RustCrypto crates: what a
    /// sender using `key_salt` (AES_CM_128_HMAC_SHA1_80) with `mki` would send.
    fn protect_cm(key_salt: &[u8], rtcp: &[u8], index: u32, encrypt: bool, mki: &[u8]) -> Vec<u8> {
        let salt: [u8; 14] = key_salt[16..].try_into().unwrap();
        let (mut k, mut s, mut a) = ([0; 16], [0; 14], [0; 20]);
        derive_key(&key_salt[..16], &salt, 3, 0, &mut k);
        derive_key(&key_salt[..16], &salt, 5, 0, &mut s);
        derive_key(&key_salt[..16], &salt, 4, 0, &mut a);
        let mut out = rtcp.to_vec();
        if encrypt {
            let mut iv = [0; 16];
            iv[..14].copy_from_slice(&s);
            for i in 0..4 {
                iv[4 + i] ^= rtcp[4 + i];
                iv[10 + i] ^= index.to_be_bytes()[i];
            }
            aes_cm(&k, &iv, &mut out[8..]);
        }
        out.extend_from_slice(&(index | u32::from(encrypt) << 31).to_be_bytes());
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(&a).unwrap();
        mac.update(&out);
        let tag = mac.finalize().into_bytes();
        out.extend_from_slice(mki);
        out.extend_from_slice(&tag[..10]);
        out
    }

    #[test]
    fn a_32_bit_srtcp_tag_is_tried_under_the_32_suites_only() {
        let key: Vec<u8> = (100..130).collect();
        let rtcp = hex(LIBSRTP_RTCP);
        let mut short = protect_cm(&key, &rtcp, 5, true, &[]);
        short.truncate(short.len() - 6);
        let mut out = Vec::new();
        let mut ctx = SrtcpContext::new(SrtpSuite::AesCm128HmacSha1_32, &key, None, 0).unwrap();
        assert_eq!(ctx.decrypt(&short, &mut out), Ok(Srtcp { index: 5, encrypted: true }));
        assert_eq!(out, rtcp);
        let mut ctx = SrtcpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key, None, 0).unwrap();
        assert_eq!(ctx.decrypt(&short, &mut out), Err(SrtpError::Authentication));
        assert_eq!(out, []);
    }

    #[test]
    fn unencrypted_srtcp_mkis_and_truncated_packets() {
        let key: Vec<u8> = (100..130).collect();
        let rtcp = hex(LIBSRTP_RTCP);
        let mut out = Vec::new();
        // E = 0 (UNENCRYPTED_SRTCP): authenticated, in clear.
        let packet = protect_cm(&key, &rtcp, 7, false, &[]);
        let mut ctx = SrtcpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key, None, 0).unwrap();
        assert_eq!(ctx.decrypt(&packet, &mut out), Ok(Srtcp { index: 7, encrypted: false }));
        assert_eq!(out, rtcp);
        // An MKI of 4 bytes: the right one decrypts, another is another key's.
        let packet = protect_cm(&key, &rtcp, 9, true, &[0, 0, 1, 2]);
        let mut ctx = SrtcpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key, Some((0x102, 4)), 0).unwrap();
        assert_eq!(ctx.decrypt(&packet, &mut out), Ok(Srtcp { index: 9, encrypted: true }));
        assert_eq!(out, rtcp);
        let mut other = SrtcpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key, Some((3, 4)), 0).unwrap();
        assert_eq!(other.decrypt(&packet, &mut out), Err(SrtpError::OtherKey));
        // Truncated: shorter than header, index word, MKI and tag.
        assert_eq!(ctx.decrypt(&packet[..25], &mut out), Err(SrtpError::Truncated { len: 25, needed: 26 }));
        assert_eq!(ctx.decrypt(&[], &mut out), Err(SrtpError::Truncated { len: 0, needed: 26 }));
        // Cut by a byte, the tag no longer matches.
        assert_eq!(ctx.decrypt(&packet[..packet.len() - 1], &mut out), Err(SrtpError::OtherKey));
        assert_eq!(out, []);
        let plain =
            SrtcpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key, None, 0).unwrap().decrypt(&packet[..40], &mut out);
        assert_eq!(plain, Err(SrtpError::Authentication));
        // Keys of the wrong length, and suites not decrypted.
        assert_eq!(
            SrtcpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key[..29], None, 0).err(),
            Some(SrtpError::KeyLength)
        );
        assert_eq!(
            SrtcpContext::new(SrtpSuite::F8_128HmacSha1_80, &key, None, 0).err(),
            Some(SrtpError::UnsupportedSuite("F8_128_HMAC_SHA1_80"))
        );
        assert_eq!(
            SrtcpContext::new(SrtpSuite::Unknown, &key, None, 0).err(),
            Some(SrtpError::UnsupportedSuite("unknown"))
        );
        assert_eq!(format!("{ctx:?}"), "SrtcpContext { suite: AesCm128HmacSha1_80, kdr: 0, .. }");
    }
}
