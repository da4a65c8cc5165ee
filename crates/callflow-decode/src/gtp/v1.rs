//! GTPv1 (TS 29.060 for the control plane, TS 29.281 for the user plane): the header with its optional fields and extension headers, the TV/TLV IEs, and the values of the IEs the analysis reads.

use super::{ipv4, ipv6, parse, plmn, u16_at, u32_at, u8_at, Plmn, LAYER};
use crate::{need, DecodeError};
use nom::number::complete::be_u8;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A GTPv1 header (GTPv1-C or GTPv1-U).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V1Header {
    /// PT: 1 for GTP, 0 for GTP' (charging).
    pub protocol_type: u8,
    /// The message type (255: a G-PDU carrying a user packet).
    pub message_type: u8,
    /// The TEID of the receiving end (0 for messages not tied to a tunnel).
    pub teid: u32,
    /// The sequence number, when the S flag is set.
    pub sequence: Option<u16>,
    /// The N-PDU number, when the PN flag is set.
    pub npdu: Option<u8>,
    /// The header's length: 8, or 12 and the extension headers when any of E, S, PN is set.
    pub header_len: usize,
    /// Where the message ends: 8 + the length field (may be past the buffer when the
    /// capture cut the packet).
    pub end: usize,
    /// How many extension headers were skipped.
    pub extensions: u8,
}

/// Decodes a GTPv1 header at the start of `buf`. The optional word is there when any of
/// the E, S and PN flags is set (the fields of the flags not set are not evaluated, as
/// TS 29.060 §6 says); extension headers are then walked by their lengths (4-byte units,
/// the last byte naming the next one) whatever their type: PDU session container, UDP
/// port, PDCP PDU number... Errors are relative to the start of `buf`.
pub fn v1_header(buf: &[u8]) -> Result<V1Header, DecodeError> {
    const E: u8 = 0x04;
    const S: u8 = 0x02;
    const PN: u8 = 0x01;
    need(LAYER, buf, 0, 8)?;
    let flags = buf[0];
    if flags >> 5 != 1 {
        return Err(DecodeError::invalid(LAYER, 0, "version", "not 1"));
    }
    let mut h = V1Header {
        protocol_type: (flags >> 4) & 1,
        message_type: buf[1],
        teid: u32_at(buf, 4)?,
        sequence: None,
        npdu: None,
        header_len: 8,
        end: 8 + usize::from(u16_at(buf, 2)?),
        extensions: 0,
    };
    if flags & (E | S | PN) == 0 {
        return Ok(h);
    }
    need(LAYER, buf, 0, 12)?;
    h.header_len = 12;
    h.sequence = (flags & S != 0).then(|| u16::from_be_bytes([buf[8], buf[9]]));
    h.npdu = (flags & PN != 0).then_some(buf[10]);
    let mut next = if flags & E != 0 { buf[11] } else { 0 };
    while next != 0 {
        let len = usize::from(u8_at(buf, h.header_len)?) * 4;
        if len == 0 {
            return Err(DecodeError::invalid(LAYER, h.header_len, "extension header length", "zero"));
        }
        need(LAYER, buf, h.header_len, len)?;
        next = buf[h.header_len + len - 1];
        h.header_len += len;
        h.extensions = h.extensions.saturating_add(1);
    }
    Ok(h)
}

/// The length of the value of a TV IE of type `ie_type` (below 128), TS 29.060 §7.7; `None`
/// for a TV type this table does not know (its length cannot be told, so the IEs after
/// it cannot be walked).
pub fn tv_length(ie_type: u8) -> Option<usize> {
    Some(match ie_type {
        1 => 1,   // Cause
        2 => 8,   // IMSI
        3 => 6,   // Routeing Area Identity
        4 => 4,   // TLLI
        5 => 4,   // P-TMSI
        8 => 1,   // Reordering Required
        9 => 28,  // Authentication Triplet
        11 => 1,  // MAP Cause
        12 => 3,  // P-TMSI Signature
        13 => 1,  // MS Validated
        14 => 1,  // Recovery
        15 => 1,  // Selection Mode
        16 => 4,  // TEID Data I
        17 => 4,  // TEID Control Plane
        18 => 5,  // TEID Data II
        19 => 1,  // Teardown Ind
        20 => 1,  // NSAPI
        21 => 1,  // RANAP Cause
        22 => 9,  // RAB Context
        23 => 1,  // Radio Priority SMS
        24 => 1,  // Radio Priority
        25 => 2,  // Packet Flow Id
        26 => 2,  // Charging Characteristics
        27 => 2,  // Trace Reference
        28 => 2,  // Trace Type
        29 => 1,  // MS Not Reachable Reason
        126 => 1, // Packet Transfer Command (GTP')
        127 => 4, // Charging ID
        _ => return None,
    })
}

/// One GTPv1 IE: its type and value, and where the IE starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V1Ie<'a> {
    /// The IE type (below 128: TV, else TLV).
    pub ie_type: u8,
    /// The value, without type and length.
    pub value: &'a [u8],
    /// Offset of the IE's type byte from the start of the buffer the walk began on.
    pub offset: usize,
}

/// The IEs of a GTPv1 message, in order. A walk that cannot go on (a truncated IE, a TV
/// type of unknown length) yields one error and ends.
#[derive(Clone, Debug)]
pub struct V1Ies<'a> {
    buf: &'a [u8],
    at: usize,
    base: usize,
    done: bool,
}

impl<'a> V1Ies<'a> {
    /// The IEs in `buf` (a message's bytes after its header), whose first byte is at `base`
    /// of the buffer offsets are to be given from.
    pub fn new(buf: &'a [u8], base: usize) -> V1Ies<'a> {
        V1Ies { buf, at: 0, base, done: false }
    }

    fn next_ie(&mut self) -> Result<V1Ie<'a>, DecodeError> {
        let at = self.at;
        let ie_type = parse(self.buf, at, 1, be_u8)?;
        let (start, len) = if ie_type < 128 {
            match tv_length(ie_type) {
                Some(len) => (at + 1, len),
                None => return Err(DecodeError::invalid(LAYER, at, "IE type", "a TV type of unknown length")),
            }
        } else {
            (at + 3, usize::from(u16_at(self.buf, at + 1)?))
        };
        need(LAYER, self.buf, start, len)?;
        self.at = start + len;
        Ok(V1Ie { ie_type, value: &self.buf[start..start + len], offset: self.base + at })
    }
}

impl<'a> Iterator for V1Ies<'a> {
    type Item = Result<V1Ie<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.at >= self.buf.len() {
            return None;
        }
        let ie = self.next_ie().map_err(|e| e.shifted(self.base));
        self.done = ie.is_err();
        Some(ie)
    }
}

/// The IE types of GTPv1 the analysis reads.
pub mod ie {
    /// Cause (TV 1).
    pub const CAUSE: u8 = 1;
    /// IMSI (TV 8, TBCD).
    pub const IMSI: u8 = 2;
    /// Recovery (TV 1).
    pub const RECOVERY: u8 = 14;
    /// TEID Data I (TV 4).
    pub const TEID_DATA_I: u8 = 16;
    /// TEID Control Plane (TV 4).
    pub const TEID_CONTROL: u8 = 17;
    /// TEID Data II (TV 5: NSAPI and TEID).
    pub const TEID_DATA_II: u8 = 18;
    /// Teardown Ind (TV 1).
    pub const TEARDOWN: u8 = 19;
    /// NSAPI (TV 1).
    pub const NSAPI: u8 = 20;
    /// End User Address (TLV).
    pub const END_USER_ADDRESS: u8 = 128;
    /// Access Point Name (TLV).
    pub const APN: u8 = 131;
    /// GSN Address (TLV).
    pub const GSN_ADDRESS: u8 = 133;
    /// MSISDN (TLV).
    pub const MSISDN: u8 = 134;
    /// Quality of Service Profile (TLV).
    pub const QOS_PROFILE: u8 = 135;
    /// RAT Type (TLV).
    pub const RAT_TYPE: u8 = 151;
    /// User Location Information (TLV).
    pub const ULI: u8 = 152;
    /// IMEI(SV) (TLV).
    pub const IMEI: u8 = 154;
}

/// The MSISDN of a GTPv1 MSISDN IE: an address string (TS 29.002), whose first byte gives
/// the nature of address and numbering plan, then TBCD digits.
pub fn msisdn(value: &[u8], offset: usize) -> Result<super::Digits, DecodeError> {
    need(LAYER, value, 0, 1).map_err(|e| e.shifted(offset))?;
    super::Digits::tbcd(&value[1..], offset + 1)
}

/// An End User Address (TS 29.060 §7.7.27): the PDP type, and the addresses when given
/// (none when the SGSN asks for a dynamic address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndUserAddress {
    /// PDP type organisation: 0 ETSI, 1 IETF.
    pub organisation: u8,
    /// PDP type number: 0x21 IPv4, 0x57 IPv6, 0x8D IPv4v6 (with organisation 1).
    pub number: u8,
    /// The IPv4 address.
    pub ipv4: Option<Ipv4Addr>,
    /// The IPv6 address.
    pub ipv6: Option<Ipv6Addr>,
}

impl EndUserAddress {
    /// Decodes the IE's value (at `offset`).
    pub fn parse(value: &[u8], offset: usize) -> Result<EndUserAddress, DecodeError> {
        let f = || -> Result<EndUserAddress, DecodeError> {
            let mut eua = EndUserAddress {
                organisation: u8_at(value, 0)? & 0x0f,
                number: u8_at(value, 1)?,
                ipv4: None,
                ipv6: None,
            };
            if eua.organisation != 1 {
                return Ok(eua);
            }
            match (eua.number, value.len() - 2) {
                (0x21, 4..) => eua.ipv4 = Some(ipv4(value, 2)?),
                (0x57, 16..) => eua.ipv6 = Some(ipv6(value, 2)?),
                (0x8d, 20..) => {
                    eua.ipv4 = Some(ipv4(value, 2)?);
                    eua.ipv6 = Some(ipv6(value, 6)?);
                }
                (0x8d, 16..) => eua.ipv6 = Some(ipv6(value, 2)?),
                (0x8d, 4..) => eua.ipv4 = Some(ipv4(value, 2)?),
                _ => {}
            }
            Ok(eua)
        };
        f().map_err(|e| e.shifted(offset))
    }
}

/// The basic fields of a Quality of Service Profile (TS 29.060 §7.7.34, the QoS of
/// TS 24.008 §10.5.6.5 after the allocation/retention priority byte). The fields of the
/// Release 99 extension are `None` in a shorter (Release 97/98) profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QosProfile {
    /// Allocation/retention priority (1-3).
    pub arp: u8,
    /// Delay class (1-4).
    pub delay_class: u8,
    /// Reliability class (1-5).
    pub reliability_class: u8,
    /// Peak throughput class.
    pub peak_throughput: u8,
    /// Precedence class.
    pub precedence: u8,
    /// Mean throughput class.
    pub mean_throughput: u8,
    /// Traffic class: 1 conversational, 2 streaming, 3 interactive, 4 background.
    pub traffic_class: Option<u8>,
    /// Maximum bit rate for uplink, kbps.
    pub mbr_uplink: Option<u32>,
    /// Maximum bit rate for downlink, kbps.
    pub mbr_downlink: Option<u32>,
    /// Guaranteed bit rate for uplink, kbps.
    pub gbr_uplink: Option<u32>,
    /// Guaranteed bit rate for downlink, kbps.
    pub gbr_downlink: Option<u32>,
}

/// A bit rate byte of TS 24.008 §10.5.6.5 in kbps (0xFF: 0 kbps).
fn bit_rate(b: u8) -> u32 {
    match b {
        0x00..=0x3f => u32::from(b),
        0x40..=0x7f => 64 + u32::from(b - 0x40) * 8,
        0x80..=0xfe => 576 + u32::from(b - 0x80) * 64,
        0xff => 0,
    }
}

impl QosProfile {
    /// Decodes the IE's value (at `offset`): at least the ARP byte and three QoS bytes.
    pub fn parse(value: &[u8], offset: usize) -> Result<QosProfile, DecodeError> {
        need(LAYER, value, 0, 4).map_err(|e| e.shifted(offset))?;
        let at = |i: usize| value.get(i).copied();
        Ok(QosProfile {
            arp: value[0],
            delay_class: (value[1] >> 3) & 0x07,
            reliability_class: value[1] & 0x07,
            peak_throughput: value[2] >> 4,
            precedence: value[2] & 0x07,
            mean_throughput: value[3] & 0x1f,
            traffic_class: at(4).map(|b| b >> 5),
            mbr_uplink: at(6).map(bit_rate),
            mbr_downlink: at(7).map(bit_rate),
            gbr_uplink: at(10).map(bit_rate),
            gbr_downlink: at(11).map(bit_rate),
        })
    }
}

/// GTPv1 User Location Information (TS 29.060 §7.7.51): the location type (0 CGI, 1 SAI,
/// 2 RAI), the PLMN, the LAC and the CI, SAC or RAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V1Uli {
    /// Geographic location type.
    pub location_type: u8,
    /// The PLMN.
    pub plmn: Plmn,
    /// Location area code.
    pub lac: u16,
    /// Cell identity, service area code or routeing area code, by the type.
    pub code: u16,
}

impl V1Uli {
    /// Decodes the IE's value (at `offset`).
    pub fn parse(value: &[u8], offset: usize) -> Result<V1Uli, DecodeError> {
        let f = || {
            Ok(V1Uli {
                location_type: u8_at(value, 0)?,
                plmn: plmn(value, 1)?,
                lac: u16_at(value, 4)?,
                code: if value.len() >= 8 { u16_at(value, 6)? } else { u16::from(u8_at(value, 6)?) },
            })
        };
        f().map_err(|e: DecodeError| e.shifted(offset))
    }
}
