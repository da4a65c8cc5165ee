//! GTP, the GPRS Tunnelling Protocol of mobile cores: GTPv1 headers (TS 29.060, TS 29.281), GTPv1-C and GTPv2-C messages (TS 29.274) with their IEs, and the values the analysis reads from them.
//!
//! Everything here borrows the buffer it is given. A message is walked in three steps:
//!
//! - the header: [`v1_header`] (GTPv1-C and GTPv1-U: flags, type, length, TEID, the
//!   optional sequence number / N-PDU number and the chain of extension headers, skipped
//!   by their lengths) or [`v2_messages`] (GTPv2-C: the P and T flags, the TEID when T is
//!   set, the 24-bit sequence number, and the piggybacked message that follows when P is set);
//! - the IEs: [`V1Ies`] (TV IEs of the fixed lengths in [`v1::tv_length`], TLV IEs with a
//!   16-bit length) or [`V2Ies`] (type, length, instance); a grouped GTPv2 IE (a Bearer
//!   Context) is walked with [`V2Ie::group`], at most [`MAX_GROUP_DEPTH`] levels deep;
//! - the values: [`Digits`] (TBCD: IMSI, MSISDN, MEI), [`Apn`], [`Paa`], [`Fteid`],
//!   [`BearerQos`], [`Cause`], [`Uli`], [`Ambr`], [`QosProfile`], [`EndUserAddress`]...
//!
//! Unknown message and IE types are not errors: an IE is its type and raw bytes. A
//! length that runs past its enclosing message, a truncated fixed-length value or a
//! grouping deeper than the limit is a [`DecodeError`] of [`Layer::Gtp`] naming the
//! offset (from the start of the buffer given) and the lengths. Nothing allocates.

use crate::{need, DecodeError, Layer};
use nom::bytes::complete::take;
use nom::number::complete::{be_u16, be_u24, be_u32, be_u8};
use nom::IResult;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub mod names;
#[cfg(test)]
mod tests;
pub mod v1;
pub mod v2;

pub use v1::{v1_header, EndUserAddress, QosProfile, V1Header, V1Ie, V1Ies};
pub use v2::{v2_messages, Ambr, BearerQos, Cause, Fteid, Paa, Uli, V2Header, V2Ie, V2Ies, V2Message};

const LAYER: Layer = Layer::Gtp;

/// How deep grouped GTPv2 IEs may nest (a Bearer Context inside a PDN Connection is 2).
pub const MAX_GROUP_DEPTH: u8 = 4;

/// The UDP port of GTP-C (GTPv1-C and GTPv2-C).
pub const GTP_C_PORT: u16 = 2123;
/// The UDP port of GTP-U.
pub const GTP_U_PORT: u16 = 2152;

/// A nom parse of `n` bytes at `at` in `buf`, its failure turned into the `Truncated` error
/// naming `at` and the bytes there are.
fn parse<'a, T>(
    buf: &'a [u8],
    at: usize,
    n: usize,
    f: impl FnOnce(&'a [u8]) -> IResult<&'a [u8], T>,
) -> Result<T, DecodeError> {
    let rest = buf.get(at..).unwrap_or_default();
    f(rest).map(|(_, v)| v).map_err(|_| DecodeError::truncated(LAYER, at, n, rest.len()))
}

/// Decimal digits decoded from TBCD (TS 29.002: two digits a byte, the low nibble first, an
/// `F` nibble filling the last byte), held inline: an IMSI, an MSISDN, an IMEI(SV).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digits {
    buf: [u8; 32],
    len: u8,
}

impl Digits {
    /// Most bytes of TBCD a value may have (32 digits).
    pub const MAX_BYTES: usize = 16;

    /// Decodes `value` (the IE's bytes, at `offset` for errors). Nibbles 0xA-0xE become
    /// `*#abc` as in TS 24.008; the first 0xF ends the digits.
    pub fn tbcd(value: &[u8], offset: usize) -> Result<Digits, DecodeError> {
        if value.len() > Self::MAX_BYTES {
            return Err(DecodeError::invalid(LAYER, offset, "TBCD digits", "longer than 16 bytes"));
        }
        let mut d = Digits { buf: [0; 32], len: 0 };
        'bytes: for b in value {
            for nibble in [b & 0x0f, b >> 4] {
                if nibble == 0x0f {
                    break 'bytes;
                }
                d.buf[usize::from(d.len)] = b"0123456789*#abc"[usize::from(nibble)];
                d.len += 1;
            }
        }
        Ok(d)
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Display for Digits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Digits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digits({})", self.as_str())
    }
}

/// An access point name, label-encoded as DNS names are (TS 23.003 §9.1): written with
/// dots by `Display`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Apn<'a>(&'a [u8]);

impl<'a> Apn<'a> {
    /// Checks that the labels of `value` (at `offset`) fit it.
    pub fn parse(value: &'a [u8], offset: usize) -> Result<Apn<'a>, DecodeError> {
        let mut at = 0;
        while at < value.len() {
            let len = usize::from(value[at]);
            need(LAYER, value, at + 1, len).map_err(|e| e.shifted(offset))?;
            at += 1 + len;
        }
        Ok(Apn(value))
    }

    /// The labels, in order.
    pub fn labels(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            let (&len, after) = rest.split_first()?;
            let (label, next) = after.split_at(usize::from(len).min(after.len()));
            rest = next;
            Some(label)
        })
    }
}

impl fmt::Display for Apn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, label) in self.labels().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(&String::from_utf8_lossy(label))?;
        }
        Ok(())
    }
}

/// A PLMN identity (MCC and MNC, TS 24.008 §10.5.1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plmn {
    /// The mobile country code's three digits.
    pub mcc: u16,
    /// The mobile network code.
    pub mnc: u16,
    /// Whether the MNC has three digits.
    pub mnc_3_digits: bool,
}

impl Plmn {
    /// The three bytes of a PLMN identity.
    pub fn from_bytes(b: [u8; 3]) -> Plmn {
        let d = |n: u8| u16::from(n.min(9));
        let mcc = d(b[0] & 0x0f) * 100 + d(b[0] >> 4) * 10 + d(b[1] & 0x0f);
        let mnc3 = b[1] >> 4;
        let (mnc, mnc_3_digits) = if mnc3 == 0x0f {
            (d(b[2] & 0x0f) * 10 + d(b[2] >> 4), false)
        } else {
            (d(b[2] & 0x0f) * 100 + d(b[2] >> 4) * 10 + d(mnc3), true)
        };
        Plmn { mcc, mnc, mnc_3_digits }
    }
}

impl fmt::Display for Plmn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mnc_3_digits {
            write!(f, "{:03}-{:03}", self.mcc, self.mnc)
        } else {
            write!(f, "{:03}-{:02}", self.mcc, self.mnc)
        }
    }
}

fn plmn(buf: &[u8], at: usize) -> Result<Plmn, DecodeError> {
    parse(buf, at, 3, take(3usize)).map(|b: &[u8]| Plmn::from_bytes([b[0], b[1], b[2]]))
}

fn ipv4(buf: &[u8], at: usize) -> Result<Ipv4Addr, DecodeError> {
    parse(buf, at, 4, be_u32).map(Ipv4Addr::from)
}

fn ipv6(buf: &[u8], at: usize) -> Result<Ipv6Addr, DecodeError> {
    parse(buf, at, 16, take(16usize)).map(|b: &[u8]| {
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        Ipv6Addr::from(a)
    })
}

fn u8_at(buf: &[u8], at: usize) -> Result<u8, DecodeError> {
    parse(buf, at, 1, be_u8)
}

fn u16_at(buf: &[u8], at: usize) -> Result<u16, DecodeError> {
    parse(buf, at, 2, be_u16)
}

fn u24_at(buf: &[u8], at: usize) -> Result<u32, DecodeError> {
    parse(buf, at, 3, be_u24)
}

fn u32_at(buf: &[u8], at: usize) -> Result<u32, DecodeError> {
    parse(buf, at, 4, be_u32)
}

/// An IP address of 4 or 16 bytes (a GSN Address, an IP Address IE).
pub fn ip_address(value: &[u8], offset: usize) -> Result<IpAddr, DecodeError> {
    match value.len() {
        4 => ipv4(value, 0).map(IpAddr::V4),
        16 => ipv6(value, 0).map(IpAddr::V6),
        _ => Err(DecodeError::invalid(LAYER, offset, "IP address", "neither 4 nor 16 bytes")),
    }
}
