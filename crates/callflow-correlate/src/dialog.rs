//! SIP dialogs: the state machine of a call, its messages in order, and retransmission detection.
//!
//! Besides the state, a call keeps what troubleshooting asks of it: the media changes its
//! re-INVITEs and UPDATEs make (each sender's SDP against its previous one: hold by
//! direction or `0.0.0.0`, resume, codec, address), whether a provisional answer brought
//! SDP (early media, decided with the media's times when the call closes), the To tags
//! answering each INVITE transaction (forking: several tags for one CSeq and Via branch),
//! and the DTMF keys of SIP INFO (`application/dtmf-relay`, `application/dtmf`). The harder
//! transaction cases: PRACK and its 200 are not the INVITE's ACK or answer, a 401/407
//! challenge is not the call's answer (setup runs from the first INVITE to the retry's
//! final answer), and a CANCEL that crosses the 2xx loses (the call is up, a later 487 is
//! ignored).

use crate::ids::{session_id, Fnv64};
use crate::legs::{CallNames, LegKeys};
use callflow_decode::dtmf::InfoDtmf;
use callflow_decode::packet::Tunnel;
use callflow_decode::sdp::{Direction, Sdp};
use callflow_decode::sip::SipMessage;
use callflow_model::{
    Branch, CallState, DtmfDigit, DtmfSource, MediaChange, MediaChangeKind, Message, Party, Protocol, Related, Session,
    SessionKind, Timestamp, Transport,
};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

/// Most anomalies kept per session: enough to see a pattern, bounded for broken captures.
const MAX_ANOMALIES: usize = 100;

/// Most INVITE transactions remembered per dialog (the oldest are forgotten first): retries
/// with credentials, forks seen at several hops, parallel INVITEs.
const MAX_INVITES: usize = 32;

/// Most forking branches, media changes and SIP INFO digits kept per call.
const MAX_LISTED: usize = 1_000;

/// What an SDP says of a call's main media, to see what a later one changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MediaSummary {
    /// `sendrecv`, `sendonly`, `recvonly`, `inactive`, or `0.0.0.0` for an RFC 2543 hold.
    direction: &'static str,
    address: Option<SocketAddr>,
    codec: Option<String>,
}

impl MediaSummary {
    /// The summary of the first audio section (else the first section) of `sdp`.
    pub fn of(sdp: &Sdp<'_>) -> Option<MediaSummary> {
        let media = sdp.media.iter().find(|m| m.media.eq_ignore_ascii_case("audio")).or(sdp.media.first())?;
        let ip = media.connection.as_ref().or(sdp.connection.as_ref()).and_then(|c| c.ip);
        let direction = match media.effective_direction(sdp) {
            _ if ip.is_some_and(|ip| ip.is_unspecified()) => "0.0.0.0",
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        };
        let codec = media.formats.first().map(|f| {
            let pt = f.parse::<u8>().ok();
            let mapped = media.rtpmaps.iter().find(|m| Some(m.payload_type) == pt).map(|m| m.encoding.to_string());
            let known = pt.and_then(callflow_decode::rtp::static_payload_name).map(str::to_string);
            mapped.or(known).unwrap_or_else(|| f.to_string())
        });
        let address = ip.filter(|ip| !ip.is_unspecified()).map(|ip| SocketAddr::new(ip, media.port));
        Some(MediaSummary { direction, address, codec })
    }

    fn held(&self) -> bool {
        self.direction != "sendrecv"
    }
}

/// The methods of an INVITE dialog's own transactions (RFC 3261, 3262, 3311).
const INVITE_FAMILY: [&str; 6] = ["INVITE", "ACK", "CANCEL", "BYE", "PRACK", "UPDATE"];

/// Whether a message is a request of an INVITE dialog's own methods, or a response to one.
pub(crate) fn is_invite_family(msg: &SipMessage<'_>) -> bool {
    let method = msg.method().or_else(|| msg.cseq().map(|c| c.method));
    method.is_some_and(|m| INVITE_FAMILY.contains(&m))
}

/// One initial INVITE transaction of a call, as its responses and CANCEL find it (RFC
/// 3261 section 9.1: a CANCEL has its INVITE's CSeq number and top Via branch).
#[derive(Debug)]
struct InviteTx {
    cseq: u32,
    branch: Option<String>,
    start: Timestamp,
    /// When its first final response came.
    final_at: Option<Timestamp>,
    /// A CANCEL matched it before its final response.
    cancelled: bool,
}

/// Where and when a SIP message was seen.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MsgMeta {
    pub ts: Timestamp,
    pub frame: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: Transport,
    /// The number of the tunnel the message came through (0 for none).
    pub context: u32,
    /// The tunnel itself.
    pub tunnel: Option<Tunnel>,
}

/// One SIP dialog (or non-INVITE transaction group) sharing a Call-ID.
#[derive(Debug)]
pub(crate) struct Dialog {
    pub kind: SessionKind,
    pub call_id: String,
    from: String,
    to: String,
    /// The caller's From tag, taken from the first request.
    caller_tag: Option<String>,
    /// The callee's tag, from the To of the first response that carried one.
    callee_tag: Option<String>,
    pub first_frame: u64,
    pub start: Timestamp,
    /// Last SIP or media activity, for idle sweeping.
    pub last_activity: Timestamp,
    last_message: Timestamp,
    pub state: CallState,
    /// The initial INVITE transactions, oldest first, at most [`MAX_INVITES`].
    invites: Vec<InviteTx>,
    invite_ts: Option<Timestamp>,
    first_18x: Option<Timestamp>,
    first_final: Option<Timestamp>,
    /// The first final response answered an INVITE that was cancelled (a CANCEL matched
    /// it, or it got a 487): when another INVITE was answered, setup time is taken from that.
    first_final_cancelled: bool,
    answered: Option<Timestamp>,
    /// When the INVITE that was answered was sent.
    answered_invite: Option<Timestamp>,
    /// A message of an INVITE dialog was seen (a response to an INVITE, an ACK, a BYE...).
    invite_dialog: bool,
    /// The dialog's initial INVITE was seen.
    initial_invite: bool,
    bye: Option<Timestamp>,
    hangup_by: Option<Party>,
    participants: Vec<SocketAddr>,
    messages: Vec<Message>,
    /// Hashes of (direction, CSeq, branch, method or status) seen, to spot retransmissions.
    seen: HashSet<u64>,
    anomalies: Vec<String>,
    /// The tunnel of the first message.
    tunnel: Option<Tunnel>,
    /// What ties the call to its other legs (filled by the handler, which knows the options).
    pub legs: LegKeys,
    /// A provisional answer to the INVITE carried SDP before any 2xx: early media.
    early_sdp: bool,
    /// The first final answer to an INVITE other than a challenge (401/407): a retry with
    /// credentials follows a challenge, so it is not the call's answer.
    first_real_final: Option<Timestamp>,
    /// The To tags of the responses to each INVITE transaction (by CSeq number and top Via
    /// branch: forking is several tags answering one INVITE at one hop, while the same
    /// INVITE seen at two hops of a tag-rewriting SBC has one tag per Via branch), at most
    /// [`MAX_LISTED`].
    branches: Vec<((u32, u64), Branch)>,
    /// DTMF keys sent in SIP INFO.
    info_dtmf: Vec<DtmfDigit>,
    /// The latest SDP of each sender (by address), to see what the next one changes.
    sdp_by_sender: Vec<(SocketAddr, MediaSummary)>,
    media_changes: Vec<MediaChange>,
    /// Links other sessions made to this one when they closed first.
    related: Vec<Related>,
}

impl Dialog {
    /// Starts a dialog from its first message.
    pub fn new(msg: &SipMessage<'_>, call_id: &str, meta: &MsgMeta) -> Dialog {
        let cseq_method = msg.cseq().map(|c| c.method).unwrap_or("");
        let first_method = msg.method().unwrap_or(cseq_method);
        let kind = match first_method {
            "INVITE" => SessionKind::SipCall,
            "REGISTER" => SessionKind::SipRegister,
            _ => SessionKind::SipOther,
        };
        let uri = |na: Option<callflow_decode::sip::NameAddr<'_>>| na.map(|n| n.uri.to_string()).unwrap_or_default();
        let (from, to) = (uri(msg.from()), uri(msg.to()));
        // A capture that starts mid-dialog shows a response or an in-dialog request first:
        // the state is unknown until something decides it.
        let state = if msg.method().is_some() && msg.to().and_then(|t| t.tag).is_none() {
            CallState::CallSetup
        } else {
            CallState::Unknown
        };
        Dialog {
            kind,
            call_id: call_id.to_string(),
            from,
            to,
            caller_tag: msg.from().and_then(|f| f.tag).map(str::to_string),
            callee_tag: None,
            first_frame: meta.frame,
            start: meta.ts,
            last_activity: meta.ts,
            last_message: meta.ts,
            state,
            invites: Vec::new(),
            invite_ts: None,
            first_18x: None,
            first_final: None,
            first_final_cancelled: false,
            answered: None,
            answered_invite: None,
            invite_dialog: false,
            initial_invite: false,
            bye: None,
            hangup_by: None,
            participants: Vec::new(),
            messages: Vec::new(),
            seen: HashSet::new(),
            anomalies: Vec::new(),
            tunnel: meta.tunnel,
            legs: LegKeys::default(),
            related: Vec::new(),
            early_sdp: false,
            first_real_final: None,
            branches: Vec::new(),
            info_dtmf: Vec::new(),
            sdp_by_sender: Vec::new(),
            media_changes: Vec::new(),
        }
    }

    /// The `id` the session will have.
    pub fn session_id(&self) -> String {
        session_id(self.kind.as_str(), self.call_id.as_bytes(), self.first_frame)
    }

    /// The Call-ID and the From and To URIs, which the leg rules compare.
    pub fn names(&self) -> CallNames<'_> {
        CallNames { call_id: &self.call_id, from: &self.from, to: &self.to }
    }

    /// Links the session to another (a leg of the same call that closed first).
    pub fn link(&mut self, related: Related) {
        if !self.related.contains(&related) {
            self.related.push(related);
        }
    }

    /// True once nothing more is expected: the call ended, or the request was finally answered.
    pub fn is_terminated(&self) -> bool {
        match self.kind {
            SessionKind::SipCall => matches!(
                self.state,
                CallState::Completed | CallState::Rejected | CallState::Cancelled | CallState::Failed
            ),
            _ => self.first_final.is_some(),
        }
    }

    /// Whether `msg` carries this call's two tags (From and To, either way round): a request
    /// or response within the dialog, whatever its method.
    pub fn has_tags_of(&self, msg: &SipMessage<'_>) -> bool {
        let (Some(caller), Some(callee)) = (self.caller_tag.as_deref(), self.callee_tag.as_deref()) else {
            return false;
        };
        let (Some(from), Some(to)) = (msg.from().and_then(|f| f.tag), msg.to().and_then(|t| t.tag)) else {
            return false;
        };
        (from == caller && to == callee) || (from == callee && to == caller)
    }

    /// The INVITE transaction a response or CANCEL with CSeq number `cseq` and top Via
    /// `branch` belongs to: the same number and branch, else the latest with the number.
    fn invite_tx(&self, cseq: u32, branch: Option<&str>) -> Option<usize> {
        let same_branch = self.invites.iter().rposition(|t| t.cseq == cseq && t.branch.as_deref() == branch);
        same_branch.or_else(|| self.invites.iter().rposition(|t| t.cseq == cseq))
    }

    /// Whether an INVITE transaction other than the one at `except` still waits for its answer.
    fn other_invite_pending(&self, except: Option<(u32, Option<&str>)>) -> bool {
        self.invites.iter().any(|t| {
            t.final_at.is_none() && !t.cancelled && except.is_none_or(|(c, b)| t.cseq != c || t.branch.as_deref() != b)
        })
    }

    /// Records a message and advances the state machine. `has_sdp` adds "(SDP)" to the
    /// summary. Returns false for a retransmission, which changes nothing else.
    pub fn on_message(&mut self, msg: &SipMessage<'_>, meta: &MsgMeta, has_sdp: bool) -> bool {
        self.last_activity = self.last_activity.max(meta.ts);
        self.last_message = self.last_message.max(meta.ts);
        for addr in [meta.src, meta.dst] {
            if !self.participants.contains(&addr) {
                self.participants.push(addr);
            }
        }
        let cseq = msg.cseq();
        let (cseq_num, cseq_method) = cseq.map(|c| (c.seq, c.method)).unwrap_or((0, ""));
        let retransmission = !self.seen.insert(transaction_hash(msg, meta, cseq_num, cseq_method));

        let sdp = if has_sdp { " (SDP)" } else { "" };
        let (summary, method, status, reason) = match (msg.method(), msg.status()) {
            (Some(m), _) => (format!("{m}{sdp}"), Some(m.to_string()), None, None),
            (None, Some(code)) => {
                let reason = msg.reason().unwrap_or("");
                (format!("{code} {reason}{sdp}"), None, Some(code), Some(reason.to_string()))
            }
            (None, None) => (String::from("?"), None, None, None),
        };
        self.messages.push(Message {
            ts: meta.ts,
            frame: meta.frame,
            src: meta.src,
            dst: meta.dst,
            transport: meta.transport,
            method,
            status,
            reason,
            cseq: cseq.map(|c| format!("{} {}", c.seq, c.method)).unwrap_or_default(),
            summary,
            retransmission,
            protocol: Protocol::Sip,
            diameter: None,
            gtp: None,
            // At most 255: a longer path is counted as 255.
            vias: msg.vias().count().min(255) as u8,
            capture_agent: None,
        });
        if retransmission {
            return false;
        }
        self.invite_dialog |= is_invite_family(msg);
        match (msg.method(), msg.status()) {
            (Some(method), _) => self.on_request(msg, method, cseq_num, meta),
            (None, Some(code)) => {
                if has_sdp && (101..200).contains(&code) && cseq_method == "INVITE" && self.answered.is_none() {
                    self.early_sdp = true;
                }
                self.on_response(msg, code, cseq_num, cseq_method, meta);
            }
            (None, None) => {}
        }
        true
    }

    /// Records what a new SDP of the call changes against its sender's previous one: hold,
    /// resume, codec or address (a re-INVITE or UPDATE, or the answer to one).
    pub fn on_sdp(&mut self, summary: MediaSummary, meta: &MsgMeta) {
        if self.kind != SessionKind::SipCall {
            return;
        }
        let Some(i) = self.sdp_by_sender.iter().position(|(a, _)| *a == meta.src) else {
            if self.sdp_by_sender.len() < MAX_LISTED {
                self.sdp_by_sender.push((meta.src, summary));
            }
            return;
        };
        let old = std::mem::replace(&mut self.sdp_by_sender[i].1, summary);
        let new = &self.sdp_by_sender[i].1;
        let sender = meta.src;
        let mut changes = Vec::new();
        if old.held() != new.held() || (old.held() && old.direction != new.direction) {
            let kind = if new.held() { MediaChangeKind::Hold } else { MediaChangeKind::Resume };
            changes.push((kind, format!("{sender}: {} -> {}", old.direction, new.direction)));
        }
        if old.codec != new.codec {
            let name = |c: &Option<String>| c.clone().unwrap_or_else(|| "-".into());
            changes.push((MediaChangeKind::Codec, format!("{sender}: {} -> {}", name(&old.codec), name(&new.codec))));
        }
        if old.address != new.address && new.address.is_some() && old.address.is_some() {
            let addr = |a: Option<SocketAddr>| a.map_or_else(|| "-".into(), |a| a.to_string());
            let detail = format!("{sender}: {} -> {}", addr(old.address), addr(new.address));
            changes.push((MediaChangeKind::Address, detail));
        }
        for (kind, detail) in changes {
            if self.media_changes.len() < MAX_LISTED {
                self.media_changes.push(MediaChange { ts: meta.ts, frame: meta.frame, kind, detail });
            }
        }
    }

    /// Until when media counts as early: `None` when no provisional answer carried SDP,
    /// else the 2xx's time (or the end of time, with no 2xx).
    pub fn early_media_until(&self) -> Option<Timestamp> {
        self.early_sdp.then(|| self.answered.unwrap_or(Timestamp::from_nanos(i64::MAX)))
    }

    fn on_request(&mut self, msg: &SipMessage<'_>, method: &str, cseq: u32, meta: &MsgMeta) {
        let in_dialog = msg.to().and_then(|t| t.tag).is_some();
        match method {
            "INVITE" if !in_dialog => {
                // A new initial INVITE (first attempt, or a retry with credentials after a
                // 401/407) restarts call setup, as Wireshark's VoIP calls does.
                if !matches!(self.state, CallState::InCall | CallState::Completed) {
                    self.state = CallState::CallSetup;
                }
                if self.invites.len() >= MAX_INVITES {
                    self.invites.remove(0);
                }
                let branch = msg.top_via().and_then(|v| v.branch).map(str::to_string);
                self.invites.push(InviteTx { cseq, branch, start: meta.ts, final_at: None, cancelled: false });
                self.initial_invite = true;
                self.invite_ts.get_or_insert(meta.ts);
                if self.caller_tag.is_none() {
                    self.caller_tag = msg.from().and_then(|f| f.tag).map(str::to_string);
                }
            }
            "CANCEL" => {
                // A CANCEL ends the call only when it reaches an INVITE not yet answered and
                // no other INVITE of the call (a fork, a parallel INVITE) is still going; one
                // that matches no INVITE seen cancels whatever is pending.
                let branch = msg.top_via().and_then(|v| v.branch);
                let matched = self.invite_tx(cseq, branch).and_then(|i| self.invites.get_mut(i)).map(|tx| {
                    let unanswered = tx.final_at.is_none();
                    tx.cancelled |= unanswered;
                    (unanswered, (tx.cseq, tx.branch.clone()))
                });
                let applies = match &matched {
                    Some((unanswered, (c, b))) => *unanswered && !self.other_invite_pending(Some((*c, b.as_deref()))),
                    None => true,
                };
                if applies && matches!(self.state, CallState::CallSetup | CallState::Ringing) {
                    self.state = CallState::Cancelled;
                }
            }
            "BYE" => {
                if self.bye.is_none() {
                    self.bye = Some(meta.ts);
                    let tag = msg.from().and_then(|f| f.tag);
                    self.hangup_by = match (tag, &self.caller_tag, &self.callee_tag) {
                        (Some(t), Some(c), _) if t == c => Some(Party::Caller),
                        (Some(t), _, Some(c)) if t == c => Some(Party::Callee),
                        (Some(_), Some(_), _) => Some(Party::Callee),
                        _ => None,
                    };
                }
                if self.answered.is_none() && self.kind == SessionKind::SipCall {
                    self.note(format!("BYE in frame {} without a 2xx answer seen", meta.frame));
                }
                self.state = CallState::Completed;
            }
            "INFO" => {
                let dtmf = msg.header("Content-Type").and_then(|ct| InfoDtmf::parse(ct, msg.body()));
                if let Some(d) = dtmf.filter(|_| self.info_dtmf.len() < MAX_LISTED) {
                    self.info_dtmf.push(DtmfDigit {
                        ts: meta.ts,
                        digit: d.digit.to_string(),
                        source: DtmfSource::SipInfo,
                        duration_ms: d.duration_ms.map(f64::from),
                    });
                }
            }
            _ => {
                if self.kind != SessionKind::SipCall && self.state == CallState::Unknown && !in_dialog {
                    self.state = CallState::CallSetup;
                }
            }
        }
    }

    fn on_response(&mut self, msg: &SipMessage<'_>, code: u16, cseq: u32, cseq_method: &str, meta: &MsgMeta) {
        if self.callee_tag.is_none() {
            if let Some(tag) = msg.to().and_then(|t| t.tag) {
                if Some(tag) != self.caller_tag.as_deref() {
                    self.callee_tag = Some(tag.to_string());
                }
            }
        }
        if self.kind != SessionKind::SipCall {
            // REGISTER, OPTIONS, SUBSCRIBE...: the latest final answer decides.
            if code >= 200 {
                self.first_final.get_or_insert(meta.ts);
                self.state = if code < 300 { CallState::Completed } else { CallState::Rejected };
            }
            return;
        }
        if cseq_method != "INVITE" {
            return;
        }
        // A challenge (401/407) carries the tag of the proxy that sent it, not a branch.
        if let Some(tag) = msg.to().and_then(|t| t.tag).filter(|_| code > 100 && !matches!(code, 401 | 407)) {
            let room = self.branches.len() < MAX_LISTED;
            let mut h = Fnv64::default();
            msg.top_via().and_then(|v| v.branch).hash(&mut h);
            let tx = (cseq, h.finish());
            match self.branches.iter_mut().find(|(t, b)| *t == tx && b.to_tag == tag).map(|(_, b)| b) {
                Some(b) if code >= 200 => {
                    b.final_status.get_or_insert(code);
                }
                Some(_) => {}
                None if room => self.branches.push((
                    tx,
                    Branch {
                        to_tag: tag.to_string(),
                        first_response: meta.ts,
                        first_status: code,
                        final_status: (code >= 200).then_some(code),
                    },
                )),
                None => {}
            }
        }
        // Responses go to their own INVITE transaction; with none seen (the capture began
        // after the INVITE), every INVITE response counts.
        let branch = msg.top_via().and_then(|v| v.branch);
        let tx = match self.invite_tx(cseq, branch) {
            Some(i) => self.invites.get_mut(i),
            None if self.invites.is_empty() => None,
            // A response to a re-INVITE, or to an INVITE not seen.
            None => return,
        };
        let key = tx.as_ref().map(|t| (t.cseq, t.branch.clone()));
        let (start, cancelled) = tx.as_ref().map_or((None, false), |t| (Some(t.start), t.cancelled || code == 487));
        if code >= 200 {
            if let Some(tx) = tx {
                tx.final_at.get_or_insert(meta.ts);
            }
            if self.first_final.is_none() {
                self.first_final = Some(meta.ts);
                self.first_final_cancelled = cancelled;
            }
            if !matches!(code, 401 | 407) {
                self.first_real_final.get_or_insert(meta.ts);
            }
        }
        match code {
            180..=189 => {
                self.first_18x.get_or_insert(meta.ts);
                if self.state == CallState::CallSetup {
                    self.state = CallState::Ringing;
                }
            }
            200..=299 => {
                if self.answered.is_none() {
                    self.answered = Some(meta.ts);
                    self.answered_invite = start;
                }
                // A CANCEL that crossed the 2xx on the wire lost the race: the call is up
                // (RFC 3261 section 9.2), and the caller will ACK and BYE it.
                if matches!(
                    self.state,
                    CallState::CallSetup | CallState::Ringing | CallState::Unknown | CallState::Cancelled
                ) {
                    self.state = CallState::InCall;
                }
            }
            // A failure ends the call once no other INVITE of it is still going.
            300.. if !self.other_invite_pending(key.as_ref().map(|(c, b)| (*c, b.as_deref()))) => match self.state {
                CallState::CallSetup | CallState::Ringing if code == 487 => self.state = CallState::Cancelled,
                CallState::CallSetup | CallState::Ringing | CallState::Unknown => self.state = CallState::Rejected,
                _ => {}
            },
            _ => {}
        }
    }

    /// Records an anomaly found outside the state machine (e.g. by the analyzer).
    pub fn note(&mut self, anomaly: String) {
        if self.anomalies.len() < MAX_ANOMALIES {
            self.anomalies.push(anomaly);
        }
    }

    /// Builds the output session; media streams are added by the caller.
    pub fn into_session(mut self) -> Session {
        // Never negative: a final answer before the INVITE (the INVITE came later in the
        // capture) gives no setup time.
        let since = |t: Option<Timestamp>, from: Option<Timestamp>| {
            let (t, from) = (t?, from?);
            (t >= from).then(|| t.millis_since(from))
        };
        let invite = self.invite_ts;
        // From the answered INVITE when the first final answer went to one that was cancelled
        // (a fork or a parallel INVITE), else from the first INVITE to the first final answer.
        // A challenge (401/407) is not the answer: the retry with credentials is the same
        // call, so its setup runs from the first INVITE to the first other final answer.
        let setup_time_ms = if self.first_final_cancelled && self.answered.is_some() {
            since(self.answered, self.answered_invite)
        } else {
            since(self.first_real_final.or(self.first_final), invite)
        };
        if self.invite_dialog && !self.initial_invite {
            // The INVITE was lost (a fragment that never completed) or came before the capture.
            self.state = CallState::Unknown;
            let frame = self.first_frame;
            self.note(format!(
                "initial_request_missing: the dialog's INVITE is not in the capture (it starts at frame {frame})"
            ));
        }
        let base = Session::empty(self.session_id(), self.kind);
        Session {
            call_id: self.call_id,
            from: self.from,
            to: self.to,
            state: self.state,
            start: self.start,
            end: self.last_message,
            setup_time_ms,
            post_dial_delay_ms: since(self.first_18x, invite),
            ring_time_ms: match (self.first_18x, self.first_real_final.or(self.first_final)) {
                (Some(r), Some(f)) if f >= r => Some(f.millis_since(r)),
                _ => None,
            },
            duration_ms: match (self.answered, self.bye) {
                (Some(a), Some(b)) if b >= a => Some(b.millis_since(a)),
                _ => None,
            },
            hangup_by: self.hangup_by,
            participants: self.participants,
            messages: self.messages,
            anomalies: self.anomalies,
            related: self.related,
            tunnel: self.tunnel.as_ref().map(crate::ctx::tunnel_out),
            media_changes: self.media_changes,
            branches: forks(self.branches),
            dtmf: self.info_dtmf,
            ..base
        }
    }
}

/// The branches of the INVITEs answered with several To tags, in order of first response.
fn forks(branches: Vec<((u32, u64), Branch)>) -> Vec<Branch> {
    let tags = |tx: (u32, u64)| branches.iter().filter(|(t, _)| *t == tx).count();
    let forked: Vec<(u32, u64)> = branches.iter().map(|(t, _)| *t).filter(|t| tags(*t) > 1).collect();
    branches.into_iter().filter(|(c, _)| forked.contains(c)).map(|(_, b)| b).collect()
}

/// Identifies a message within its transaction and direction, so a second copy is a retransmission.
fn transaction_hash(msg: &SipMessage<'_>, meta: &MsgMeta, cseq: u32, cseq_method: &str) -> u64 {
    let mut h = Fnv64::default();
    meta.src.hash(&mut h);
    meta.dst.hash(&mut h);
    cseq.hash(&mut h);
    cseq_method.hash(&mut h);
    msg.method().hash(&mut h);
    msg.status().hash(&mut h);
    msg.top_via().and_then(|v| v.branch).hash(&mut h);
    h.finish()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The session one dialog makes of the messages of `script`, 10 ms apart.
    ///
    /// A line is `> ` (caller to callee) or `< ` (callee to caller), then a request
    /// `METHOD cseq branch`, with `in` at the end when it is sent within the dialog (with
    /// the callee's To tag), or a response `status METHOD cseq branch` (always with the
    /// callee's tag).
    pub(crate) fn script_session(script: &[&str]) -> Session {
        let caller: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        let callee: SocketAddr = "10.0.0.2:5060".parse().unwrap();
        let mut dialog: Option<Dialog> = None;
        for (i, line) in script.iter().enumerate() {
            let (from_caller, rest) = match line.split_at(2) {
                ("> ", rest) => (true, rest),
                ("< ", rest) => (false, rest),
                _ => panic!("bad line {line}"),
            };
            let words: Vec<&str> = rest.split_whitespace().collect();
            let (tags, start, cseq) = if words[0].starts_with(|c: char| c.is_ascii_digit()) {
                // Responses here answer the caller's requests.
                (
                    Some(("caller", "callee")),
                    format!("SIP/2.0 {} Whatever", words[0]),
                    format!("{} {}", words[2], words[1]),
                )
            } else {
                let in_dialog = words.get(3) == Some(&"in");
                let tags = match (in_dialog, from_caller) {
                    (false, _) => None,
                    (true, true) => Some(("caller", "callee")),
                    (true, false) => Some(("callee", "caller")),
                };
                (tags, format!("{} sip:b@10.0.0.2 SIP/2.0", words[0]), format!("{} {}", words[1], words[0]))
            };
            let branch = if start.starts_with("SIP") { words[3] } else { words[2] };
            let (from_tag, to) = match tags {
                Some((f, t)) => (f, format!("<sip:b@10.0.0.2>;tag={t}")),
                None => ("caller", String::from("<sip:b@10.0.0.2>")),
            };
            let text = format!(
                "{start}\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK{branch}\r\nFrom: <sip:a@10.0.0.1>;tag={from_tag}\r\n\
                 To: {to}\r\nCall-ID: c\r\nCSeq: {cseq}\r\n\r\n"
            );
            let msg = SipMessage::parse(text.as_bytes()).expect("parses");
            let (src, dst) = if from_caller { (caller, callee) } else { (callee, caller) };
            let ts = Timestamp::from_nanos(i as i64 * 10_000_000);
            let meta =
                MsgMeta { ts, frame: i as u64 + 1, src, dst, transport: Transport::Udp, context: 0, tunnel: None };
            dialog.get_or_insert_with(|| Dialog::new(&msg, "c", &meta)).on_message(&msg, &meta, false);
        }
        dialog.expect("a message").into_session()
    }

    /// Runs the messages of `script` through one dialog, 10 ms apart, and compares what the
    /// session says with `expected`: `STATE setup= ring= duration= hangup= anomalies`
    /// (the script's syntax is [`script_session`]'s).
    fn check(script: &[&str], expected: &str) {
        let s = script_session(script);
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        let hangup = s.hangup_by.map_or("-", |p| if p == Party::Caller { "caller" } else { "callee" });
        let anomalies: Vec<&str> = s.anomalies.iter().map(|a| a.split([':', ' ']).next().unwrap_or("")).collect();
        let got = format!(
            "{} setup={} ring={} duration={} hangup={hangup} {anomalies:?}",
            s.state.as_str(),
            ms(s.setup_time_ms),
            ms(s.ring_time_ms),
            ms(s.duration_ms)
        );
        assert_eq!(got, expected, "{script:#?}");
    }

    #[test]
    fn answered_and_ended() {
        check(
            &["> INVITE 1 i", "< 180 INVITE 1 i", "< 200 INVITE 1 i", "> ACK 1 a in"],
            "IN_CALL setup=20 ring=10 duration=- hangup=- []",
        );
        check(
            &["> INVITE 1 i", "< 200 INVITE 1 i", "> ACK 1 a in", "> BYE 2 b in", "< 200 BYE 2 b"],
            "COMPLETED setup=10 ring=- duration=20 hangup=caller []",
        );
        check(
            &["> INVITE 1 i", "< 200 INVITE 1 i", "> ACK 1 a in", "< BYE 1 b in"],
            "COMPLETED setup=10 ring=- duration=20 hangup=callee []",
        );
    }

    #[test]
    fn rejected_and_cancelled() {
        check(&["> INVITE 1 i", "< 486 INVITE 1 i", "> ACK 1 i"], "REJECTED setup=10 ring=- duration=- hangup=- []");
        check(
            &["> INVITE 1 i", "< 180 INVITE 1 i", "> CANCEL 1 i", "< 200 CANCEL 1 i", "< 487 INVITE 1 i"],
            "CANCELLED setup=40 ring=30 duration=- hangup=- []",
        );
        // A 487 without the CANCEL seen.
        check(&["> INVITE 1 i", "< 487 INVITE 1 i"], "CANCELLED setup=10 ring=- duration=- hangup=- []");
    }

    #[test]
    fn retry_with_credentials_is_one_call_set_up_from_the_first_invite() {
        // The 407 is a challenge, not the answer: setup runs to the 200 of the retry.
        check(
            &["> INVITE 1 i1", "< 407 INVITE 1 i1", "> ACK 1 i1", "> INVITE 2 i2", "< 200 INVITE 2 i2"],
            "IN_CALL setup=40 ring=- duration=- hangup=- []",
        );
        check(
            &[
                "> INVITE 1 i1",
                "< 401 INVITE 1 i1",
                "> ACK 1 i1",
                "> INVITE 2 i2",
                "< 180 INVITE 2 i2",
                "< 486 INVITE 2 i2",
            ],
            "REJECTED setup=50 ring=10 duration=- hangup=- []",
        );
        // A challenge nobody answered is the call's final answer.
        check(&["> INVITE 1 i1", "< 407 INVITE 1 i1", "> ACK 1 i1"], "REJECTED setup=10 ring=- duration=- hangup=- []");
    }

    #[test]
    fn cancel_crossing_the_200_leaves_the_call_up() {
        // The CANCEL and the 200 cross on the wire: the call is established, and the 487
        // that follows the 200 changes nothing (RFC 3261 section 9.2).
        check(
            &[
                "> INVITE 1 i",
                "< 180 INVITE 1 i",
                "> CANCEL 1 i",
                "< 200 INVITE 1 i",
                "< 200 CANCEL 1 i",
                "> ACK 1 a in",
                "< 487 INVITE 1 i",
            ],
            "IN_CALL setup=30 ring=20 duration=- hangup=- []",
        );
        check(
            &["> INVITE 1 i", "> CANCEL 1 i", "< 200 INVITE 1 i", "> ACK 1 a in", "> BYE 2 b in", "< 200 BYE 2 b"],
            "COMPLETED setup=20 ring=- duration=20 hangup=caller []",
        );
    }

    #[test]
    fn prack_is_not_an_ack_and_its_200_is_not_the_answer() {
        check(
            &["> INVITE 1 i", "< 183 INVITE 1 i", "> PRACK 2 p in", "< 200 PRACK 2 p"],
            "RINGING setup=- ring=- duration=- hangup=- []",
        );
        check(
            &[
                "> INVITE 1 i",
                "< 183 INVITE 1 i",
                "> PRACK 2 p in",
                "< 200 PRACK 2 p",
                "< 200 INVITE 1 i",
                "> ACK 1 a in",
            ],
            "IN_CALL setup=40 ring=30 duration=- hangup=- []",
        );
    }

    #[test]
    fn cancel_reaches_only_its_own_invite() {
        // After the final answer, a CANCEL of the same INVITE does nothing (RFC 3261 9.2).
        check(&["> INVITE 1 i", "< 200 INVITE 1 i", "> CANCEL 1 i"], "IN_CALL setup=10 ring=- duration=- hangup=- []");
        // A CANCEL of a parallel INVITE after the answer.
        check(
            &["> INVITE 1 i1", "> INVITE 2 i2", "< 200 INVITE 1 i1", "> CANCEL 2 i2", "< 487 INVITE 2 i2"],
            "IN_CALL setup=20 ring=- duration=- hangup=- []",
        );
        // A CANCEL of a parallel INVITE before the answer, while the other still goes on.
        check(
            &["> INVITE 1 i1", "> INVITE 2 i2", "> CANCEL 2 i2", "< 487 INVITE 2 i2", "< 200 INVITE 1 i1"],
            "IN_CALL setup=40 ring=- duration=- hangup=- []",
        );
        // Both cancelled.
        check(
            &["> INVITE 1 i1", "> INVITE 2 i2", "> CANCEL 2 i2", "> CANCEL 1 i1"],
            "CANCELLED setup=- ring=- duration=- hangup=- []",
        );
    }

    #[test]
    fn the_same_invite_seen_at_two_hops() {
        // One hop's failure leaves the call going until the other hop's.
        check(
            &["> INVITE 1 h1", "> INVITE 1 h2", "< 486 INVITE 1 h2"],
            "CALL_SETUP setup=20 ring=- duration=- hangup=- []",
        );
        check(
            &["> INVITE 1 h1", "> INVITE 1 h2", "< 486 INVITE 1 h2", "< 486 INVITE 1 h1"],
            "REJECTED setup=20 ring=- duration=- hangup=- []",
        );
    }

    #[test]
    fn retransmissions_change_nothing() {
        check(
            &["> INVITE 1 i", "> INVITE 1 i", "< 180 INVITE 1 i", "< 180 INVITE 1 i", "< 200 INVITE 1 i"],
            "IN_CALL setup=40 ring=20 duration=- hangup=- []",
        );
    }

    #[test]
    fn without_the_initial_invite() {
        check(
            &["< 200 INVITE 1 i", "> ACK 1 a in", "> BYE 2 b in"],
            "UNKNOWN setup=- ring=- duration=20 hangup=caller [\"initial_request_missing\"]",
        );
        check(
            &["> BYE 2 b in", "< 200 BYE 2 b"],
            "UNKNOWN setup=- ring=- duration=- hangup=caller [\"initial_request_missing\"]",
        );
        // A BYE with no answer seen is noted too.
        check(&["> INVITE 1 i", "> BYE 2 b in"], "COMPLETED setup=- ring=- duration=- hangup=caller [\"BYE\"]");
    }

    #[test]
    fn transactions_other_than_invite() {
        check(
            &["> REGISTER 1 r1", "< 401 REGISTER 1 r1", "> REGISTER 2 r2", "< 200 REGISTER 2 r2"],
            "COMPLETED setup=- ring=- duration=- hangup=- []",
        );
        check(&["> OPTIONS 1 o", "< 404 OPTIONS 1 o"], "REJECTED setup=- ring=- duration=- hangup=- []");
        check(&["> MESSAGE 1 m"], "CALL_SETUP setup=- ring=- duration=- hangup=- []");
    }
}
