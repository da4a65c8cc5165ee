//! A small Diameter writer (RFC 6733) for test data: a message header and AVPs, vendor-specific and grouped, with the 3GPP codes the VoLTE scenario uses (TS 29.214 Rx, TS 29.212 Gx).

/// The 3GPP vendor id.
pub const VENDOR_3GPP: u32 = 10_415;
/// Rx (TS 29.214) and Gx (TS 29.212) application ids.
pub const APP_RX: u32 = 16_777_236;
pub const APP_GX: u32 = 16_777_238;
/// Command codes: AA, Credit-Control, Re-Auth.
pub const CMD_AA: u32 = 265;
pub const CMD_CC: u32 = 272;
pub const CMD_RA: u32 = 258;

/// Base AVP codes (RFC 6733, RFC 4006, RFC 7155).
pub mod code {
    pub const FRAMED_IP_ADDRESS: u32 = 8;
    pub const CALLED_STATION_ID: u32 = 30;
    pub const SESSION_ID: u32 = 263;
    pub const ORIGIN_HOST: u32 = 264;
    pub const VENDOR_ID: u32 = 266;
    pub const AUTH_APPLICATION_ID: u32 = 258;
    pub const RESULT_CODE: u32 = 268;
    pub const DESTINATION_REALM: u32 = 283;
    pub const RE_AUTH_REQUEST_TYPE: u32 = 285;
    pub const DESTINATION_HOST: u32 = 293;
    pub const ORIGIN_REALM: u32 = 296;
    pub const EXPERIMENTAL_RESULT: u32 = 297;
    pub const EXPERIMENTAL_RESULT_CODE: u32 = 298;
    pub const CC_REQUEST_NUMBER: u32 = 415;
    pub const CC_REQUEST_TYPE: u32 = 416;
    pub const SUBSCRIPTION_ID: u32 = 443;
    pub const SUBSCRIPTION_ID_DATA: u32 = 444;
    pub const SUBSCRIPTION_ID_TYPE: u32 = 450;
    // 3GPP (vendor 10415).
    pub const AF_CHARGING_IDENTIFIER: u32 = 505;
    pub const MAX_REQUESTED_BANDWIDTH_DL: u32 = 515;
    pub const MAX_REQUESTED_BANDWIDTH_UL: u32 = 516;
    pub const MEDIA_COMPONENT_DESCRIPTION: u32 = 517;
    pub const MEDIA_COMPONENT_NUMBER: u32 = 518;
    pub const MEDIA_TYPE: u32 = 520;
    pub const CHARGING_RULE_INSTALL: u32 = 1001;
    pub const CHARGING_RULE_DEFINITION: u32 = 1003;
    pub const CHARGING_RULE_NAME: u32 = 1005;
    pub const QOS_INFORMATION: u32 = 1016;
    pub const GUARANTEED_BITRATE_DL: u32 = 1025;
    pub const GUARANTEED_BITRATE_UL: u32 = 1026;
    pub const QOS_CLASS_IDENTIFIER: u32 = 1028;
}

/// Subscription-Id-Type values (RFC 4006 section 8.47).
pub const END_USER_E164: u32 = 0;
pub const END_USER_IMSI: u32 = 1;

/// One AVP, encoded: header (code, flags, length, vendor id when set) and the value padded to 4 bytes.
pub fn avp(code: u32, vendor: Option<u32>, value: &[u8]) -> Vec<u8> {
    let header = if vendor.is_some() { 12 } else { 8 };
    let len = header + value.len();
    let mut a = Vec::with_capacity(len + 3);
    a.extend_from_slice(&code.to_be_bytes());
    // M is set on every AVP written here; V when it has a vendor id.
    a.push(0x40 | if vendor.is_some() { 0x80 } else { 0 });
    a.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    if let Some(v) = vendor {
        a.extend_from_slice(&v.to_be_bytes());
    }
    a.extend_from_slice(value);
    a.resize(len.next_multiple_of(4), 0);
    a
}

pub fn u32_avp(code: u32, vendor: Option<u32>, value: u32) -> Vec<u8> {
    avp(code, vendor, &value.to_be_bytes())
}

pub fn str_avp(code: u32, value: &str) -> Vec<u8> {
    avp(code, None, value.as_bytes())
}

/// A grouped AVP: its members' encodings one after the other.
pub fn grouped(code: u32, vendor: Option<u32>, members: &[Vec<u8>]) -> Vec<u8> {
    avp(code, vendor, &members.concat())
}

/// A Subscription-Id of `kind` ([`END_USER_E164`], [`END_USER_IMSI`]).
pub fn subscription_id(kind: u32, data: &str) -> Vec<u8> {
    grouped(
        code::SUBSCRIPTION_ID,
        None,
        &[u32_avp(code::SUBSCRIPTION_ID_TYPE, None, kind), str_avp(code::SUBSCRIPTION_ID_DATA, data)],
    )
}

/// A Framed-IP-Address (four octets for IPv4).
pub fn framed_ip(ip: std::net::Ipv4Addr) -> Vec<u8> {
    avp(code::FRAMED_IP_ADDRESS, None, &ip.octets())
}

/// The header fields of a message.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub request: bool,
    pub command: u32,
    pub application: u32,
    pub hop_by_hop: u32,
    pub end_to_end: u32,
}

/// A whole message: the 20-byte header (version 1, R and P flags) and the AVPs.
pub fn message(h: Header, avps: &[Vec<u8>]) -> Vec<u8> {
    let body = avps.concat();
    let len = 20 + body.len();
    let mut m = Vec::with_capacity(len);
    m.push(1);
    m.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    m.push(if h.request { 0xC0 } else { 0x40 });
    m.extend_from_slice(&h.command.to_be_bytes()[1..]);
    m.extend_from_slice(&h.application.to_be_bytes());
    m.extend_from_slice(&h.hop_by_hop.to_be_bytes());
    m.extend_from_slice(&h.end_to_end.to_be_bytes());
    m.extend_from_slice(&body);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avps_are_padded_and_lengths_exclude_padding() {
        let a = str_avp(code::SESSION_ID, "abc");
        assert_eq!(a, [0, 0, 1, 7, 0x40, 0, 0, 11, b'a', b'b', b'c', 0]);
        let v = u32_avp(code::QOS_CLASS_IDENTIFIER, Some(VENDOR_3GPP), 1);
        assert_eq!(v[4], 0xC0, "V and M");
        assert_eq!(u32::from_be_bytes([0, v[5], v[6], v[7]]), 16);
        assert_eq!(u32::from_be_bytes(v[8..12].try_into().unwrap()), VENDOR_3GPP);
    }

    #[test]
    fn message_header_says_the_whole_length() {
        let h = Header { request: true, command: CMD_AA, application: APP_RX, hop_by_hop: 7, end_to_end: 9 };
        let m = message(h, &[str_avp(code::SESSION_ID, "s;1"), subscription_id(END_USER_E164, "4917")]);
        assert_eq!(m[0], 1);
        assert_eq!(u32::from_be_bytes([0, m[1], m[2], m[3]]) as usize, m.len());
        assert_eq!(m[4], 0xC0);
        assert_eq!(u32::from_be_bytes([0, m[5], m[6], m[7]]), 265);
        assert_eq!(m.len() % 4, 0);
    }
}
