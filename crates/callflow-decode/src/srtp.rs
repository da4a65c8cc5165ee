//! SRTP (RFC 3711): the crypto suites SDP security descriptions negotiate (RFC 4568, RFC 6188, RFC 7714) and what each adds to a packet.
//!
//! [`SrtpSuite`] names a suite as an `a=crypto` line writes it and says what the
//! analysis needs of it: the lengths of its master key and salt (to check an inline key)
//! and of its authentication tags, which SRTP appends after the encrypted payload and
//! which are therefore not payload. SRTCP's tag is 80 bits for both HMAC-SHA1 suites:
//! `_32` shortens SRTP's tag only (RFC 4568 section 6.2.2).

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
    /// The suite `name` names (case as registered; other names are [`SrtpSuite::Unknown`]).
    pub fn from_name(name: &str) -> SrtpSuite {
        match name {
            "AES_CM_128_HMAC_SHA1_80" => SrtpSuite::AesCm128HmacSha1_80,
            "AES_CM_128_HMAC_SHA1_32" => SrtpSuite::AesCm128HmacSha1_32,
            "AES_192_CM_HMAC_SHA1_80" => SrtpSuite::AesCm192HmacSha1_80,
            "AES_192_CM_HMAC_SHA1_32" => SrtpSuite::AesCm192HmacSha1_32,
            "AES_256_CM_HMAC_SHA1_80" => SrtpSuite::AesCm256HmacSha1_80,
            "AES_256_CM_HMAC_SHA1_32" => SrtpSuite::AesCm256HmacSha1_32,
            "F8_128_HMAC_SHA1_80" => SrtpSuite::F8_128HmacSha1_80,
            "AEAD_AES_128_GCM" => SrtpSuite::AeadAes128Gcm,
            "AEAD_AES_256_GCM" => SrtpSuite::AeadAes256Gcm,
            _ => SrtpSuite::Unknown,
        }
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
/// the handshake, which the capture does not show): 80 bits, as
/// `SRTP_AES128_CM_HMAC_SHA1_80`, the profile every DTLS-SRTP endpoint must offer
/// (RFC 5764 section 4.1.2) and the one nearly all choose.
pub const ASSUMED_SRTP_TAG_LEN: usize = 10;

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
        assert_eq!(SrtpSuite::from_name("aes_cm_128_hmac_sha1_80"), SrtpSuite::Unknown);
        assert_eq!(SrtpSuite::Unknown.srtp_tag_len(), None);
    }
}
