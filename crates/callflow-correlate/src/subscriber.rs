//! The subscriber keys of SIP sessions: which identities (IMPU, IMPI, MSISDN), charging ids and UE addresses a dialog's messages carry.
//!
//! The SIP handler hands every message of a session to [`SipKeys::on_message`]; the keys
//! come out, each once and in order of appearance, in the session's `subscriber_keys`,
//! from which the document's subscribers are joined (see `subscribers`).
//!
//! Which party a value belongs to matters, since a session carries both ends of a call,
//! and either end may be a B2BUA that sends its requests with a single Via too. So a
//! session first finds its UE, by the source address of either
//! - the originator's initial request: out of dialog (no To tag) with a single Via, as a
//!   user agent sends it straight to its next hop (a proxy adds its Via above), or
//! - a user agent's answer to a request forwarded to it: two Vias or more, sent from the
//!   address its Contact names;
//!
//! and then takes the UE's values only:
//! - **from the UE's messages**: the Contact host, the Via sent-by of its requests and the
//!   SDP connection addresses (UE addresses); and of its initial request with a single Via
//!   the P-Asserted-Identity and P-Preferred-Identity (a tel URI, or a sip URI with
//!   `user=phone`, gives the MSISDN, and every URI with a user part an IMPU; anonymous
//!   ones are left out) and the Authorization username (IMPI). The far end's identities
//!   (the P-Asserted-Identity of a terminating INVITE, a B2BUA's in-dialog requests) are
//!   left out;
//! - **from responses to the UE** with a single Via (the UE's): its sent-by and `received`.
//! - **REGISTER** names its user whoever sends it: its From gives the IMPU (and MSISDN
//!   as above), its Authorization username the IMPI.
//! - **Any message**: the P-Charging-Vector's `icid-value`, and the TEID of the GTP-U
//!   tunnel it came through (the TEIDs GTP-C announced for the bearer).
//!
//! Host names are not addresses and are left out; values are normalised as
//! `SubscriberKey` says (digits only for MSISDNs, `IpAddr` display for addresses, URIs
//! without their parameters for IMPUs).

use callflow_decode::packet::{Tunnel, TunnelKind};
use callflow_decode::sdp::Sdp;
use callflow_decode::sip::{self, NameAddr, SipMessage};
use callflow_model::{SubscriberKey, SubscriberKeyKind as Kind};
use std::net::IpAddr;

/// Most keys kept per session: a real session has a handful; a hostile one cannot grow it.
const MAX_KEYS: usize = 64;

/// The keys one SIP session has carried so far, each once, in order.
#[derive(Debug, Default)]
pub(crate) struct SipKeys {
    keys: Vec<SubscriberKey>,
    /// The UE's address once a message showed it (see the module docs).
    ue: Option<IpAddr>,
}

impl SipKeys {
    /// Takes what `msg`, sent from `src` to `dst` through `tunnel`, says about the subscriber.
    pub(crate) fn on_message(&mut self, msg: &SipMessage<'_>, (src, dst): (IpAddr, IpAddr), tunnel: Option<&Tunnel>) {
        if let Some(t) = tunnel.filter(|t| t.kind == TunnelKind::GtpU) {
            if let Some(teid) = t.key {
                self.push(Kind::Teid, format!("0x{teid:08x}"));
            }
        }
        let vias = msg.vias().take(2).count();
        let contact_ip = msg.header("Contact").and_then(NameAddr::parse).and_then(|c| uri_host_ip(c.uri));
        let is_request = msg.method().is_some();
        let out_of_dialog = is_request && msg.to().and_then(|t| t.tag).is_none();
        if self.ue.is_none() {
            // The originator's initial request, or the answer of a UAS reached through a proxy.
            let originator = out_of_dialog && vias == 1;
            let answering = !is_request && vias >= 2 && contact_ip == Some(src);
            if originator || answering {
                self.ue = Some(src);
            }
        }
        if self.ue == Some(src) {
            self.address(contact_ip);
            if is_request && vias == 1 {
                if let Some(via) = msg.top_via() {
                    self.address(host_ip(via.sent_by));
                }
            }
            self.sdp_addresses(msg);
            if out_of_dialog && vias == 1 {
                for name in ["P-Asserted-Identity", "P-Preferred-Identity"] {
                    for value in msg.headers().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v) {
                        for item in list_items(value) {
                            if let Some(na) = NameAddr::parse(item) {
                                self.identity(na.uri);
                            }
                        }
                    }
                }
                self.impi(msg);
            }
        } else if self.ue == Some(dst) && !is_request && vias == 1 {
            if let Some(via) = msg.top_via() {
                self.address(host_ip(via.sent_by));
            }
            let received = msg.header("Via").and_then(|v| list_items(v).next()).and_then(|v| param(v, "received"));
            self.address(received.and_then(host_ip));
        }
        let register = msg.method() == Some("REGISTER");
        if register {
            if let Some(from) = msg.from() {
                self.identity(from.uri);
            }
        }
        if register {
            self.impi(msg);
        }
        for (name, value) in msg.headers() {
            if name.eq_ignore_ascii_case("P-Charging-Vector") {
                if let Some(icid) = param(value, "icid-value").filter(|v| !v.is_empty()) {
                    self.push(Kind::Icid, icid.to_string());
                }
            }
        }
    }

    /// The Authorization header's username: the IMPI.
    fn impi(&mut self, msg: &SipMessage<'_>) {
        if let Some(user) = msg.header("Authorization").and_then(|a| param(a, "username")).filter(|u| !u.is_empty()) {
            self.push(Kind::Impi, user.to_string());
        }
    }

    /// The keys, for the session's `subscriber_keys`.
    pub(crate) fn into_keys(self) -> Vec<SubscriberKey> {
        self.keys
    }

    fn push(&mut self, kind: Kind, value: String) {
        if self.keys.len() < MAX_KEYS && !self.keys.iter().any(|k| k.kind == kind && k.value == value) {
            self.keys.push(SubscriberKey { kind, value });
        }
    }

    fn address(&mut self, ip: Option<IpAddr>) {
        if let Some(ip) = ip.filter(|ip| !ip.is_unspecified()) {
            self.push(Kind::UeAddress, ip.to_string());
        }
    }

    /// The connection addresses of the message's SDP (session level and each medium's).
    fn sdp_addresses(&mut self, msg: &SipMessage<'_>) {
        let Some(sdp) = sip::sdp_body(msg).and_then(|body| Sdp::parse(body).ok()) else { return };
        self.address(sdp.connection.and_then(|c| c.ip));
        for m in &sdp.media {
            self.address(m.connection.and_then(|c| c.ip));
        }
    }

    /// An identity URI: an IMPU, and the MSISDN when it is a telephone number (a tel URI,
    /// or a sip URI with `user=phone`).
    fn identity(&mut self, uri: &str) {
        let uri = uri.trim();
        let Some((scheme, rest)) = uri.split_once(':') else { return };
        let scheme = scheme.to_ascii_lowercase();
        let (number, impu) = match scheme.as_str() {
            "tel" => {
                let number = rest.split([';', '?']).next().unwrap_or("");
                (Some(number), format!("tel:{number}"))
            }
            "sip" | "sips" => {
                let (user, host_part) = match rest.rsplit_once('@') {
                    Some((user, host)) => (Some(user), host),
                    None => (None, rest),
                };
                let (host, params) = host_part.split_once(';').unwrap_or((host_part, ""));
                let host = host.split('?').next().unwrap_or(host);
                let phone = params.split(';').any(|p| p.eq_ignore_ascii_case("user=phone"));
                // A URI without a user, or an anonymous one, names nobody (RFC 3323's
                // `sip:anonymous@anonymous.invalid`, an SBC's `sip:invalid.unknown.domain`).
                let Some(user) = user.filter(|u| !u.is_empty() && !u.eq_ignore_ascii_case("anonymous")) else { return };
                if host.ends_with(".invalid") {
                    return;
                }
                let impu = format!("{scheme}:{user}@{host}");
                (Some(user).filter(|_| phone).map(|u| u.split(';').next().unwrap_or(u)), impu)
            }
            _ => return,
        };
        let digits: String = number.unwrap_or("").chars().filter(char::is_ascii_digit).collect();
        if !digits.is_empty() {
            self.push(Kind::Msisdn, digits);
        }
        self.push(Kind::Impu, impu);
    }
}

/// The address of a `host[:port]` (IPv6 in brackets); `None` for a host name.
fn host_ip(host_port: &str) -> Option<IpAddr> {
    let h = host_port.trim();
    if let Ok(ip) = h.parse() {
        return Some(ip);
    }
    if let Some(inner) = h.strip_prefix('[') {
        return inner.split(']').next()?.parse().ok();
    }
    h.rsplit_once(':').and_then(|(host, _)| host.parse().ok())
}

/// The address in a sip/sips URI's host part, when it is one.
fn uri_host_ip(uri: &str) -> Option<IpAddr> {
    let (scheme, rest) = uri.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return None;
    }
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    host_ip(host_port.split([';', '?']).next()?)
}

/// The value of parameter `name` (case-insensitive) in a `;`- or `,`-separated list of
/// `name=value` pairs, without quotes.
fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    value.split([';', ',']).find_map(|p| {
        let (n, v) = p.split_once('=')?;
        let n = n.trim();
        // `Digest username=...`: the scheme comes before the first parameter's name.
        let n = n.rsplit(char::is_whitespace).next().unwrap_or(n);
        n.eq_ignore_ascii_case(name).then(|| v.trim().trim_matches('"'))
    })
}

/// The comma-separated items of a header value, commas inside `<...>` or quotes kept.
fn list_items(value: &str) -> impl Iterator<Item = &str> {
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    let mut cuts = Vec::new();
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth <= 0 => {
                cuts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    cuts.push(&value[start..]);
    cuts.into_iter().map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys of `messages` (each `(text, "source address>destination address")`) as
    /// `kind=value` strings.
    fn check(messages: &[(&str, &str)], expected: &[&str]) {
        let mut keys = SipKeys::default();
        for (text, route) in messages {
            let text = text.replace('\n', "\r\n");
            let msg = SipMessage::parse(text.as_bytes()).expect("test message parses");
            let (src, dst) = route.split_once('>').unwrap();
            keys.on_message(&msg, (src.parse().unwrap(), dst.parse().unwrap()), None);
        }
        let got: Vec<String> = keys.into_keys().iter().map(|k| format!("{}={}", k.kind.as_str(), k.value)).collect();
        assert_eq!(got, expected);
    }

    const INVITE: &str = "INVITE tel:+491711234567 SIP/2.0
Via: SIP/2.0/UDP 10.45.0.7:5060;branch=z9hG4bK1
From: <sip:+491701111111@ims.example.net>;tag=a
To: <tel:+491711234567>
Call-ID: c1
CSeq: 1 INVITE
Contact: <sip:+491701111111@10.45.0.7:5060>
P-Asserted-Identity: <sip:+491701111111@ims.example.net;user=phone>, \"Alice\" <tel:+49-170-1111111>
P-Charging-Vector: icid-value=\"AyretyU0dm+6O2IrT5tAFrbHLso=\";icid-generated-at=10.45.0.7
Content-Type: application/sdp
Content-Length: 63

v=0
o=- 1 1 IN IP4 10.45.0.7
s=-
c=IN IP4 10.45.0.7
t=0 0
";

    #[test]
    fn ue_invite_gives_its_address_identities_and_icid() {
        check(
            &[(INVITE, "10.45.0.7>10.46.0.10")],
            &[
                "ue_address=10.45.0.7",
                "msisdn=491701111111",
                "impu=sip:+491701111111@ims.example.net",
                "impu=tel:+49-170-1111111",
                "icid=AyretyU0dm+6O2IrT5tAFrbHLso=",
            ],
        );
    }

    #[test]
    fn forwarded_invite_names_the_far_end_and_is_left_out() {
        // A terminating INVITE from the P-CSCF: two Vias, PAI of the caller. The UE's 200
        // answers from the address its Contact names, with its own SDP.
        let mt = "INVITE sip:ue@10.45.0.9 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK2
Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK3
From: <sip:+491701111111@ims>;tag=a
To: <sip:ue@ims>
Call-ID: c2
CSeq: 1 INVITE
P-Asserted-Identity: <tel:+491701111111>
Contact: <sip:10.0.0.2>
Content-Length: 0

";
        let ok = "SIP/2.0 200 OK
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK2
Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK3
From: <sip:+491701111111@ims>;tag=a
To: <sip:ue@ims>;tag=b
Call-ID: c2
CSeq: 1 INVITE
Contact: <sip:ue@[2001:db8::9]:5060>
Content-Type: application/sdp
Content-Length: 67

v=0
o=- 1 1 IN IP6 2001:db8::9
s=-
c=IN IP6 2001:db8::9
t=0 0
";
        check(&[(mt, "10.0.0.1>2001:db8::9"), (ok, "2001:db8::9>10.0.0.1")], &["ue_address=2001:db8::9"]);
    }

    #[test]
    fn the_far_ends_requests_and_anonymous_identities_are_left_out() {
        // Between two B2BUAs every request has one Via: the callee side's BYE (and its
        // PAI) is not the caller's, and an anonymous PAI names nobody.
        let invite = "INVITE sip:699800@10.1.0.2 SIP/2.0
Via: SIP/2.0/UDP 10.1.0.1;branch=z9hG4bK5
From: <sip:anonymous@anonymous.invalid>;tag=a
To: <sip:699800@maxus.lan>
Call-ID: c5
CSeq: 1 INVITE
P-Asserted-Identity: <sip:invalid.unknown.domain>, <sip:anonymous@anonymous.invalid>
Contact: <sip:10.1.0.1>
Content-Length: 0

";
        let bye = "BYE sip:10.1.0.1 SIP/2.0
Via: SIP/2.0/UDP 10.1.0.2;branch=z9hG4bK6
From: <sip:699800@maxus.lan>;tag=b
To: <sip:anonymous@anonymous.invalid>;tag=a
Call-ID: c5
CSeq: 1 BYE
P-Asserted-Identity: <tel:+79263776264>
Contact: <sip:10.1.0.2>
Content-Length: 0

";
        check(&[(invite, "10.1.0.1>10.1.0.2"), (bye, "10.1.0.2>10.1.0.1")], &["ue_address=10.1.0.1"]);
    }

    #[test]
    fn register_gives_impu_impi_and_the_via_received_address() {
        let register = "REGISTER sip:ims.example.net SIP/2.0
Via: SIP/2.0/UDP [2001:db8::7]:5060;branch=z9hG4bK4
From: <sip:001010000000001@ims.example.net>;tag=r
To: <sip:001010000000001@ims.example.net>
Call-ID: r1
CSeq: 1 REGISTER
Contact: <sip:host.example>
Authorization: Digest username=\"001010000000001@ims.example.net\", realm=\"ims.example.net\", nonce=\"\"
Content-Length: 0

";
        let unauthorized = "SIP/2.0 401 Unauthorized
Via: SIP/2.0/UDP ue.example:5060;received=10.45.0.8;branch=z9hG4bK4
From: <sip:001010000000001@ims.example.net>;tag=r
To: <sip:001010000000001@ims.example.net>;tag=p
Call-ID: r1
CSeq: 1 REGISTER
Content-Length: 0

";
        check(
            &[(register, "2001:db8::7>10.0.0.1"), (unauthorized, "10.0.0.1>2001:db8::7")],
            &[
                "ue_address=2001:db8::7",
                "impi=001010000000001@ims.example.net",
                "impu=sip:001010000000001@ims.example.net",
                "ue_address=10.45.0.8",
            ],
        );
    }

    #[test]
    fn keys_come_once_and_tunnel_teids_are_keys() {
        let mut keys = SipKeys::default();
        let text = INVITE.replace('\n', "\r\n");
        let msg = SipMessage::parse(text.as_bytes()).unwrap();
        let tunnel = Tunnel {
            kind: TunnelKind::GtpU,
            src: "192.0.2.1".parse().unwrap(),
            dst: "192.0.2.2".parse().unwrap(),
            key: Some(0x1234),
            inner_len: 0,
        };
        let route = ("10.45.0.7".parse().unwrap(), "10.46.0.10".parse().unwrap());
        keys.on_message(&msg, route, Some(&tunnel));
        keys.on_message(&msg, route, Some(&tunnel));
        let keys = keys.into_keys();
        assert_eq!(keys.len(), 6);
        assert_eq!((keys[0].kind, keys[0].value.as_str()), (Kind::Teid, "0x00001234"));
    }

    #[test]
    fn hosts_and_uris() {
        assert_eq!(host_ip("10.0.0.1:5060"), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(host_ip("[::1]:5060"), Some("::1".parse().unwrap()));
        assert_eq!(host_ip("::1"), Some("::1".parse().unwrap()));
        assert_eq!(host_ip("pcscf.example:5060"), None);
        assert_eq!(uri_host_ip("sip:u@10.1.2.3;transport=tcp"), Some("10.1.2.3".parse().unwrap()));
        assert_eq!(uri_host_ip("tel:+1234"), None);
        assert_eq!(
            list_items("<sip:a,b@x>, \"c, d\" <tel:1>").collect::<Vec<_>>(),
            ["<sip:a,b@x>", "\"c, d\" <tel:1>"]
        );
    }
}
