//! A small GTPv2-C writer (3GPP TS 29.274) for test data: the header with TEID and sequence number, and the IEs of an attach and a dedicated bearer (IMSI, MSISDN, MEI, APN, PAA, F-TEID, EBI, Bearer QoS, Bearer Context, Cause); and GTP-U G-PDUs (TS 29.281).

use std::net::Ipv4Addr;

/// Message types (TS 29.274 table 6.1-1).
pub const CREATE_SESSION_REQUEST: u8 = 32;
pub const CREATE_SESSION_RESPONSE: u8 = 33;
pub const MODIFY_BEARER_REQUEST: u8 = 34;
pub const MODIFY_BEARER_RESPONSE: u8 = 35;
pub const DELETE_SESSION_REQUEST: u8 = 36;
pub const DELETE_SESSION_RESPONSE: u8 = 37;
pub const CREATE_BEARER_REQUEST: u8 = 95;
pub const CREATE_BEARER_RESPONSE: u8 = 96;
pub const DELETE_BEARER_REQUEST: u8 = 99;
pub const DELETE_BEARER_RESPONSE: u8 = 100;

/// Cause values (TS 29.274 table 8.4-1).
pub const CAUSE_ACCEPTED: u8 = 16;
pub const CAUSE_REQUEST_REJECTED: u8 = 94;

/// F-TEID interface types (TS 29.274 table 8.22-1).
pub const IF_S1U_ENB: u8 = 0;
pub const IF_S1U_SGW: u8 = 1;
pub const IF_S11_MME: u8 = 10;
pub const IF_S11_SGW: u8 = 11;

/// One IE: type, length, instance, value.
pub fn ie(kind: u8, instance: u8, value: &[u8]) -> Vec<u8> {
    let mut e = Vec::with_capacity(4 + value.len());
    e.push(kind);
    e.extend_from_slice(&(value.len() as u16).to_be_bytes());
    e.push(instance & 0x0F);
    e.extend_from_slice(value);
    e
}

/// Digits in TBCD: two a byte, the first in the low nibble, an odd count padded with 0xF.
fn tbcd(digits: &str) -> Vec<u8> {
    let d: Vec<u8> = digits.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect();
    d.chunks(2).map(|p| p[0] | (p.get(1).copied().unwrap_or(0xF) << 4)).collect()
}

pub fn imsi(digits: &str) -> Vec<u8> {
    ie(1, 0, &tbcd(digits))
}

pub fn cause(value: u8) -> Vec<u8> {
    ie(2, 0, &[value, 0])
}

/// The APN in DNS label form.
pub fn apn(name: &str) -> Vec<u8> {
    let labels: Vec<u8> = name.split('.').flat_map(|l| std::iter::once(l.len() as u8).chain(l.bytes())).collect();
    ie(71, 0, &labels)
}

pub fn ebi(instance: u8, id: u8) -> Vec<u8> {
    ie(73, instance, &[id & 0x0F])
}

pub fn mei(digits: &str) -> Vec<u8> {
    ie(75, 0, &tbcd(digits))
}

pub fn msisdn(digits: &str) -> Vec<u8> {
    ie(76, 0, &tbcd(digits))
}

/// PDN Address Allocation: an IPv4 PDN and its address.
pub fn paa(ip: Ipv4Addr) -> Vec<u8> {
    let mut v = vec![1];
    v.extend_from_slice(&ip.octets());
    ie(79, 0, &v)
}

/// Bearer QoS: ARP priority 9 (pre-emption allowed), the QCI, and MBR/GBR up and down in kbit/s.
pub fn bearer_qos(qci: u8, mbr: (u64, u64), gbr: (u64, u64)) -> Vec<u8> {
    let mut v = vec![9 << 2, qci];
    for rate in [mbr.0, mbr.1, gbr.0, gbr.1] {
        v.extend_from_slice(&rate.to_be_bytes()[3..]);
    }
    ie(80, 0, &v)
}

/// RAT type E-UTRAN.
pub fn rat_eutran() -> Vec<u8> {
    ie(82, 0, &[6])
}

/// A fully qualified TEID: IPv4 flag, interface type, TEID, address.
pub fn f_teid(instance: u8, interface: u8, teid: u32, ip: Ipv4Addr) -> Vec<u8> {
    let mut v = vec![0x80 | (interface & 0x3F)];
    v.extend_from_slice(&teid.to_be_bytes());
    v.extend_from_slice(&ip.octets());
    ie(87, instance, &v)
}

pub fn bearer_context(members: &[Vec<u8>]) -> Vec<u8> {
    ie(93, 0, &members.concat())
}

pub fn pdn_type_ipv4() -> Vec<u8> {
    ie(99, 0, &[1])
}

/// A message: version 2, the T flag and `teid`, the 24-bit sequence number, then the IEs.
pub fn message(kind: u8, teid: u32, seq: u32, ies: &[Vec<u8>]) -> Vec<u8> {
    let body = ies.concat();
    let mut m = Vec::with_capacity(12 + body.len());
    m.extend_from_slice(&[0x48, kind]);
    m.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
    m.extend_from_slice(&teid.to_be_bytes());
    m.extend_from_slice(&(seq << 8).to_be_bytes());
    m.extend_from_slice(&body);
    m
}

/// A GTP-U G-PDU: version 1, protocol type GTP, no optional fields, the TEID and the inner packet.
pub fn g_pdu(teid: u32, inner: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + inner.len());
    m.extend_from_slice(&[0x30, 0xFF]);
    m.extend_from_slice(&(inner.len() as u16).to_be_bytes());
    m.extend_from_slice(&teid.to_be_bytes());
    m.extend_from_slice(inner);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tbcd_swaps_nibbles_and_pads_odd_counts() {
        assert_eq!(imsi("001010123456789"), [1, 0, 8, 0, 0x00, 0x01, 0x01, 0x21, 0x43, 0x65, 0x87, 0xF9]);
        assert_eq!(tbcd("4917"), [0x94, 0x71]);
    }

    #[test]
    fn header_length_counts_from_the_teid() {
        let m = message(CREATE_SESSION_REQUEST, 0, 0x1234, &[cause(CAUSE_ACCEPTED)]);
        assert_eq!(m[..4], [0x48, 32, 0, 8 + 6]);
        assert_eq!(m[8..12], [0x00, 0x12, 0x34, 0x00]);
        assert_eq!(apn("ims")[4..], [3, b'i', b'm', b's']);
        assert_eq!(bearer_qos(1, (128, 128), (64, 64)).len(), 4 + 22);
    }
}
