//! The SIP handler: SIP messages grouped into dialogs by Call-ID, the SDP they carry announced to the media table, and the dialogs closed once over.
//!
//! Closing a call also links it to the other legs of the same call and to the calls of a
//! transfer that are still open (`legs`), merges its streams' RFC 4733 events with its
//! SIP INFO digits, and flags early media.

use crate::ctx::PacketCtx;
use crate::dialog::{self, Dialog, MediaSummary, MsgMeta};
use crate::handler::{by_first_frame, Handled, Handler, Services, StreamFraming};
use crate::legs::{self, LegIndex, LegOptions};
use crate::media::Owner;
use crate::subscriber::SipKeys;
use crate::websocket;
use callflow_classify::AppProtocol;
use callflow_decode::sdp::Sdp;
use callflow_decode::sip::{self, SipMessage};
use callflow_decode::tcp::Framing;
use callflow_decode::Timestamp;
use callflow_model::{
    DtmfDigit, DtmfSource, Related, Relation, Session, SessionKind, SubscriberKey, SubscriberKeyKind, TunnelKind,
};
use std::collections::HashMap;

/// The open SIP sessions (dialogs and groups of other transactions), by owner number and
/// by Call-ID.
#[derive(Debug)]
pub(crate) struct SipHandler {
    /// Boxed: a dialog is several hundred bytes, and a table of values keeps up to twice
    /// as many slots as dialogs (measured: 803 KB for 500 calls, against 392 KB boxed).
    dialogs: HashMap<Owner, Box<Dialog>>,
    /// The open sessions of each Call-ID: its INVITE dialog and its group of other
    /// transactions (a REGISTER, say, sent with the Call-ID the INVITE then reuses).
    by_call_id: HashMap<String, CallIdSessions>,
    next_dialog: Owner,
    /// The subscriber keys each open session has carried.
    keys: HashMap<Owner, SipKeys>,
    /// The open calls by what can join them to their other legs (see `legs`).
    legs: LegIndex,
}

/// The open sessions of one Call-ID.
#[derive(Clone, Copy, Debug, Default)]
struct CallIdSessions {
    /// Its INVITE dialog (forks and retries with credentials included).
    call: Option<Owner>,
    /// Its other transactions: REGISTER, OPTIONS, SUBSCRIBE...
    other: Option<Owner>,
}

impl SipHandler {
    /// The session a SIP message belongs to, opened if need be. A session is an INVITE
    /// dialog or a group of other transactions, not a Call-ID: a Call-ID that carried a
    /// REGISTER and then an INVITE gives a `sip_register` and a `sip_call` (RFC 3261 keys
    /// a dialog by Call-ID and tags, a transaction by its branch).
    fn session_for(&mut self, msg: &SipMessage<'_>, call_id: &str, meta: &MsgMeta) -> Owner {
        let sessions = self.by_call_id.get(call_id).copied().unwrap_or_default();
        let in_call = dialog::is_invite_family(msg)
            || sessions.call.and_then(|id| self.dialogs.get(&id)).is_some_and(|d| d.has_tags_of(msg));
        let out_of_dialog_request = msg.method().is_some() && msg.to().and_then(|t| t.tag).is_none();
        let existing = match (in_call, sessions.call, sessions.other) {
            (true, Some(call), _) => Some(call),
            // An initial INVITE opens the call beside the other transactions of its Call-ID.
            (true, None, Some(_)) if msg.method() == Some("INVITE") && out_of_dialog_request => None,
            (true, None, other) => other,
            (false, _, Some(other)) => Some(other),
            // A request outside any dialog starts a transaction group of its own; what else
            // the call's Call-ID carries (a response to an in-dialog request) stays with it.
            (false, Some(_), None) if out_of_dialog_request => None,
            (false, call, None) => call,
        };
        if let Some(id) = existing {
            return id;
        }
        let id = self.next_dialog;
        self.next_dialog += 1;
        let dialog = Box::new(Dialog::new(msg, call_id, meta));
        let entry = self.by_call_id.entry(call_id.to_string()).or_default();
        if dialog.kind == SessionKind::SipCall {
            entry.call = Some(id);
        } else {
            entry.other = Some(id);
        }
        self.dialogs.insert(id, dialog);
        id
    }
}

impl SipHandler {
    /// A handler joining call legs as `legs` says.
    pub fn new(legs: LegOptions) -> Self {
        // Dialog numbers count up from 1; orphan media owners count down from the top.
        SipHandler {
            dialogs: HashMap::new(),
            by_call_id: HashMap::new(),
            next_dialog: 1,
            keys: HashMap::new(),
            legs: LegIndex::new(legs),
        }
    }
}

impl Default for SipHandler {
    fn default() -> Self {
        // Dialog numbers count up from 1; orphan media owners count down from the top.
        SipHandler::new(LegOptions::default())
    }
}

impl Handler for SipHandler {
    type FlowState = ();
    type Key = Owner;
    const PROTOCOL: AppProtocol = AppProtocol::Sip;

    fn probe(&self, payload: &[u8]) -> bool {
        sip::looks_like_sip(payload)
    }

    fn probe_stream(&self, first: &[u8]) -> Option<StreamFraming> {
        websocket::starts_sip_websocket(first).then_some(StreamFraming::WebSocket)
    }

    fn framer(&self) -> Option<fn(&[u8]) -> Framing> {
        Some(sip::frame_message)
    }

    fn on_payload(
        &mut self,
        _protocol: AppProtocol,
        ctx: &PacketCtx<'_>,
        _state: &mut (),
        bytes: &[u8],
        services: &mut Services,
    ) -> Handled {
        let meta = MsgMeta {
            ts: ctx.ts,
            frame: ctx.frame,
            src: ctx.src,
            dst: ctx.dst,
            transport: ctx.transport,
            context: ctx.context,
            tunnel: ctx.tunnel.copied(),
        };
        let msg = match SipMessage::parse(bytes) {
            Ok(msg) => msg,
            Err(_) => return Handled::Malformed,
        };
        // A message without a Call-ID breaks RFC 3261 but is still a SIP message that tshark
        // counts and a user wants to see: such messages share one session with an empty
        // Call-ID, flagged as an anomaly, and are counted as malformed.
        let call_id = msg.call_id().unwrap_or("");
        if call_id.is_empty() {
            services.stats.malformed += 1;
        }
        let id = self.session_for(&msg, call_id, &meta);
        self.keys.entry(id).or_default().on_message(&msg, (meta.src.ip(), meta.dst.ip()), meta.tunnel.as_ref());
        let mut summary = None;
        let mut sdp_errors = Vec::new();
        if let Some(body) = sip::sdp_body(&msg) {
            if let Ok(sdp) = Sdp::parse(body) {
                summary = Some(MediaSummary::of(&sdp));
                services.media.register_sdp(id, &sdp, meta.context);
                sdp_errors = sdp.attribute_errors;
            }
        }
        let has_sdp = summary.is_some();
        if let Some(dialog) = self.dialogs.get_mut(&id) {
            if dialog.kind == SessionKind::SipCall
                && self.legs.enabled()
                && dialog.legs.collect(&msg, meta.ts, meta.src, self.legs.header_names())
            {
                self.legs.update(id, || dialog.session_id(), &dialog.names(), &dialog.legs);
            }
            let fresh = dialog.on_message(&msg, &meta, has_sdp);
            if let Some(summary) = summary.flatten().filter(|_| fresh) {
                dialog.on_sdp(summary, &meta);
            }
            if call_id.is_empty() {
                dialog.note(format!("message in frame {} has no Call-ID header", meta.frame));
            }
            // A malformed a=crypto line loses the keys of the call's SRTCP: said, not skipped.
            for e in sdp_errors {
                dialog.note(format!("SDP in frame {}: {e}", meta.frame));
            }
        }
        Handled::Counted(AppProtocol::Sip)
    }

    /// A dialog is over when it ended and both it and its media have been quiet for the
    /// linger time, or when it has been quiet for the idle time whatever its state.
    fn over(&self, now: Timestamp, services: &Services) -> Vec<Owner> {
        let lifetimes = services.lifetimes;
        by_first_frame(
            self.dialogs
                .iter()
                .filter(|(id, d)| {
                    let last = services.media.last_activity(**id).map_or(d.last_activity, |m| m.max(d.last_activity));
                    let quiet = now.nanos_since(last);
                    (d.is_terminated() && quiet > lifetimes.linger) || quiet > lifetimes.idle
                })
                .map(|(id, d)| (d.first_frame, *id)),
        )
    }

    fn open(&self, _services: &Services) -> Vec<Owner> {
        by_first_frame(self.dialogs.iter().map(|(id, d)| (d.first_frame, *id)))
    }

    /// The dialog as a session, with the media its SDP announced and its links to the
    /// other legs of its call (those still open get the link back when they close).
    fn close(&mut self, id: Owner, services: &mut Services) -> Option<Session> {
        let dialog = self.dialogs.remove(&id)?;
        if let Some(sessions) = self.by_call_id.get_mut(&dialog.call_id) {
            for slot in [&mut sessions.call, &mut sessions.other] {
                if *slot == Some(id) {
                    *slot = None;
                }
            }
            if sessions.call.is_none() && sessions.other.is_none() {
                self.by_call_id.remove(&dialog.call_id);
            }
        }
        let media_tunnel = services.media.tunnel(id);
        let media = services.media.take(id);
        let early_until = dialog.early_media_until();
        let mut session = dialog.into_session();
        session.early_media = early_until.is_some_and(|until| media.iter().any(|m| m.packets > 0 && m.start < until));
        session.dtmf.extend(media.iter().flat_map(|m| {
            // RFC 4733 durations are in timestamp units of the event's clock: 8 kHz for
            // the telephone-event rate nearly every SDP gives.
            m.events.iter().map(|e| DtmfDigit {
                ts: e.ts,
                digit: e.digit.clone(),
                source: DtmfSource::Rfc4733,
                duration_ms: Some(f64::from(e.duration) / 8.0),
            })
        }));
        session.dtmf.sort_by_key(|d| d.ts);
        if let Some(end) = media.iter().map(|m| m.end).max() {
            session.end = session.end.max(end);
        }
        session.media = media;
        session.subscriber_keys = self.keys.remove(&id).map(SipKeys::into_keys).unwrap_or_default();
        // The media's bearer (a dedicated one, in VoLTE) is another TEID of the subscriber's,
        // and what links the call to the bearer its RTP went through.
        if let Some(teid) = media_tunnel.filter(|t| t.kind == TunnelKind::GtpU).and_then(|t| t.teid) {
            let key = SubscriberKey { kind: SubscriberKeyKind::Teid, value: format!("0x{teid:08x}") };
            if !session.subscriber_keys.contains(&key) {
                session.subscriber_keys.push(key);
            }
        }
        for link in self.legs.close(id) {
            let relation = if legs::is_transfer(&link.key) { Relation::Transfer } else { Relation::Leg };
            if let Some(other) = self.dialogs.get_mut(&link.number) {
                other.link(Related { session: session.id.clone(), relation, key: link.key.clone() });
            }
            session.related.push(Related { session: link.session_id, relation, key: link.key });
        }
        Some(session)
    }
}
