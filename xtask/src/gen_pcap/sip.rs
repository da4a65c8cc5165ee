//! The text of the generated SIP messages and SDP bodies: the headers a real dialog needs (Via branches, From/To tags, Call-ID, CSeq, Contact) with a correct Content-Length.

use super::rng::Rng;
use super::{Outcome, Side};
use std::net::Ipv4Addr;

/// One end of the dialog.
pub struct Party {
    pub user: String,
    pub ip: Ipv4Addr,
    pub tag: String,
    pub rtp_port: u16,
    pub sdp_session: u64,
}

pub struct Dialog {
    pub call_id: String,
    /// Indexed by [`Side::index`].
    pub parties: [Party; 2],
    pub tcp: bool,
    /// Headers every message carries (what ties the legs of a B2BUA call).
    pub headers: Vec<String>,
}

/// Which message of the call flow this is; the call decides its timing from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Invite,
    Trying,
    Ringing,
    Answer,
    Ack,
    Bye,
    ByeOk,
    Busy,
    Cancel,
    CancelOk,
    Terminated,
    /// 480 after ringing.
    NoAnswer,
    /// 503 without ringing.
    Failure,
}

impl Step {
    /// The name in the truth's timeline.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Invite => "invite",
            Step::Trying => "trying",
            Step::Ringing => "ringing",
            Step::Answer => "answer",
            Step::Ack => "ack",
            Step::Bye => "bye",
            Step::ByeOk => "bye_ok",
            Step::Busy => "busy",
            Step::Cancel => "cancel",
            Step::CancelOk => "cancel_ok",
            Step::Terminated => "terminated",
            Step::NoAnswer => "no_answer",
            Step::Failure => "failure",
        }
    }
}

pub struct Message {
    pub step: Step,
    pub from: Side,
    pub text: Vec<u8>,
}

/// The headers a response copies from its request.
struct Request {
    line: String,
    via: String,
    from: String,
    to: String,
    cseq: String,
}

impl Dialog {
    fn party(&self, side: Side) -> &Party {
        &self.parties[side.index()]
    }

    fn uri(&self, side: Side) -> String {
        let p = self.party(side);
        format!("sip:{}@{}:5060", p.user, p.ip)
    }

    fn contact(&self, side: Side) -> String {
        format!("<{}{}>", self.uri(side), if self.tcp { ";transport=tcp" } else { "" })
    }

    fn via(&self, side: Side, branch: &str) -> String {
        let transport = if self.tcp { "TCP" } else { "UDP" };
        format!("SIP/2.0/{transport} {}:5060;branch={branch}", self.party(side).ip)
    }

    fn name_addr(&self, side: Side, tagged: bool) -> String {
        let p = self.party(side);
        if tagged {
            format!("<sip:{}@{}>;tag={}", p.user, p.ip, p.tag)
        } else {
            format!("<sip:{}@{}>", p.user, p.ip)
        }
    }

    pub fn sdp(&self, side: Side) -> String {
        let p = self.party(side);
        format!(
            "v=0\r\no=- {id} {id} IN IP4 {ip}\r\ns=callflowd\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
             a=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n",
            id = p.sdp_session,
            ip = p.ip,
            port = p.rtp_port
        )
    }

    fn render(&self, line: &str, r: &Request, to: &str, contact: Option<Side>, sdp: Option<Side>) -> Vec<u8> {
        let is_request = !line.starts_with("SIP/2.0 ");
        let mut text = format!("{line}\r\nVia: {}\r\n", r.via);
        if is_request {
            text += "Max-Forwards: 70\r\n";
        }
        text += &format!("From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n", r.from, self.call_id, r.cseq);
        for header in &self.headers {
            text += &format!("{header}\r\n");
        }
        if let Some(side) = contact {
            text += &format!("Contact: {}\r\n", self.contact(side));
        }
        text += if is_request { "User-Agent: callflowd-xtask\r\n" } else { "Server: callflowd-xtask\r\n" };
        let body = sdp.map(|side| self.sdp(side)).unwrap_or_default();
        if !body.is_empty() {
            text += "Content-Type: application/sdp\r\n";
        }
        text += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
        text.into_bytes()
    }

    fn request(&self, r: &Request, contact: Option<Side>, sdp: Option<Side>) -> Vec<u8> {
        self.render(&r.line, r, &r.to, contact, sdp)
    }

    /// A response to `r`; `tag` adds the answering side's To tag.
    fn response(
        &self,
        r: &Request,
        status: &str,
        tag: Option<Side>,
        contact: Option<Side>,
        sdp: Option<Side>,
    ) -> Vec<u8> {
        let to = match tag {
            Some(side) => format!("{};tag={}", r.to, self.party(side).tag),
            None => r.to.clone(),
        };
        self.render(&format!("SIP/2.0 {status}"), r, &to, contact, sdp)
    }
}

/// The messages of one call in order: INVITE/100/180 and then 200/ACK/BYE/200,
/// 486/ACK or CANCEL/200/487/ACK.
pub fn script(d: &Dialog, outcome: Outcome, hangup: Side, rng: &mut Rng) -> Vec<Message> {
    use Side::{Callee, Caller};
    let mut branch = || format!("z9hG4bK{}", rng.hex(16));
    let invite = Request {
        line: format!("INVITE {} SIP/2.0", d.uri(Callee)),
        via: d.via(Caller, &branch()),
        from: d.name_addr(Caller, true),
        to: d.name_addr(Callee, false),
        cseq: "1 INVITE".into(),
    };
    let mut out = vec![
        Message { step: Step::Invite, from: Caller, text: d.request(&invite, Some(Caller), Some(Caller)) },
        Message { step: Step::Trying, from: Callee, text: d.response(&invite, "100 Trying", None, None, None) },
    ];
    // A call that fails in the network never rings.
    if outcome != Outcome::Failed {
        out.push(Message {
            step: Step::Ringing,
            from: Callee,
            text: d.response(&invite, "180 Ringing", Some(Callee), Some(Callee), None),
        });
    }
    // The ACK of a non-2xx final answer belongs to the INVITE transaction: same branch and URI.
    let ack_failure = Request {
        line: format!("ACK {} SIP/2.0", d.uri(Callee)),
        via: invite.via.clone(),
        from: invite.from.clone(),
        to: d.name_addr(Callee, true),
        cseq: "1 ACK".into(),
    };
    match outcome {
        Outcome::Completed => {
            let answer = d.response(&invite, "200 OK", Some(Callee), Some(Callee), Some(Callee));
            out.push(Message { step: Step::Answer, from: Callee, text: answer });
            let ack = Request {
                line: format!("ACK {} SIP/2.0", d.uri(Callee)),
                via: d.via(Caller, &branch()),
                from: d.name_addr(Caller, true),
                to: d.name_addr(Callee, true),
                cseq: "1 ACK".into(),
            };
            out.push(Message { step: Step::Ack, from: Caller, text: d.request(&ack, None, None) });
            let peer = hangup.peer();
            // The callee starts its own CSeq space for the requests it sends.
            let bye = Request {
                line: format!("BYE {} SIP/2.0", d.uri(peer)),
                via: d.via(hangup, &branch()),
                from: d.name_addr(hangup, true),
                to: d.name_addr(peer, true),
                cseq: if hangup == Caller { "2 BYE".into() } else { "1 BYE".into() },
            };
            out.push(Message { step: Step::Bye, from: hangup, text: d.request(&bye, None, None) });
            out.push(Message {
                step: Step::ByeOk,
                from: peer,
                text: d.render("SIP/2.0 200 OK", &bye, &bye.to, None, None),
            });
        }
        Outcome::Busy => {
            let busy = d.response(&invite, "486 Busy Here", Some(Callee), None, None);
            out.push(Message { step: Step::Busy, from: Callee, text: busy });
            out.push(Message { step: Step::Ack, from: Caller, text: d.request(&ack_failure, None, None) });
        }
        Outcome::NoAnswer | Outcome::Failed => {
            let (step, status) = match outcome {
                Outcome::NoAnswer => (Step::NoAnswer, "480 Temporarily Unavailable"),
                _ => (Step::Failure, "503 Service Unavailable"),
            };
            out.push(Message { step, from: Callee, text: d.response(&invite, status, Some(Callee), None, None) });
            out.push(Message { step: Step::Ack, from: Caller, text: d.request(&ack_failure, None, None) });
        }
        Outcome::Cancelled => {
            let cancel = Request {
                line: format!("CANCEL {} SIP/2.0", d.uri(Callee)),
                via: invite.via.clone(),
                from: invite.from.clone(),
                to: invite.to.clone(),
                cseq: "1 CANCEL".into(),
            };
            out.push(Message { step: Step::Cancel, from: Caller, text: d.request(&cancel, None, None) });
            let cancel_ok = d.response(&cancel, "200 OK", Some(Callee), None, None);
            out.push(Message { step: Step::CancelOk, from: Callee, text: cancel_ok });
            let terminated = d.response(&invite, "487 Request Terminated", Some(Callee), None, None);
            out.push(Message { step: Step::Terminated, from: Callee, text: terminated });
            out.push(Message { step: Step::Ack, from: Caller, text: d.request(&ack_failure, None, None) });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialog() -> Dialog {
        let party = |user: &str, ip: [u8; 4], tag: &str, port| Party {
            user: user.into(),
            ip: ip.into(),
            tag: tag.into(),
            rtp_port: port,
            sdp_session: 1234,
        };
        Dialog {
            call_id: "abc@10.1.0.1".into(),
            parties: [party("alice", [10, 1, 0, 1], "t1", 20000), party("bob", [10, 2, 0, 1], "t2", 30000)],
            tcp: false,
            headers: Vec::new(),
        }
    }

    fn content_length_matches(text: &[u8]) {
        let text = std::str::from_utf8(text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap().parse().unwrap();
        assert_eq!(len, body.len(), "{text}");
    }

    #[test]
    fn no_answer_rings_and_failure_does_not() {
        let steps = |outcome| -> Vec<Step> {
            script(&dialog(), outcome, Side::Caller, &mut Rng::new(1)).iter().map(|m| m.step).collect()
        };
        use Step::*;
        assert_eq!(steps(Outcome::NoAnswer), [Invite, Trying, Ringing, NoAnswer, Ack]);
        assert_eq!(steps(Outcome::Failed), [Invite, Trying, Failure, Ack]);
        let failed = script(&dialog(), Outcome::Failed, Side::Caller, &mut Rng::new(1));
        assert!(String::from_utf8_lossy(&failed[2].text).starts_with("SIP/2.0 503 Service Unavailable"));
        content_length_matches(&failed[2].text);
    }

    #[test]
    fn completed_call_flow_hung_up_by_callee() {
        let msgs = script(&dialog(), Outcome::Completed, Side::Callee, &mut Rng::new(1));
        let firsts: Vec<String> =
            msgs.iter().map(|m| String::from_utf8_lossy(&m.text).lines().next().unwrap().to_string()).collect();
        assert_eq!(
            firsts,
            [
                "INVITE sip:bob@10.2.0.1:5060 SIP/2.0",
                "SIP/2.0 100 Trying",
                "SIP/2.0 180 Ringing",
                "SIP/2.0 200 OK",
                "ACK sip:bob@10.2.0.1:5060 SIP/2.0",
                "BYE sip:alice@10.1.0.1:5060 SIP/2.0",
                "SIP/2.0 200 OK",
            ]
        );
        let bye = String::from_utf8_lossy(&msgs[5].text).to_string();
        assert!(bye.contains("From: <sip:bob@10.2.0.1>;tag=t2\r\n"), "{bye}");
        assert_eq!(msgs[5].from, Side::Callee);
        assert!(String::from_utf8_lossy(&msgs[0].text).contains("m=audio 20000 RTP/AVP 0 101\r\n"));
        msgs.iter().for_each(|m| content_length_matches(&m.text));
    }

    #[test]
    fn busy_and_cancelled_flows() {
        let busy = script(&dialog(), Outcome::Busy, Side::Caller, &mut Rng::new(1));
        let steps: Vec<Step> = busy.iter().map(|m| m.step).collect();
        assert_eq!(steps, [Step::Invite, Step::Trying, Step::Ringing, Step::Busy, Step::Ack]);
        let cancelled = script(&dialog(), Outcome::Cancelled, Side::Caller, &mut Rng::new(1));
        assert_eq!(cancelled.len(), 7);
        let cancel = String::from_utf8_lossy(&cancelled[3].text).to_string();
        let invite = String::from_utf8_lossy(&cancelled[0].text).to_string();
        let via = |t: &str| t.lines().find(|l| l.starts_with("Via:")).unwrap().to_string();
        assert_eq!(via(&cancel), via(&invite), "CANCEL shares the INVITE's branch");
        cancelled.iter().for_each(|m| content_length_matches(&m.text));
    }
}
