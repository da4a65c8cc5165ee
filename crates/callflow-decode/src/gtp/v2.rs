//! GTPv2-C (TS 29.274): the header, piggybacked messages, IEs with type, length and instance, grouped IEs, and the values of the IEs the analysis reads.

use super::{ipv4, ipv6, parse, plmn, u16_at, u24_at, u32_at, u8_at, Plmn, LAYER, MAX_GROUP_DEPTH};
use crate::{need, DecodeError};
use nom::number::complete::be_u8;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A GTPv2-C header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V2Header {
    /// P: another message (the piggybacked one) follows this one.
    pub piggybacked: bool,
    /// The message priority, when the MP flag is set.
    pub priority: Option<u8>,
    /// The message type.
    pub message_type: u8,
    /// The TEID, when the T flag is set (every message but Echo and Version Not Supported).
    pub teid: Option<u32>,
    /// The 24-bit sequence number.
    pub sequence: u32,
}

/// One GTPv2-C message of a datagram: its header and its IEs' bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V2Message<'a> {
    /// The header.
    pub header: V2Header,
    /// The IEs, for [`V2Ies`].
    pub ies: &'a [u8],
    /// Offset of `ies` from the start of the datagram.
    pub ies_offset: usize,
    /// Offset of the message from the start of the datagram (not 0 for a piggybacked one).
    pub offset: usize,
    /// Set when the datagram holds fewer bytes than the length says (a capture cut by its
    /// snapshot length): the header is whole, `ies` is what there is.
    pub cut: Option<DecodeError>,
}

impl<'a> V2Message<'a> {
    /// The message's IEs.
    pub fn ies(&self) -> V2Ies<'a> {
        V2Ies::new(self.ies, self.ies_offset)
    }
}

fn v2_message(buf: &[u8], at: usize) -> Result<(V2Message<'_>, usize), DecodeError> {
    need(LAYER, buf, at, 4)?;
    let flags = buf[at];
    if flags >> 5 != 2 {
        return Err(DecodeError::invalid(LAYER, at, "version", "not 2"));
    }
    let has_teid = flags & 0x08 != 0;
    let length = usize::from(u16_at(buf, at + 2)?);
    let header_len = if has_teid { 12 } else { 8 };
    if length + 4 < header_len {
        return Err(DecodeError::invalid(LAYER, at + 2, "length", "shorter than the header"));
    }
    need(LAYER, buf, at, header_len)?;
    let cut = need(LAYER, buf, at, 4 + length).err();
    let teid = if has_teid { Some(u32_at(buf, at + 4)?) } else { None };
    let seq_at = at + header_len - 4;
    let header = V2Header {
        piggybacked: flags & 0x10 != 0,
        priority: (flags & 0x04 != 0).then(|| buf[seq_at + 3] >> 4),
        message_type: buf[at + 1],
        teid,
        sequence: u24_at(buf, seq_at)?,
    };
    let end = (at + 4 + length).min(buf.len());
    let message = V2Message { header, ies: &buf[at + header_len..end], ies_offset: at + header_len, offset: at, cut };
    Ok((message, end))
}

/// The GTPv2-C messages of a datagram: the first, then the piggybacked one when its P flag
/// says one follows (TS 29.274 §5.5.1: a triggered response carrying the next initial
/// message). A damaged message yields one error and ends the walk; a message cut short by
/// the capture is given with what there is of it ([`V2Message::cut`]) and ends it too.
pub fn v2_messages(buf: &[u8]) -> impl Iterator<Item = Result<V2Message<'_>, DecodeError>> {
    let mut at = Some(0usize);
    std::iter::from_fn(move || {
        let start = at.take()?;
        match v2_message(buf, start) {
            Ok((m, end)) => {
                // The piggybacked message must itself say it is the last (P clear): at most two.
                if m.header.piggybacked && start == 0 && end < buf.len() && m.cut.is_none() {
                    at = Some(end);
                }
                Some(Ok(m))
            }
            Err(e) => Some(Err(e)),
        }
    })
}

/// One GTPv2 IE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V2Ie<'a> {
    /// The IE type.
    pub ie_type: u8,
    /// The instance (the low 4 bits of the fourth byte): tells apart IEs of one type with
    /// different meanings in one message (the S1-U and S5/S8-U F-TEIDs of a bearer, say).
    pub instance: u8,
    /// The value.
    pub value: &'a [u8],
    /// Offset of the IE from the start of the datagram.
    pub offset: usize,
    /// How deep in grouped IEs the IE is (0: at the message's top level).
    pub depth: u8,
}

impl<'a> V2Ie<'a> {
    /// Whether the IE type is grouped (its value holds IEs): Bearer Context, PDN
    /// Connection, Overload and Load Control Information, Remote UE Context, ...
    pub fn is_grouped(&self) -> bool {
        is_grouped(self.ie_type)
    }

    /// The IEs inside a grouped IE; an error when they would be deeper than
    /// [`MAX_GROUP_DEPTH`].
    pub fn group(&self) -> Result<V2Ies<'a>, DecodeError> {
        if self.depth + 1 > MAX_GROUP_DEPTH {
            return Err(DecodeError::invalid(LAYER, self.offset, "grouped IE", "nested deeper than 4 levels"));
        }
        Ok(V2Ies { depth: self.depth + 1, ..V2Ies::new(self.value, self.offset + 4) })
    }
}

/// Whether GTPv2 IE type `t` is grouped (TS 29.274 Table 8.1-1).
pub fn is_grouped(t: u8) -> bool {
    matches!(t, ie::BEARER_CONTEXT | 109 | 180 | 181 | 191 | 195 | 214)
}

/// The IEs of a GTPv2 message or grouped IE, in order. A walk that cannot go on yields
/// one error and ends.
#[derive(Clone, Debug)]
pub struct V2Ies<'a> {
    buf: &'a [u8],
    at: usize,
    base: usize,
    depth: u8,
    done: bool,
}

impl<'a> V2Ies<'a> {
    /// The IEs in `buf`, whose first byte is at `base` of the datagram.
    pub fn new(buf: &'a [u8], base: usize) -> V2Ies<'a> {
        V2Ies { buf, at: 0, base, depth: 0, done: false }
    }

    fn next_ie(&mut self) -> Result<V2Ie<'a>, DecodeError> {
        let at = self.at;
        need(LAYER, self.buf, at, 4)?;
        let ie_type = parse(self.buf, at, 1, be_u8)?;
        let len = usize::from(u16_at(self.buf, at + 1)?);
        let instance = self.buf[at + 3] & 0x0f;
        need(LAYER, self.buf, at + 4, len)?;
        self.at = at + 4 + len;
        Ok(V2Ie {
            ie_type,
            instance,
            value: &self.buf[at + 4..at + 4 + len],
            offset: self.base + at,
            depth: self.depth,
        })
    }
}

impl<'a> Iterator for V2Ies<'a> {
    type Item = Result<V2Ie<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.at >= self.buf.len() {
            return None;
        }
        let ie = self.next_ie().map_err(|e| e.shifted(self.base));
        self.done = ie.is_err();
        Some(ie)
    }
}

/// The IE types of GTPv2 the analysis reads.
pub mod ie {
    /// IMSI (TBCD).
    pub const IMSI: u8 = 1;
    /// Cause.
    pub const CAUSE: u8 = 2;
    /// Recovery (restart counter).
    pub const RECOVERY: u8 = 3;
    /// Access Point Name.
    pub const APN: u8 = 71;
    /// Aggregate Maximum Bit Rate.
    pub const AMBR: u8 = 72;
    /// EPS Bearer ID.
    pub const EBI: u8 = 73;
    /// Mobile Equipment Identity (TBCD).
    pub const MEI: u8 = 75;
    /// MSISDN (TBCD).
    pub const MSISDN: u8 = 76;
    /// PDN Address Allocation.
    pub const PAA: u8 = 79;
    /// Bearer Level QoS.
    pub const BEARER_QOS: u8 = 80;
    /// RAT Type.
    pub const RAT_TYPE: u8 = 82;
    /// User Location Information.
    pub const ULI: u8 = 86;
    /// Fully qualified TEID.
    pub const FTEID: u8 = 87;
    /// Bearer Context (grouped).
    pub const BEARER_CONTEXT: u8 = 93;
}

/// The EBI of an EPS Bearer ID IE (its low 4 bits).
pub fn ebi(value: &[u8], offset: usize) -> Result<u8, DecodeError> {
    u8_at(value, 0).map(|b| b & 0x0f).map_err(|e| e.shifted(offset))
}

/// A Cause IE (TS 29.274 §8.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cause {
    /// The cause value (16 "Request accepted"; 64 and above: rejections).
    pub value: u8,
    /// PCE: the error originated in a remote node (PGW).
    pub remote: bool,
    /// BCE: the bearer context IE was in error.
    pub bearer_context: bool,
    /// CS: the cause source is this node's peer, not this node.
    pub source: bool,
    /// The type of the offending IE, when the cause names one.
    pub offending_ie: Option<u8>,
}

impl Cause {
    /// Decodes the IE's value (at `offset`).
    pub fn parse(value: &[u8], offset: usize) -> Result<Cause, DecodeError> {
        need(LAYER, value, 0, 2).map_err(|e| e.shifted(offset))?;
        Ok(Cause {
            value: value[0],
            remote: value[1] & 0x04 != 0,
            bearer_context: value[1] & 0x02 != 0,
            source: value[1] & 0x01 != 0,
            offending_ie: value.get(2).copied().filter(|_| value.len() >= 6),
        })
    }

    /// Whether the value accepts the request (16 to 63).
    pub fn accepted(&self) -> bool {
        (16..64).contains(&self.value)
    }
}

/// A PDN Address Allocation (TS 29.274 §8.14): the UE's address(es).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paa {
    /// PDN type IPv4.
    Ipv4(Ipv4Addr),
    /// PDN type IPv6: the prefix length and the address (the interface identifier, or the
    /// prefix).
    Ipv6(u8, Ipv6Addr),
    /// PDN type IPv4v6.
    Ipv4v6(Ipv4Addr, u8, Ipv6Addr),
    /// Non-IP, Ethernet or another PDN type (its number).
    Other(u8),
}

impl Paa {
    /// Decodes the IE's value (at `offset`).
    pub fn parse(value: &[u8], offset: usize) -> Result<Paa, DecodeError> {
        let f = || {
            Ok(match u8_at(value, 0)? & 0x07 {
                1 => Paa::Ipv4(ipv4(value, 1)?),
                2 => Paa::Ipv6(u8_at(value, 1)?, ipv6(value, 2)?),
                3 => {
                    let (len, v6) = (u8_at(value, 1)?, ipv6(value, 2)?);
                    Paa::Ipv4v6(ipv4(value, 18)?, len, v6)
                }
                other => Paa::Other(other),
            })
        };
        f().map_err(|e: DecodeError| e.shifted(offset))
    }
}

/// A fully qualified TEID (TS 29.274 §8.22).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fteid {
    /// The interface type (Table 8.22-1: 0 S1-U eNodeB GTP-U, 1 S1-U SGW GTP-U, ...).
    pub interface_type: u8,
    /// The TEID (or GRE key).
    pub teid: u32,
    /// The IPv4 address, when V4 is set.
    pub ipv4: Option<Ipv4Addr>,
    /// The IPv6 address, when V6 is set.
    pub ipv6: Option<Ipv6Addr>,
}

impl Fteid {
    /// Decodes the IE's value (at `offset`).
    pub fn parse(value: &[u8], offset: usize) -> Result<Fteid, DecodeError> {
        let f = || {
            let flags = u8_at(value, 0)?;
            let teid = u32_at(value, 1)?;
            let ipv4 = if flags & 0x80 != 0 { Some(ipv4(value, 5)?) } else { None };
            let v6_at = if flags & 0x80 != 0 { 9 } else { 5 };
            let ipv6 = if flags & 0x40 != 0 { Some(ipv6(value, v6_at)?) } else { None };
            Ok(Fteid { interface_type: flags & 0x3f, teid, ipv4, ipv6 })
        };
        f().map_err(|e: DecodeError| e.shifted(offset))
    }
}

/// Bearer Level QoS (TS 29.274 §8.15): ARP, QCI and the bit rates, in kbps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BearerQos {
    /// ARP pre-emption capability: true when the bearer may pre-empt others (PCI 0).
    pub preemption_capability: bool,
    /// ARP priority level (1-15).
    pub priority_level: u8,
    /// ARP pre-emption vulnerability: true when others may pre-empt the bearer (PVI 0).
    pub preemption_vulnerability: bool,
    /// QoS class identifier.
    pub qci: u8,
    /// Maximum bit rate for uplink.
    pub mbr_uplink: u64,
    /// Maximum bit rate for downlink.
    pub mbr_downlink: u64,
    /// Guaranteed bit rate for uplink.
    pub gbr_uplink: u64,
    /// Guaranteed bit rate for downlink.
    pub gbr_downlink: u64,
}

impl BearerQos {
    /// Decodes the IE's value (at `offset`): 22 bytes.
    pub fn parse(value: &[u8], offset: usize) -> Result<BearerQos, DecodeError> {
        need(LAYER, value, 0, 22).map_err(|e| e.shifted(offset))?;
        let rate = |at: usize| value[at..at + 5].iter().fold(0u64, |r, &b| r << 8 | u64::from(b));
        Ok(BearerQos {
            preemption_capability: value[0] & 0x40 == 0,
            priority_level: (value[0] >> 2) & 0x0f,
            preemption_vulnerability: value[0] & 0x01 == 0,
            qci: value[1],
            mbr_uplink: rate(2),
            mbr_downlink: rate(7),
            gbr_uplink: rate(12),
            gbr_downlink: rate(17),
        })
    }
}

/// Aggregate Maximum Bit Rate (TS 29.274 §8.7), kbps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ambr {
    /// Uplink.
    pub uplink: u32,
    /// Downlink.
    pub downlink: u32,
}

impl Ambr {
    /// Decodes the IE's value (at `offset`).
    pub fn parse(value: &[u8], offset: usize) -> Result<Ambr, DecodeError> {
        let f = || Ok(Ambr { uplink: u32_at(value, 0)?, downlink: u32_at(value, 4)? });
        f().map_err(|e: DecodeError| e.shifted(offset))
    }
}

/// User Location Information (TS 29.274 §8.21): the TAI and ECGI when present (the other
/// identities its flags announce are skipped by their lengths).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Uli {
    /// Tracking area: PLMN and TAC.
    pub tai: Option<(Plmn, u16)>,
    /// E-UTRAN cell: PLMN and the 28-bit ECI.
    pub ecgi: Option<(Plmn, u32)>,
    /// Location area of a 2G/3G cell (CGI, SAI or RAI): PLMN and LAC.
    pub lai: Option<(Plmn, u16)>,
}

impl Uli {
    /// Decodes the IE's value (at `offset`).
    pub fn parse(value: &[u8], offset: usize) -> Result<Uli, DecodeError> {
        let f = || {
            let flags = u8_at(value, 0)?;
            let mut uli = Uli::default();
            let mut at = 1;
            // CGI, SAI, RAI: PLMN, LAC and a 2-byte code each.
            for bit in 0..3 {
                if flags & (1 << bit) != 0 {
                    uli.lai = uli.lai.or(Some((plmn(value, at)?, u16_at(value, at + 3)?)));
                    need(LAYER, value, at, 7)?;
                    at += 7;
                }
            }
            if flags & 0x08 != 0 {
                uli.tai = Some((plmn(value, at)?, u16_at(value, at + 3)?));
                at += 5;
            }
            if flags & 0x10 != 0 {
                uli.ecgi = Some((plmn(value, at)?, u32_at(value, at + 3)? & 0x0fff_ffff));
                at += 7;
            }
            if flags & 0x20 != 0 {
                uli.lai = Some((plmn(value, at)?, u16_at(value, at + 3)?));
            }
            Ok(uli)
        };
        f().map_err(|e: DecodeError| e.shifted(offset))
    }
}
