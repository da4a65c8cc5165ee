//! The RTP/RTCP handler: media to endpoints an SDP announced (charged to the announcing session), and media nobody announced (orphan sessions, one per address pair).
//!
//! The streams live in the [`MediaTable`](crate::media::MediaTable) of the
//! [`Services`], since signalling handlers announce endpoints into it and take their
//! sessions' streams out of it when they close; this handler routes packets there and
//! closes the orphan sessions.

use crate::ctx::PacketCtx;
use crate::front::UdpHints;
use crate::handler::{Handled, Handler, Services};
use crate::media::{Datagram, MediaKind, MediaMemo, Owner};
use callflow_classify::AppProtocol;
use callflow_decode::{rtcp, rtp, Timestamp};
use callflow_model::Session;

/// Routes RTP and RTCP into the media table, and closes orphan media sessions.
#[derive(Debug, Default)]
pub(crate) struct MediaHandler;

impl MediaHandler {
    /// A datagram to or from an endpoint an SDP announced: `None` when none did (the
    /// classifier is asked next), else what it was. This is the path of every announced
    /// RTP packet: `state`, kept by the flow, usually spares every hash lookup.
    pub fn on_announced(
        &mut self,
        ctx: &PacketCtx<'_>,
        state: &mut MediaMemo,
        hints: &UdpHints,
        payload: &[u8],
        services: &mut Services,
    ) -> Option<Handled> {
        let media = services.media.on_announced(state, &datagram(ctx, hints, payload))?;
        Some(match media {
            Ok((MediaKind::Rtp, _)) => Handled::Counted(AppProtocol::Rtp),
            Ok((MediaKind::Rtcp, _)) => Handled::Counted(AppProtocol::Rtcp),
            // Media that is not RTP (T.38), and ICE/STUN keep-alives and the like that share
            // media ports: not RTP, not broken.
            Ok((MediaKind::Other, _)) | Err(_) => Handled::NotOurs,
        })
    }
}

/// The media table's view of a datagram.
fn datagram<'a>(ctx: &PacketCtx<'a>, hints: &'a UdpHints, payload: &'a [u8]) -> Datagram<'a> {
    Datagram {
        src: ctx.src,
        dst: ctx.dst,
        context: ctx.context,
        tunnel: ctx.tunnel,
        payload,
        hints,
        ts: ctx.ts,
        frame: ctx.frame,
        wire_len: ctx.wire_len,
    }
}

impl Handler for MediaHandler {
    type FlowState = MediaMemo;
    type Key = Owner;
    const PROTOCOL: AppProtocol = AppProtocol::Rtp;

    fn probe(&self, payload: &[u8]) -> bool {
        rtcp::looks_like_rtcp(payload) || rtp::RtpPacket::parse(payload).is_ok()
    }

    /// RTP or RTCP that no SDP announced, already judged plausible by the classifier.
    fn on_payload(
        &mut self,
        protocol: AppProtocol,
        ctx: &PacketCtx<'_>,
        state: &mut MediaMemo,
        bytes: &[u8],
        services: &mut Services,
    ) -> Handled {
        let computed;
        let hints = match ctx.udp {
            Some(hints) => hints,
            None => {
                computed = UdpHints::of(bytes);
                &computed
            }
        };
        let kind = if protocol == AppProtocol::Rtcp { MediaKind::Rtcp } else { MediaKind::Rtp };
        match services.media.on_orphan(state, kind, &datagram(ctx, hints, bytes)) {
            Ok(_) => Handled::Counted(protocol),
            Err(_) => Handled::NotOurs,
        }
    }

    /// Orphan media is over when idle for the idle time.
    fn over(&self, now: Timestamp, services: &Services) -> Vec<Owner> {
        services.media.idle_orphans(Timestamp::from_nanos(now.as_nanos().saturating_sub(services.lifetimes.idle)))
    }

    fn open(&self, services: &Services) -> Vec<Owner> {
        services.media.all_orphans()
    }

    /// The orphan media of one address pair as a session; what turned out not to be RTP
    /// moves to plain UDP in the statistics.
    fn close(&mut self, owner: Owner, services: &mut Services) -> Option<Session> {
        let (session, rejected) = services.media.take_orphan_session(owner);
        services.stats.reclassify_rtp_as_udp(rejected);
        session
    }
}
