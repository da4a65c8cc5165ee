//! The SIP handler: SIP messages grouped into dialogs by Call-ID, the SDP they carry announced to the media table, and the dialogs closed once over.

use crate::ctx::PacketCtx;
use crate::dialog::{Dialog, MsgMeta};
use crate::handler::{Handled, Handler, Services, StreamFraming};
use crate::media::Owner;
use crate::websocket;
use callflow_classify::AppProtocol;
use callflow_decode::sdp::Sdp;
use callflow_decode::sip::{self, SipMessage};
use callflow_decode::tcp::Framing;
use callflow_decode::Timestamp;
use callflow_model::Session;
use std::collections::HashMap;

/// The open SIP dialogs, by owner number and by Call-ID.
#[derive(Debug)]
pub(crate) struct SipHandler {
    dialogs: HashMap<Owner, Dialog>,
    by_call_id: HashMap<String, Owner>,
    next_dialog: Owner,
}

impl Default for SipHandler {
    fn default() -> Self {
        // Dialog numbers count up from 1; orphan media owners count down from the top.
        SipHandler { dialogs: HashMap::new(), by_call_id: HashMap::new(), next_dialog: 1 }
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
        let id = match self.by_call_id.get(call_id) {
            Some(&id) => id,
            None => {
                let id = self.next_dialog;
                self.next_dialog += 1;
                self.by_call_id.insert(call_id.to_string(), id);
                self.dialogs.insert(id, Dialog::new(&msg, call_id, &meta));
                id
            }
        };
        let mut has_sdp = false;
        if let Some(body) = sip::sdp_body(&msg) {
            if let Ok(sdp) = Sdp::parse(body) {
                has_sdp = true;
                services.media.register_sdp(id, &sdp, meta.context);
            }
        }
        if let Some(dialog) = self.dialogs.get_mut(&id) {
            dialog.on_message(&msg, &meta, has_sdp);
            if call_id.is_empty() {
                dialog.note(format!("message in frame {} has no Call-ID header", meta.frame));
            }
        }
        Handled::Counted(AppProtocol::Sip)
    }

    /// A dialog is over when it ended and both it and its media have been quiet for the
    /// linger time, or when it has been quiet for the idle time whatever its state.
    fn over(&self, now: Timestamp, services: &Services) -> Vec<Owner> {
        let lifetimes = services.lifetimes;
        let mut done: Vec<(u64, Owner)> = self
            .dialogs
            .iter()
            .filter(|(id, d)| {
                let last = services.media.last_activity(**id).map_or(d.last_activity, |m| m.max(d.last_activity));
                let quiet = now.as_nanos() - last.as_nanos();
                (d.is_terminated() && quiet > lifetimes.linger) || quiet > lifetimes.idle
            })
            .map(|(id, d)| (d.first_frame, *id))
            .collect();
        done.sort_unstable();
        done.into_iter().map(|(_, id)| id).collect()
    }

    fn open(&self, _services: &Services) -> Vec<Owner> {
        let mut open: Vec<(u64, Owner)> = self.dialogs.iter().map(|(id, d)| (d.first_frame, *id)).collect();
        open.sort_unstable();
        open.into_iter().map(|(_, id)| id).collect()
    }

    /// The dialog as a session, with the media its SDP announced.
    fn close(&mut self, id: Owner, services: &mut Services) -> Option<Session> {
        let dialog = self.dialogs.remove(&id)?;
        if self.by_call_id.get(&dialog.call_id) == Some(&id) {
            self.by_call_id.remove(&dialog.call_id);
        }
        let media = services.media.take(id);
        let mut session = dialog.into_session();
        if let Some(end) = media.iter().map(|m| m.end).max() {
            session.end = session.end.max(end);
        }
        session.media = media;
        Some(session)
    }
}
