//! RTP and RTCP: the registry of SDP-announced endpoints, per-stream statistics, DTMF and RTCP reports.
//!
//! Encrypted media: an endpoint an SDP announced as SRTP (`MediaDescription::srtp_keying`)
//! has its RTP measured from the clear headers like RTP's, its payload bytes counted
//! without the MKI and tag of the suite the answer accepted (DTLS-SRTP: the suite its
//! DTLS 1.2 ServerHello chose on the media port; 80 bits, said to be assumed, when neither
//! says), and its RTCP taken as SRTCP. The SDES
//! keys of every SDP of the call (RFC 4568: each is what its SDP's sender encrypts with)
//! decrypt that SRTCP, the sender's own first; what authenticates is read as RTCP, what
//! does not is counted per SSRC and never read.

use crate::capture_loss::CaptureLossDetector;
use crate::ctx::tunnel_out;
use crate::front::{RtpHead, UdpHints};
use crate::ids::session_id;
use crate::quality::{QualityOptions, QualityTracker, Tuning};
use crate::slots::{SlotRef, Slots};
use callflow_decode::dtmf::TelephoneEvent;
use callflow_decode::packet::Tunnel;
use callflow_decode::rtcp::{self, RtcpPacket};
use callflow_decode::rtp::{self, RtpPacket, StreamStats};
use callflow_decode::sdp::{self, MediaDescription, Sdp};
use callflow_decode::srtp::{self, SrtcpContext, SrtpError, SrtpSuite, ASSUMED_SRTP_TAG_LEN};
use callflow_decode::DecodeError;
use callflow_model::{
    DtmfEvent, MediaStream, ReportBlock, RtcpReport, RtcpReportKind, RtcpSummary, SenderInfo, Session, SessionKind,
    SrtcpCounts, SrtpKeying, SrtpStream, Timestamp, XrVoipMetrics,
};
use foldhash::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Who a stream belongs to: a dialog's number (counting up from 1), or for media that no
/// SDP announced, a number counting down from `u64::MAX`, one per address pair.
pub(crate) type Owner = u64;

/// Most RTCP reports kept per session: one every 5 s for 14 hours, per direction.
const MAX_RTCP_REPORTS: usize = 20_000;

/// Most SSRCs whose RTCP-XR VoIP metrics an owner keeps.
const MAX_XR_SOURCES: usize = 64;

/// Most SDES keys kept per owner (an offer lists a few; re-INVITEs repeat or renew them):
/// past it the oldest are forgotten.
const MAX_SDES_KEYS: usize = 16;

/// Most DTMF events kept per stream.
const MAX_EVENTS: usize = 10_000;

/// A payload type an SDP mapped to a codec.
#[derive(Clone, Debug)]
struct Codec {
    payload_type: u8,
    name: String,
    clock_rate: u32,
}

/// What an SDP said about one endpoint.
#[derive(Clone, Debug)]
struct Binding {
    owner: Owner,
    rtcp: bool,
    /// The endpoint carries media other than RTP (e.g. `udptl` for T.38).
    other: bool,
    /// The media is SRTP (a secure profile, `a=crypto` lines, or a DTLS-SRTP fingerprint:
    /// `MediaDescription::srtp_keying`): its RTCP is SRTCP, whose reports are ciphertext
    /// past their first 8 bytes.
    secure: bool,
    codecs: Arc<[Codec]>,
}

impl Binding {
    fn codec(&self, pt: u8) -> Option<&Codec> {
        self.codecs.iter().find(|c| c.payload_type == pt)
    }
}

/// What an owner's SDPs said about its SRTP.
#[derive(Debug)]
struct OwnerSrtp {
    keying: SrtpKeying,
    /// The suite agreed: that of the latest section with a single `a=crypto` line (an
    /// answer accepts one of the offered lines), else the first line of the latest offer.
    suite: Option<SrtpSuite>,
    /// The agreed suite came from a single line.
    settled: bool,
    /// The MKI length of the agreed line's first key.
    mki_len: u8,
    /// Every SDES key the owner's SDPs gave, newest last, to decrypt SRTCP with.
    keys: Vec<SdesKey>,
}

/// An SDES master key an SDP gave, ready to decrypt SRTCP.
#[derive(Debug)]
struct SdesKey {
    /// The connection address of the SDP that gave it: RFC 4568's keys are the ones their
    /// SDP's sender sends with, so that side's packets try it first.
    sender: IpAddr,
    /// The suite and key||salt, to know the key again when an SDP repeats it.
    suite: SrtpSuite,
    key_salt: sdp::KeySalt,
    ctx: SrtcpContext,
}

/// What became of an SRTCP packet.
enum Srtcp {
    /// It authenticated with a key and is decrypted in the table's buffer.
    Decrypted,
    AuthFailed,
    Truncated,
    NoKey,
}

impl OwnerSrtp {
    /// What the owner's SRTP streams are said to be, and the bytes each packet carries
    /// after its payload (MKI and tag).
    fn output(&self) -> (SrtpStream, u64) {
        let known = self.suite.and_then(SrtpSuite::srtp_tag_len);
        let tag_len = known.unwrap_or(ASSUMED_SRTP_TAG_LEN);
        let stream = SrtpStream {
            keying: self.keying,
            suite: self.suite.filter(|s| *s != SrtpSuite::Unknown).map(|s| s.name().to_string()),
            tag_len: u8::try_from(tag_len).unwrap_or(u8::MAX),
            mki_len: self.mki_len,
            tag_assumed: known.is_none(),
            srtcp: None,
        };
        (stream, (tag_len + usize::from(self.mki_len)) as u64)
    }
}

/// Identifies one RTP stream of one owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct StreamKey {
    owner: Owner,
    src: SocketAddr,
    dst: SocketAddr,
    ssrc: u32,
}

/// One RTP stream being collected. The fields every packet touches come first, in this
/// order (`repr(C)`), so that a packet's update reads as few cache lines as possible: with
/// thousands of streams each packet's stream is a cache miss, and each further line it
/// touches may be another (measured: the fields at the end of the struct cost as much as
/// the statistics themselves).
#[derive(Debug)]
#[repr(C)]
struct Stream {
    stats: StreamStats,
    /// Jitter-buffer lateness, loss pattern and timeline, for the quality estimate.
    quality: QualityTracker,
    /// The latest capture time of a packet of the stream, for the owner's last activity.
    last_ts: Timestamp,
    /// Frame bytes, so statistics can move a stream that turned out not to be RTP.
    wire_bytes: u64,
    /// RTP payload bytes after the header, without padding; for SRTP with the MKI and the
    /// tag, which are taken off per packet when the stream is handed out (by then the
    /// answer has said which suite the call uses).
    payload_bytes: u64,
    /// The stream's endpoint was announced as SRTP.
    secure: bool,
    clock_rate: Option<u32>,
    payload_type: u8,
    /// A gap of this stream was part of a capture-loss cluster.
    capture_loss: bool,
    /// The first audio payload type (comfort noise and events aside), and when another
    /// one first replaced it.
    audio_pt: Option<u8>,
    payload_change: Option<Timestamp>,
    codec: String,
    events: Vec<DtmfEvent>,
    /// RTP timestamp of the telephone event being reported, so each event is listed once.
    current_event: Option<u32>,
    first_frame: u64,
}

/// Media of an owner that is still being collected.
#[derive(Debug, Default)]
struct OwnerMedia {
    streams: Vec<StreamKey>,
    rtcp: Vec<RtcpReport>,
    /// Last activity other than RTP (RTCP, other media); RTP's is kept per stream so that an
    /// RTP packet does not look its owner up.
    last_activity: Timestamp,
    first_frame: u64,
    /// The tunnel of the first packet.
    tunnel: Option<Tunnel>,
    /// The SRTCP each SSRC sent, counted (at most [`MAX_XR_SOURCES`] SSRCs).
    srtcp: Vec<(u32, SrtcpCounts)>,
    /// The latest RTCP-XR VoIP metrics block about each SSRC (at most [`MAX_XR_SOURCES`]).
    xr: Vec<(u32, XrVoipMetrics)>,
}

/// What one direction of a flow found in the [`MediaTable`] last time: the endpoints it
/// resolved to, the stream its packets went to and what its payload type means. Checking
/// that it still holds reads two small arrays of versions; finding it again costs up to
/// three hash lookups and the reads of a binding and its codecs, on every RTP packet.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MediaMemo {
    resolved: Option<Resolved>,
    stream: Option<StreamMemo>,
    /// What the stream's latest payload type means under the resolved binding; cleared
    /// whenever `resolved` or `stream` changes.
    codec: Option<CodecMemo>,
}

/// How the endpoints of a direction resolved, and as of which insertion into the table.
#[derive(Clone, Copy, Debug)]
struct Resolved {
    dst: Option<SlotRef>,
    src: Option<SlotRef>,
    /// [`MediaTable::inserted`] then: an endpoint absent then may have been announced since.
    inserted: u64,
    /// The binding found (the destination's, else the source's).
    bound: Option<Bound>,
}

/// The stream a direction's packets went to.
#[derive(Clone, Copy, Debug)]
struct StreamMemo {
    owner: Owner,
    ssrc: u32,
    slot: SlotRef,
}

/// How a payload type is measured (see `MediaTable::on_rtp`).
#[derive(Clone, Copy, Debug)]
struct CodecMemo {
    payload_type: u8,
    is_event: bool,
    clock: Option<u32>,
}

/// A UDP datagram as the media table sees it: who sent it to whom (in which tunnel), its
/// payload with what the front stage found in it, when, in which frame, and the frame's
/// bytes on the wire.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Datagram<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The tunnel's number (0 for none): endpoints are announced and looked up within it.
    pub context: u32,
    pub tunnel: Option<&'a Tunnel>,
    pub payload: &'a [u8],
    pub hints: &'a UdpHints,
    pub ts: Timestamp,
    pub frame: u64,
    pub wire_len: u64,
}

/// What the analysis needs of an endpoint's binding while it updates the table.
#[derive(Clone, Copy, Debug)]
struct Bound {
    slot: u32,
    owner: Owner,
    rtcp: bool,
    other: bool,
    secure: bool,
}

/// Why a datagram to or from a media endpoint is not RTP or RTCP after all (its header or
/// a report did not parse): a STUN keep-alive, say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NotMedia;

/// What a UDP datagram turned out to be, for statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MediaKind {
    Rtp,
    Rtcp,
    /// Media an SDP announced that is not RTP (T.38 over UDPTL, ...).
    Other,
}

/// Tracks every RTP/RTCP stream and the endpoints SDP announced.
#[derive(Debug)]
pub(crate) struct MediaTable {
    /// Announced endpoints (in their tunnel), each with its slot in `bindings`.
    endpoints: HashMap<(u32, SocketAddr), u32>,
    /// What each announced endpoint is bound to; a binding's version tells a [`MediaMemo`]
    /// that what it remembers is stale.
    bindings: Slots<Binding>,
    /// How many times an endpoint was added to `endpoints` (not rebound).
    inserted: u64,
    /// Streams, each with its slot in `stream_slots`.
    streams: HashMap<StreamKey, u32>,
    stream_slots: Slots<Stream>,
    owners: HashMap<Owner, OwnerMedia>,
    /// How quality is estimated.
    quality: QualityOptions,
    /// The options' per-packet figures, worked out once.
    tuning: Tuning,
    /// Sequence gaps shared by unrelated streams: the capture's losses.
    capture_loss: CaptureLossDetector,
    /// Orphan media grouped by its tunnel and (ordered) address pair: one session per pair.
    orphan_pairs: HashMap<(u32, SocketAddr, SocketAddr), Owner>,
    next_orphan: u64,
    /// What each owner's SDPs said about SRTP, for the owners with SRTP media.
    srtp: HashMap<Owner, OwnerSrtp>,
    /// Where SRTCP is decrypted, kept between packets.
    srtcp_buf: Vec<u8>,
}

impl MediaTable {
    /// An empty table estimating quality as `quality` says.
    pub fn with_quality(quality: QualityOptions) -> Self {
        let window = i64::try_from(quality.capture_loss_window.as_nanos()).unwrap_or(i64::MAX);
        MediaTable {
            endpoints: HashMap::default(),
            bindings: Slots::default(),
            inserted: 0,
            streams: HashMap::default(),
            stream_slots: Slots::default(),
            owners: HashMap::default(),
            capture_loss: CaptureLossDetector::new(quality.capture_loss_streams, window),
            tuning: Tuning::of(&quality),
            quality,
            orphan_pairs: HashMap::default(),
            next_orphan: 0,
            srtp: HashMap::default(),
            srtcp_buf: Vec::new(),
        }
    }

    /// The capture's own losses found so far: clusters and the packets missing in them.
    pub fn capture_loss(&self) -> (u64, u64) {
        (self.capture_loss.events, self.capture_loss.packets)
    }

    /// Registers the endpoints an SDP body announces as `owner`'s media, in tunnel number
    /// `context` (0 for none), where the SDP came from.
    pub fn register_sdp(&mut self, owner: Owner, sdp: &Sdp<'_>, context: u32) -> usize {
        let mut registered = 0;
        for media in &sdp.media {
            if media.port == 0 {
                continue;
            }
            let Some(ip) = media.connection.as_ref().or(sdp.connection.as_ref()).and_then(|c| c.ip) else {
                continue;
            };
            if !media.proto.to_ascii_uppercase().contains("RTP") {
                // Media that is not RTP (T.38 over UDPTL after a fax re-INVITE, say) takes the
                // endpoint over: what arrives there from now on is not RTP, as Wireshark decides.
                let binding = Binding { owner, rtcp: false, other: true, secure: false, codecs: Arc::from([]) };
                self.bind((context, SocketAddr::new(ip, media.port)), binding);
                continue;
            }
            let mut codecs: Vec<Codec> = media
                .rtpmaps
                .iter()
                .map(|m| Codec { payload_type: m.payload_type, name: m.encoding.to_string(), clock_rate: m.clock_rate })
                .collect();
            for fmt in media.formats.iter() {
                if let Ok(pt) = fmt.parse::<u8>() {
                    if !codecs.iter().any(|c| c.payload_type == pt) {
                        if let (Some(name), Some(rate)) = (rtp::static_payload_name(pt), rtp::static_clock_rate(pt)) {
                            codecs.push(Codec { payload_type: pt, name: name.to_string(), clock_rate: rate });
                        }
                    }
                }
            }
            let codecs: Arc<[Codec]> = codecs.into();
            // SRTP by its profile, SDES keys (even under RTP/AVP) or a DTLS-SRTP fingerprint.
            let keying = media.srtp_keying(sdp);
            let secure = keying.is_some();
            if let Some(keying) = keying {
                self.note_srtp(owner, keying, media, ip);
            }
            self.bind(
                (context, SocketAddr::new(ip, media.port)),
                Binding { owner, rtcp: false, other: false, secure, codecs: codecs.clone() },
            );
            registered += 1;
            if !media.rtcp_mux {
                let rtcp_port = media.rtcp_port.unwrap_or(media.port.wrapping_add(1));
                self.bind(
                    (context, SocketAddr::new(ip, rtcp_port)),
                    Binding { owner, rtcp: true, other: false, secure, codecs },
                );
            }
        }
        registered
    }

    /// Records what SRTP section `media` of an SDP of `owner`'s says.
    fn note_srtp(&mut self, owner: Owner, keying: sdp::SrtpKeying, media: &MediaDescription<'_>, sender: IpAddr) {
        let keying = match keying {
            sdp::SrtpKeying::Sdes => SrtpKeying::Sdes,
            sdp::SrtpKeying::Dtls => SrtpKeying::Dtls,
            sdp::SrtpKeying::Other => SrtpKeying::Other,
        };
        let srtp = self.srtp.entry(owner).or_insert(OwnerSrtp {
            keying,
            suite: None,
            settled: false,
            mki_len: 0,
            keys: Vec::new(),
        });
        srtp.keying = keying;
        let single = media.crypto.len() == 1;
        if let Some(line) = media.crypto.first().filter(|_| single || !srtp.settled) {
            srtp.suite = Some(line.suite);
            srtp.settled = single;
            srtp.mki_len = line.keys.first().and_then(|k| k.mki).map_or(0, |m| m.len);
        }
        for line in &media.crypto {
            for key in &line.keys {
                if srtp.keys.iter().any(|k| k.suite == line.suite && k.key_salt == key.key_salt && k.sender == sender) {
                    continue;
                }
                let mki = key.mki.map(|m| (m.value, usize::from(m.len)));
                // A suite not decrypted gives no context: its SRTCP counts as without a key.
                let Ok(ctx) = SrtcpContext::new(line.suite, key.key_salt.as_bytes(), mki, line.kdr()) else {
                    continue;
                };
                if srtp.keys.len() >= MAX_SDES_KEYS {
                    srtp.keys.remove(0);
                }
                srtp.keys.push(SdesKey { sender, suite: line.suite, key_salt: key.key_salt.clone(), ctx });
            }
        }
    }

    /// Binds `addr` to `binding`, replacing what it was bound to.
    fn bind(&mut self, addr: (u32, SocketAddr), binding: Binding) {
        if let Some(&i) = self.endpoints.get(&addr) {
            self.bindings.replace(i, binding);
            return;
        }
        let i = self.bindings.insert(binding);
        self.endpoints.insert(addr, i);
        self.inserted += 1;
    }

    /// Unbinds every endpoint bound to `owner`, and returns the RTP endpoints among them.
    fn unbind(&mut self, owner: Owner) -> Vec<SocketAddr> {
        let bindings = &mut self.bindings;
        let mut rtp = Vec::new();
        self.endpoints.retain(|&(_, addr), &mut i| {
            match bindings.get(i) {
                Some(b) if b.owner != owner => return true,
                Some(b) if !b.rtcp && !b.other => rtp.push(addr),
                _ => {}
            }
            bindings.remove(i);
            false
        });
        rtp
    }

    /// Which announced endpoints a datagram from `src` to `dst` is bound by: the
    /// destination's binding, else the source's.
    fn resolve(&self, context: u32, src: SocketAddr, dst: SocketAddr) -> Resolved {
        let at = |addr| self.endpoints.get(&(context, addr)).and_then(|&index| self.bindings.current(index));
        let dst = at(dst);
        let src = if dst.is_none() { at(src) } else { None };
        let bound = dst.or(src).and_then(|slot| {
            let b = self.bindings.get(slot.index)?;
            Some(Bound { slot: slot.index, owner: b.owner, rtcp: b.rtcp, other: b.other, secure: b.secure })
        });
        Resolved { dst, src, inserted: self.inserted, bound }
    }

    /// Whether [`MediaTable::resolve`] would still answer `r`.
    fn still_holds(&self, r: &Resolved) -> bool {
        let current = |s: SlotRef| self.bindings.holds(s);
        match r.dst {
            Some(dst) => current(dst),
            None => r.inserted == self.inserted && r.src.is_none_or(current),
        }
    }

    /// Handles a datagram to or from an announced endpoint: `None` when SDP announced
    /// neither endpoint, else what it was, or the decode error that made it neither RTP
    /// nor RTCP, and the owner it was charged to. This runs for every RTP packet: `memo`
    /// (the direction's, kept by the flow) usually spares every hash lookup.
    pub fn on_announced(
        &mut self,
        memo: &mut MediaMemo,
        d: &Datagram<'_>,
    ) -> Option<Result<(MediaKind, Owner), NotMedia>> {
        let resolved = match memo.resolved {
            Some(r) if self.still_holds(&r) => r,
            _ => {
                let r = self.resolve(d.context, d.src, d.dst);
                memo.resolved = Some(r);
                memo.codec = None;
                r
            }
        };
        Some(self.on_binding(resolved.bound?, memo, d))
    }

    fn on_binding(
        &mut self,
        Bound { slot, owner, rtcp, other, secure }: Bound,
        memo: &mut MediaMemo,
        d: &Datagram<'_>,
    ) -> Result<(MediaKind, Owner), NotMedia> {
        if other {
            if let Some(media) = self.owners.get_mut(&owner) {
                media.last_activity = media.last_activity.max(d.ts);
            }
            return Ok((MediaKind::Other, owner));
        }
        // DTLS on an SRTP endpoint (first byte 20-63, RFC 7983; RTP's is 128-191) is the
        // DTLS-SRTP handshake, whose ServerHello names the suite: not media.
        if secure && matches!(d.payload.first(), Some(20..=63)) {
            if let Some(suite) = srtp::dtls_srtp_profile(d.payload) {
                if let Some(srtp) = self.srtp.get_mut(&owner) {
                    (srtp.suite, srtp.settled, srtp.mki_len) = (Some(suite), true, 0);
                }
            }
            return Err(NotMedia);
        }
        // With rtcp-mux, or a sender that ignores the announced RTCP port, RTCP shares the
        // RTP port: its packet types 200-207 tell it apart.
        if rtcp || d.hints.rtcp_like {
            if secure {
                self.on_srtcp(owner, d)?;
            } else {
                self.on_rtcp(owner, d)?;
            }
            return Ok((MediaKind::Rtcp, owner));
        }
        self.on_rtp(owner, Some(slot), memo, d)?;
        Ok((MediaKind::Rtp, owner))
    }

    /// Handles RTP or RTCP that no SDP announced (already judged plausible by the classifier).
    pub fn on_orphan(&mut self, memo: &mut MediaMemo, kind: MediaKind, d: &Datagram<'_>) -> Result<Owner, NotMedia> {
        let in_tunnel = |(a, b): (SocketAddr, SocketAddr)| (d.context, a, b);
        let pair = in_tunnel(ordered_pair(d.src, d.dst));
        // RTCP between two odd ports belongs with the RTP one port below (RFC 3550 section
        // 11), whichever of the two shows up first.
        let rtp_pair = match kind {
            MediaKind::Rtcp => rtp_pair_of(d.src, d.dst).map(in_tunnel),
            _ => None,
        };
        let beside = rtp_pair.is_some() && !self.orphan_pairs.contains_key(&pair);
        let known = self.orphan_pairs.get(&pair).or_else(|| rtp_pair.and_then(|p| self.orphan_pairs.get(&p)));
        let owner = match known {
            Some(&o) => o,
            None => {
                // Orphan owners count down from the top so they never meet a dialog number.
                self.next_orphan += 1;
                let o = u64::MAX - self.next_orphan;
                self.orphan_pairs.insert(rtp_pair.unwrap_or(pair), o);
                o
            }
        };
        match kind {
            MediaKind::Rtcp => {
                let reported = self.on_rtcp(owner, d);
                if beside {
                    // The session is named after its first RTP packet, as when the RTCP
                    // came after it.
                    if let Some(media) = self.owners.get_mut(&owner).filter(|m| m.streams.is_empty()) {
                        media.first_frame = u64::MAX;
                    }
                }
                reported?;
            }
            MediaKind::Rtp => self.on_rtp(owner, None, memo, d)?,
            // The classifier never calls unannounced traffic "other media".
            MediaKind::Other => {}
        }
        Ok(owner)
    }

    /// The slot of stream `key`, created (with its codec from `binding`) on its first packet.
    fn stream_slot(&mut self, key: StreamKey, binding: Option<u32>, pt: u8, d: &Datagram<'_>) -> u32 {
        let frame = d.frame;
        if let Some(&i) = self.streams.get(&key) {
            return i;
        }
        let binding = binding.and_then(|b| self.bindings.get(b));
        let (codec, clock_rate) = match binding.and_then(|b| b.codec(pt)) {
            Some(c) => (c.name.clone(), Some(c.clock_rate)),
            None => (
                rtp::static_payload_name(pt).map_or_else(|| format!("PT{pt}"), str::to_string),
                rtp::static_clock_rate(pt),
            ),
        };
        let media = self.owners.entry(key.owner).or_insert_with(|| OwnerMedia {
            first_frame: frame,
            tunnel: d.tunnel.copied(),
            ..Default::default()
        });
        media.first_frame = media.first_frame.min(frame);
        media.streams.push(key);
        let stream = Stream {
            stats: StreamStats::default(),
            payload_type: pt,
            codec,
            clock_rate,
            events: Vec::new(),
            current_event: None,
            first_frame: frame,
            wire_bytes: 0,
            payload_bytes: 0,
            secure: binding.is_some_and(|b| b.secure),
            last_ts: Timestamp::default(),
            quality: QualityTracker::default(),
            capture_loss: false,
            audio_pt: None,
            payload_change: None,
        };
        let i = self.stream_slots.insert(stream);
        self.streams.insert(key, i);
        i
    }

    /// Removes stream `key`, freeing its slot.
    fn remove_stream(&mut self, key: &StreamKey) -> Option<Stream> {
        let i = self.streams.remove(key)?;
        self.stream_slots.remove(i)
    }

    /// Counts an RTP packet in its stream; `NotMedia` when its header did not parse.
    fn on_rtp(
        &mut self,
        owner: Owner,
        binding: Option<u32>,
        memo: &mut MediaMemo,
        d: &Datagram<'_>,
    ) -> Result<(), NotMedia> {
        let packet: &RtpHead = d.hints.rtp.as_ref().ok_or(NotMedia)?;
        // Padding that does not add up is no RTP, unless SRTP encrypted it.
        if !packet.padding_ok && !binding.and_then(|b| self.bindings.get(b)).is_some_and(|b| b.secure) {
            return Err(NotMedia);
        }
        let ts = d.ts;
        let pt = packet.payload_type;
        let remembered =
            memo.stream.filter(|m| m.owner == owner && m.ssrc == packet.ssrc && self.stream_slots.holds(m.slot));
        let index = match remembered {
            Some(m) => m.slot.index,
            None => {
                let key = StreamKey { owner, src: d.src, dst: d.dst, ssrc: packet.ssrc };
                let index = self.stream_slot(key, binding, pt, d);
                let slot = self.stream_slots.current(index).unwrap_or(SlotRef { index, version: 0 });
                memo.stream = Some(StreamMemo { owner, ssrc: packet.ssrc, slot });
                memo.codec = None;
                index
            }
        };
        let Some(stream) = self.stream_slots.get_mut(index) else { return Ok(()) };
        let codec = match memo.codec {
            Some(c) if c.payload_type == pt => c,
            _ => {
                let binding = binding.and_then(|b| self.bindings.get(b));
                let codec = binding.and_then(|b| b.codec(pt));
                let is_event = codec.is_some_and(|c| c.name.eq_ignore_ascii_case("telephone-event"));
                // Jitter is measured in the clock of the packet's own payload type (comfort noise
                // may differ from the audio). Telephone events get no clock at all: Wireshark
                // gives them a rate of 0, so they move no jitter figure, and ours must equal
                // tshark's.
                let clock = if is_event {
                    None
                } else if pt == stream.payload_type {
                    stream.clock_rate
                } else {
                    codec.map(|c| c.clock_rate).or_else(|| rtp::static_clock_rate(pt))
                };
                let comfort_noise = pt == 13 || pt == 19 || codec.is_some_and(|c| c.name.eq_ignore_ascii_case("CN"));
                let audio = !is_event && !comfort_noise;
                // A change of audio payload type can only come with a new codec decision (the
                // memo is per stream), so it is looked for here and not on every packet: the
                // fields it reads are a cache line of their own.
                if audio {
                    match stream.audio_pt {
                        None => stream.audio_pt = Some(pt),
                        Some(first) if first != pt && stream.payload_change.is_none() => {
                            stream.payload_change = Some(ts)
                        }
                        Some(_) => {}
                    }
                }
                let decided = CodecMemo { payload_type: pt, is_event, clock };
                memo.codec = Some(decided);
                decided
            }
        };
        let CodecMemo { is_event, clock, .. } = codec;
        stream.wire_bytes += d.wire_len;
        stream.payload_bytes += u64::from(if stream.secure {
            packet.payload_len
        } else {
            packet.payload_len.saturating_sub(u16::from(packet.padding_len))
        });
        let previous = stream.last_ts;
        stream.last_ts = stream.last_ts.max(ts);
        stream.stats.update(ts, packet.sequence, packet.timestamp, clock, packet.marker, pt);
        let jitter = stream.stats.jitter_ms();
        let gap =
            stream.quality.update(ts, packet.sequence, packet.timestamp, clock, packet.marker, jitter, &self.tuning);
        if is_event && stream.events.len() < MAX_EVENTS {
            // Only events need the payload; the header was parsed where the packet was read.
            let event = RtpPacket::parse(d.payload).and_then(|rtp| TelephoneEvent::parse(rtp.payload));
            if let Ok(ev) = event {
                if stream.current_event != Some(packet.timestamp) {
                    stream.current_event = Some(packet.timestamp);
                    stream.events.push(DtmfEvent {
                        ts,
                        digit: ev.digit().map_or_else(|| ev.event.to_string(), |d| d.to_string()),
                        duration: ev.duration,
                        volume: ev.volume,
                    });
                } else if let Some(last) = stream.events.last_mut() {
                    last.duration = last.duration.max(ev.duration);
                }
            }
        }
        // Last, because the detector needs the whole table: the stream is not borrowed any more.
        if gap > 0 {
            let since = stream.stats.first_arrival().unwrap_or(ts).as_nanos();
            self.on_gap(owner, index, since, (previous.as_nanos(), ts.as_nanos()), gap);
        }
        Ok(())
    }

    /// Hands a sequence gap of the stream in slot `index` to the capture-loss detector, and
    /// flags the streams of a cluster it blames on the capture.
    fn on_gap(&mut self, owner: Owner, index: u32, since: i64, span: (i64, i64), gap: u64) {
        let Some(slot) = self.stream_slots.current(index) else { return };
        for flagged in self.capture_loss.on_gap(owner, slot, since, span, gap) {
            if self.stream_slots.holds(flagged) {
                if let Some(s) = self.stream_slots.get_mut(flagged.index) {
                    s.capture_loss = true;
                }
            }
        }
    }

    /// SRTCP (RFC 3711 section 3.4): only the first header and its SSRC are in clear. The
    /// packet is decrypted with the call's SDES keys (its sender's first) and its reports
    /// read as RTCP's; one that authenticates with none is counted and never read (parsed
    /// as RTCP, ciphertext gave garbage reports, and a garbage round trip for the quality).
    fn on_srtcp(&mut self, owner: Owner, d: &Datagram<'_>) -> Result<(), NotMedia> {
        let p = d.payload;
        if p.len() < 8 || p[0] >> 6 != 2 || !(200..=207).contains(&p[1]) {
            return Err(NotMedia);
        }
        let ssrc = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        let outcome = self.open_srtcp(owner, d);
        let media = self.owner_seen(owner, d);
        let full = media.srtcp.len() >= MAX_XR_SOURCES;
        let counts = match media.srtcp.iter().position(|(s, _)| *s == ssrc) {
            Some(i) => Some(&mut media.srtcp[i].1),
            None if !full => {
                media.srtcp.push((ssrc, SrtcpCounts::default()));
                media.srtcp.last_mut().map(|(_, c)| c)
            }
            None => None,
        };
        let mut spare = SrtcpCounts::default();
        let counts = counts.unwrap_or(&mut spare);
        counts.packets += 1;
        match outcome {
            Srtcp::Decrypted => {
                counts.decrypted += 1;
                let plain = std::mem::take(&mut self.srtcp_buf);
                // Reports that do not parse after decryption are dropped; the packet was SRTCP.
                let _ = self.read_rtcp(owner, d, &plain);
                self.srtcp_buf = plain;
            }
            Srtcp::AuthFailed => counts.auth_failures += 1,
            Srtcp::Truncated => counts.truncated += 1,
            Srtcp::NoKey => counts.no_key += 1,
        }
        Ok(())
    }

    /// Tries `owner`'s SDES keys on an SRTCP packet, those its sender's SDP gave first; the
    /// plaintext is left in `srtcp_buf`.
    fn open_srtcp(&mut self, owner: Owner, d: &Datagram<'_>) -> Srtcp {
        let Some(srtp) = self.srtp.get_mut(&owner) else { return Srtcp::NoKey };
        let (mut failed, mut truncated) = (false, false);
        for senders in [true, false] {
            for key in srtp.keys.iter_mut().filter(|k| (k.sender == d.src.ip()) == senders) {
                match key.ctx.decrypt(d.payload, &mut self.srtcp_buf) {
                    Ok(_) => return Srtcp::Decrypted,
                    Err(SrtpError::Truncated { .. }) => truncated = true,
                    Err(_) => failed = true,
                }
            }
        }
        if failed {
            Srtcp::AuthFailed
        } else if truncated {
            Srtcp::Truncated
        } else {
            Srtcp::NoKey
        }
    }

    /// `owner`'s media, made at its first packet, with `d` as its latest activity: what an
    /// RTCP or SRTCP packet does to its owner before its reports are read.
    fn owner_seen(&mut self, owner: Owner, d: &Datagram<'_>) -> &mut OwnerMedia {
        let media = self.owners.entry(owner).or_insert_with(|| OwnerMedia {
            first_frame: d.frame,
            tunnel: d.tunnel.copied(),
            ..Default::default()
        });
        media.last_activity = media.last_activity.max(d.ts);
        media
    }

    fn on_rtcp(&mut self, owner: Owner, d: &Datagram<'_>) -> Result<(), NotMedia> {
        self.read_rtcp(owner, d, d.payload)
    }

    /// Reads the reports of compound RTCP packet `payload` (the datagram's, or what SRTCP
    /// decrypted to) into `owner`'s.
    fn read_rtcp(&mut self, owner: Owner, d: &Datagram<'_>, payload: &[u8]) -> Result<(), NotMedia> {
        let (ts, frame) = (d.ts, d.frame);
        let media = self.owner_seen(owner, d);
        // A datagram that is not RTCP to its end gives no report: the reports before its
        // damage may be anything. SRTCP that nobody announced is such: its first report's
        // blocks are ciphertext, and after it come ciphertext, the index word (read as a
        // header, packet type 0) and the tag. RTCP's packet types are 192-223 (RFC 5761
        // section 4). A tail too short for a header is tolerated, as before: some senders
        // add a stray byte or two to good reports.
        let damaged = rtcp::packets(payload).any(|p| match p {
            Err(DecodeError::Truncated { needed: 4, available, .. }) => available >= 4,
            Err(_) => true,
            Ok(RtcpPacket::Other { packet_type, .. }) => !(192..=223).contains(&packet_type),
            Ok(_) => false,
        });
        if damaged {
            return Err(NotMedia);
        }
        for packet in rtcp::packets(payload) {
            let packet = packet.map_err(|_| NotMedia)?;
            if let RtcpPacket::ExtendedReport { blocks, .. } = packet {
                // A damaged XR block loses its metrics, not the reports beside it.
                for block in rtcp::xr_blocks(blocks) {
                    let Ok(block) = block else { break };
                    if block.block_type != rtcp::XR_VOIP_METRICS {
                        continue;
                    }
                    let Ok(m) = rtcp::VoipMetrics::parse(block.body) else { continue };
                    let metrics = xr_voip(ts, &m);
                    let full = media.xr.len() >= MAX_XR_SOURCES;
                    match media.xr.iter_mut().find(|(ssrc, _)| *ssrc == m.ssrc) {
                        Some(slot) => slot.1 = metrics,
                        None if !full => media.xr.push((m.ssrc, metrics)),
                        None => {}
                    }
                }
                continue;
            }
            let Some(report) = rtcp_report(&packet, ts, frame) else { continue };
            if media.rtcp.len() < MAX_RTCP_REPORTS {
                media.rtcp.push(report);
            }
        }
        Ok(())
    }

    /// When `owner`'s media was last active.
    pub fn last_activity(&self, owner: Owner) -> Option<Timestamp> {
        let media = self.owners.get(&owner)?;
        let streams = media.streams.iter().filter_map(|k| self.streams.get(k));
        let last = streams.filter_map(|&i| self.stream_slots.get(i)).map(|s| s.last_ts);
        Some(last.fold(media.last_activity, Timestamp::max))
    }

    /// Owners of orphan media idle since before `cutoff`.
    pub fn idle_orphans(&self, cutoff: Timestamp) -> Vec<Owner> {
        let mut idle: Vec<Owner> = self
            .orphan_pairs
            .values()
            .copied()
            .filter(|&o| self.last_activity(o).is_some_and(|last| last < cutoff))
            .collect();
        idle.sort_unstable_by(|a, b| b.cmp(a));
        idle
    }

    /// Every orphan owner, oldest first.
    pub fn all_orphans(&self) -> Vec<Owner> {
        let mut all: Vec<Owner> = self.orphan_pairs.values().copied().collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        all
    }

    /// The tunnel `owner`'s first media packet came through (its GTP-U TEID says which
    /// bearer carried the call's media).
    pub fn tunnel(&self, owner: Owner) -> Option<callflow_model::Tunnel> {
        self.owners.get(&owner)?.tunnel.as_ref().map(tunnel_out)
    }

    /// Removes `owner`'s endpoints and streams and returns them as output streams, in
    /// order of first packet.
    pub fn take(&mut self, owner: Owner) -> Vec<MediaStream> {
        self.take_with_bytes(owner).into_iter().map(|(m, _)| m).collect()
    }

    /// [`MediaTable::take`], with each stream's frame bytes.
    fn take_with_bytes(&mut self, owner: Owner) -> Vec<(MediaStream, u64)> {
        let announced = self.unbind(owner);
        // Media latched on to an address the SDP did not give (symmetric RTP behind a NAT):
        // one end of the stream is an announced endpoint, the other is not, though the SDP
        // of both sides was seen (two endpoints or more).
        let latched = |src: &SocketAddr, dst: &SocketAddr| {
            announced.len() >= 2 && announced.contains(src) != announced.contains(dst)
        };
        let srtp = self.srtp.remove(&owner).map(|s| s.output());
        let Some(media) = self.owners.remove(&owner) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(media.streams.len());
        let mut streams: Vec<(StreamKey, Stream)> =
            media.streams.iter().filter_map(|k| self.remove_stream(k).map(|s| (*k, s))).collect();
        streams.sort_by_key(|(_, s)| s.first_frame);
        for (key, mut s) in streams {
            // Sized exactly: a report is about two streams (its sender's and the one its
            // block reports on), so each is cloned into both, and a collected vector's
            // spare room was a quarter of the reports' memory.
            let about = |r: &&RtcpReport| r.ssrc == key.ssrc || r.blocks.iter().any(|b| b.ssrc == key.ssrc);
            let mut rtcp = Vec::with_capacity(media.rtcp.iter().filter(about).count());
            rtcp.extend(media.rtcp.iter().filter(about).cloned());
            let xr = media.xr.iter().find(|(ssrc, _)| *ssrc == key.ssrc).map(|(_, m)| m.clone());
            let rtcp_summary = rtcp_summary(key.ssrc, &rtcp, xr, s.clock_rate, &s.stats);
            // Half the round trip when RTCP measured one, else the configured default.
            let network_delay_ms = rtcp_summary
                .as_ref()
                .and_then(|r| r.rtt_ms)
                .map_or(self.quality.default_network_delay.as_secs_f64() * 1000.0, |rtt| rtt / 2.0);
            let quality = s.quality.quality(&s.codec, network_delay_ms, &self.quality);
            let timeline = s.quality.take_timeline(&self.tuning);
            let st = &s.stats;
            let wire_bytes = s.wire_bytes;
            let (srtp, payload_bytes) = match &srtp {
                Some((srtp, trailer)) if s.secure => {
                    let srtcp = media.srtcp.iter().find(|(ssrc, _)| *ssrc == key.ssrc).map(|(_, c)| *c);
                    (Some(SrtpStream { srtcp, ..srtp.clone() }), s.payload_bytes.saturating_sub(st.packets() * trailer))
                }
                _ => (None, s.payload_bytes),
            };
            out.push((
                MediaStream {
                    src: key.src,
                    dst: key.dst,
                    ssrc: key.ssrc,
                    payload_type: s.payload_type,
                    codec: s.codec,
                    packets: st.packets(),
                    expected: st.expected(),
                    lost: st.lost(),
                    sequence_errors: st.sequence_errors(),
                    duplicates: st.duplicates(),
                    min_delta_ms: st.min_delta_ms(),
                    mean_delta_ms: st.mean_delta_ms(),
                    max_delta_ms: st.max_delta_ms(),
                    mean_jitter_ms: st.mean_jitter_ms(),
                    max_jitter_ms: st.max_jitter_ms(),
                    start: st.first_arrival().unwrap_or_default(),
                    end: st.last_arrival().unwrap_or_default(),
                    orphan: owner > u64::MAX / 2,
                    rtcp,
                    events: s.events,
                    quality,
                    timeline,
                    problems: Vec::new(),
                    rtcp_summary,
                    payload_change: s.payload_change,
                    capture_loss: s.capture_loss,
                    nat_latched: latched(&key.src, &key.dst),
                    payload_bytes,
                    srtp,
                },
                wire_bytes,
            ));
        }
        out
    }

    /// Turns an orphan owner into a media-only session. Streams whose packets do not
    /// behave like RTP (a single packet, or sequence numbers all over the place) were
    /// other UDP traffic that happened to pass the header check: they are left out and
    /// their packet and byte counts returned, so statistics can count them as unknown UDP.
    pub fn take_orphan_session(&mut self, owner: Owner) -> (Option<Session>, (u64, u64)) {
        self.orphan_pairs.retain(|_, o| *o != owner);
        let first_frame = self.owners.get(&owner).map(|m| m.first_frame).unwrap_or(0);
        let tunnel = self.owners.get(&owner).and_then(|m| m.tunnel.as_ref()).map(tunnel_out);
        let (plausible, implausible): (Vec<_>, Vec<_>) = self
            .take_with_bytes(owner)
            .into_iter()
            .partition(|(s, _)| s.packets >= 2 && s.sequence_errors * 2 <= s.packets);
        let rejected = implausible.iter().fold((0, 0), |(p, b), (s, bytes)| (p + s.packets, b + bytes));
        let plausible: Vec<MediaStream> = plausible.into_iter().map(|(s, _)| s).collect();
        // RTCP is reported with the stream it is about: without one, a session would be empty
        // (no addresses, no times), so there is none; the packets stay counted as RTCP.
        if plausible.is_empty() {
            return (None, rejected);
        }
        let mut participants: Vec<SocketAddr> = Vec::new();
        for s in &plausible {
            for a in [s.src, s.dst] {
                if !participants.contains(&a) {
                    participants.push(a);
                }
            }
        }
        let name: Vec<u8> = participants.iter().flat_map(|a| a.to_string().into_bytes()).collect();
        let session = Session {
            from: participants.first().map(ToString::to_string).unwrap_or_default(),
            to: participants.get(1).map(ToString::to_string).unwrap_or_default(),
            start: plausible.iter().map(|s| s.start).min().unwrap_or_default(),
            end: plausible.iter().map(|s| s.end).max().unwrap_or_default(),
            participants,
            media: plausible,
            tunnel,
            ..Session::empty(session_id("rtp", &name, first_frame), SessionKind::Rtp)
        };
        (Some(session), rejected)
    }
}

impl Default for MediaTable {
    fn default() -> Self {
        MediaTable::with_quality(QualityOptions::default())
    }
}

/// The address pair in a fixed order, so both directions of a flow give the same key.
fn ordered_pair(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// For RTCP between two odd ports, the pair of the RTP it reports on, one port below each.
fn rtp_pair_of(src: SocketAddr, dst: SocketAddr) -> Option<(SocketAddr, SocketAddr)> {
    if src.port().is_multiple_of(2) || dst.port().is_multiple_of(2) {
        return None;
    }
    let below = |a: SocketAddr| SocketAddr::new(a.ip(), a.port() - 1);
    Some(ordered_pair(below(src), below(dst)))
}

/// The RTCP about stream `ssrc` (its `reports`: the SRs it sent and the reports about it)
/// summarised: the round trip from each report block's LSR/DLSR and the capture times of
/// the SR it echoes and of itself (RFC 3550 6.4.1: A - LSR - DLSR, with both ends' times
/// taken from the capture, so it is the round trip between the capture point and the
/// stream's receiver), what the receiver reported, and the capture's own figures beside.
fn rtcp_summary(
    ssrc: u32,
    reports: &[RtcpReport],
    xr_voip: Option<XrVoipMetrics>,
    clock_rate: Option<u32>,
    stats: &StreamStats,
) -> Option<RtcpSummary> {
    let blocks: Vec<(Timestamp, &ReportBlock)> =
        reports.iter().flat_map(|r| r.blocks.iter().filter(|b| b.ssrc == ssrc).map(move |b| (r.ts, b))).collect();
    if blocks.is_empty() && xr_voip.is_none() {
        return None;
    }
    // The SRs the stream's sender sent, by the middle 32 bits of their NTP time (the LSR).
    let sent: HashMap<u32, Timestamp> = reports
        .iter()
        .filter(|r| r.ssrc == ssrc)
        .filter_map(|r| r.sender_info.as_ref().map(|i| ((i.ntp_timestamp >> 16) as u32, r.ts)))
        .collect();
    let rtts: Vec<f64> = blocks
        .iter()
        .filter(|(_, b)| b.lsr != 0)
        .filter_map(|(at, b)| {
            let sr = sent.get(&b.lsr)?;
            let rtt = at.nanos_since(*sr) as f64 / 1e6 - f64::from(b.dlsr) * 1000.0 / 65536.0;
            (rtt >= 0.0).then_some(rtt)
        })
        .collect();
    let last = blocks.last().map(|(_, b)| *b);
    let clock_khz = clock_rate.filter(|&r| r >= 1000).map(|r| f64::from(r) / 1000.0);
    let expected = stats.expected();
    Some(RtcpSummary {
        reports: blocks.len() as u64,
        rtt_ms: (!rtts.is_empty()).then(|| rtts.iter().sum::<f64>() / rtts.len() as f64),
        reported_loss_pct: last.map(|b| b.fraction_lost * 100.0),
        reported_lost: last.map(|b| i64::from(b.cumulative_lost)),
        reported_jitter_ms: clock_khz
            .and_then(|khz| blocks.iter().map(|(_, b)| f64::from(b.jitter) / khz).reduce(f64::max)),
        captured_loss_pct: if expected == 0 { 0.0 } else { 100.0 * stats.lost().max(0) as f64 / expected as f64 },
        captured_jitter_ms: stats.max_jitter_ms(),
        xr_voip,
    })
}

/// An RTCP-XR VoIP metrics block in plain units (RFC 3611 4.7: rates in 1/256, MOS times
/// 10, 127 for "unavailable").
fn xr_voip(ts: Timestamp, m: &rtcp::VoipMetrics) -> XrVoipMetrics {
    let pct = |x: u8| f64::from(x) * 100.0 / 256.0;
    let score = |x: u8| (x != 127).then_some(x);
    XrVoipMetrics {
        ts,
        loss_pct: pct(m.loss_rate),
        discard_pct: pct(m.discard_rate),
        burst_density_pct: pct(m.burst_density),
        gap_density_pct: pct(m.gap_density),
        burst_duration_ms: m.burst_duration,
        gap_duration_ms: m.gap_duration,
        round_trip_delay_ms: m.round_trip_delay,
        end_system_delay_ms: m.end_system_delay,
        r_factor: score(m.r_factor),
        mos_lq: score(m.mos_lq).map(|x| f64::from(x) / 10.0),
        mos_cq: score(m.mos_cq).map(|x| f64::from(x) / 10.0),
        jb_nominal_ms: m.jb_nominal,
        jb_maximum_ms: m.jb_maximum,
    }
}

/// The report an RTCP sender report or receiver report gives, as the output shows it
/// (`None` for the other packet types), received at `ts` in `frame`.
pub fn rtcp_report(packet: &RtcpPacket<'_>, ts: Timestamp, frame: u64) -> Option<RtcpReport> {
    match packet {
        RtcpPacket::SenderReport { ssrc, sender, blocks } => Some(RtcpReport {
            ts,
            frame,
            packet_type: RtcpReportKind::Sr,
            ssrc: *ssrc,
            sender_info: Some(SenderInfo {
                ntp_timestamp: sender.ntp_timestamp,
                rtp_timestamp: sender.rtp_timestamp,
                packet_count: sender.packet_count,
                octet_count: sender.octet_count,
            }),
            blocks: blocks.clone().map(report_block).collect(),
        }),
        RtcpPacket::ReceiverReport { ssrc, blocks } => Some(RtcpReport {
            ts,
            frame,
            packet_type: RtcpReportKind::Rr,
            ssrc: *ssrc,
            sender_info: None,
            blocks: blocks.clone().map(report_block).collect(),
        }),
        _ => None,
    }
}

fn report_block(b: rtcp::ReportBlock) -> ReportBlock {
    ReportBlock {
        ssrc: b.ssrc,
        fraction_lost: f64::from(b.fraction_lost) / 256.0,
        cumulative_lost: b.cumulative_lost,
        highest_seq: b.highest_seq,
        jitter: b.jitter,
        lsr: b.lsr,
        dlsr: b.dlsr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap as StdHashMap;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    fn rtp_packet(seq: u16, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xff; 160]);
        p
    }

    fn sender_report(ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 200, 0, 6];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0; 20]);
        p
    }

    /// Runs `script` through a media table, 20 ms apart, and compares what comes out with
    /// `expected`, one line per stream: `owner src>dst ssrc=N packets=N rtcp=N`, the
    /// dialogs' (numbered as in `sdp` lines) first, then the orphan sessions' (`rtp`).
    ///
    /// Lines: `sdp OWNER ADDR` (an SDP of dialog OWNER announcing audio at ADDR),
    /// `rtp SRC>DST SEQ SSRC`, `rtcp SRC>DST SSRC` (a sender report). A datagram no SDP
    /// announced is orphan media.
    fn check(script: &[&str], expected: &[&str]) {
        let mut table = MediaTable::default();
        let mut memos: StdHashMap<(SocketAddr, SocketAddr), MediaMemo> = StdHashMap::new();
        let mut dialogs = Vec::new();
        for (i, line) in script.iter().enumerate() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words[0].starts_with("sdp") {
                let owner: Owner = words[1].parse().unwrap();
                let a = addr(words[2]);
                let (proto, attributes) = match words[0] {
                    "sdp" => ("RTP/AVP", ""),
                    "sdp-savp" => ("RTP/SAVP", ""),
                    "sdp-dtls" => ("UDP/TLS/RTP/SAVPF", "a=fingerprint:sha-256 AB:CD\r\n"),
                    "sdp-avp-crypto" => (
                        "RTP/AVP",
                        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd\r\n",
                    ),
                    other => panic!("unknown script line {other}"),
                };
                let text = format!(
                    "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} {proto} 0\r\n{attributes}",
                    ip = a.ip(),
                    port = a.port()
                );
                table.register_sdp(owner, &Sdp::parse(text.as_bytes()).expect("sdp"), 0);
                if !dialogs.contains(&owner) {
                    dialogs.push(owner);
                }
                continue;
            }
            let (src, dst) = words[1].split_once('>').map(|(s, d)| (addr(s), addr(d))).unwrap();
            let (kind, payload) = match words[0] {
                "rtp" => (MediaKind::Rtp, rtp_packet(words[2].parse().unwrap(), words[3].parse().unwrap())),
                _ => (MediaKind::Rtcp, sender_report(words[2].parse().unwrap())),
            };
            let hints = UdpHints::of(&payload);
            let ts = Timestamp::from_nanos(i as i64 * 20_000_000);
            let d = Datagram {
                src,
                dst,
                context: 0,
                tunnel: None,
                payload: &payload,
                hints: &hints,
                ts,
                frame: i as u64 + 1,
                wire_len: 0,
            };
            let memo = memos.entry((src, dst)).or_default();
            if table.on_announced(memo, &d).is_none() {
                table.on_orphan(memo, kind, &d).expect("media");
            }
        }
        let line = |owner: &str, m: &MediaStream| {
            format!("{owner} {}>{} ssrc={} packets={} rtcp={}", m.src, m.dst, m.ssrc, m.packets, m.rtcp.len())
        };
        let mut got = Vec::new();
        for owner in dialogs {
            got.extend(table.take(owner).iter().map(|m| line(&owner.to_string(), m)));
        }
        for owner in table.all_orphans() {
            if let (Some(session), _) = table.take_orphan_session(owner) {
                assert!(!session.from.is_empty() && !session.to.is_empty(), "an orphan session names its ends");
                got.extend(session.media.iter().map(|m| line("rtp", m)));
            }
        }
        assert_eq!(got, expected, "{script:#?}");
    }

    const RTP_1: &str = "10.0.0.1:4000>10.0.0.2:5000";
    const RTP_2: &str = "10.0.0.2:5000>10.0.0.1:4000";

    #[test]
    fn announced_media_goes_to_its_dialog() {
        check(
            &["sdp 1 10.0.0.2:5000", &format!("rtp {RTP_1} 1 7"), &format!("rtp {RTP_1} 2 7")],
            &["1 10.0.0.1:4000>10.0.0.2:5000 ssrc=7 packets=2 rtcp=0"],
        );
        // Announced by the source's SDP only: the stream is still the dialog's.
        check(
            &["sdp 1 10.0.0.1:4000", &format!("rtp {RTP_1} 1 7"), &format!("rtp {RTP_2} 1 8")],
            &[
                "1 10.0.0.1:4000>10.0.0.2:5000 ssrc=7 packets=1 rtcp=0",
                "1 10.0.0.2:5000>10.0.0.1:4000 ssrc=8 packets=1 rtcp=0",
            ],
        );
    }

    #[test]
    fn announced_rtcp_port_is_the_next_one() {
        check(
            &[
                "sdp 1 10.0.0.2:5000",
                &format!("rtp {RTP_1} 1 7"),
                &format!("rtp {RTP_1} 2 7"),
                "rtcp 10.0.0.1:4001>10.0.0.2:5001 7",
            ],
            &["1 10.0.0.1:4000>10.0.0.2:5000 ssrc=7 packets=2 rtcp=1"],
        );
    }

    #[test]
    fn srtcp_of_a_secure_profile_is_not_read_as_reports() {
        // RTP/SAVP: the RTP headers are clear (the stream is measured), the RTCP is SRTCP.
        // So is a DTLS-SRTP profile's, and best effort, RTP/AVP's when SDES keys come with it.
        for sdp in ["sdp-savp", "sdp-dtls", "sdp-avp-crypto"] {
            check(
                &[
                    &format!("{sdp} 1 10.0.0.2:5000"),
                    &format!("rtp {RTP_1} 1 7"),
                    &format!("rtp {RTP_1} 2 7"),
                    "rtcp 10.0.0.1:4001>10.0.0.2:5001 7",
                ],
                &["1 10.0.0.1:4000>10.0.0.2:5000 ssrc=7 packets=2 rtcp=0"],
            );
        }
    }

    #[test]
    fn a_new_sdp_moves_the_endpoint() {
        check(
            &["sdp 1 10.0.0.2:5000", &format!("rtp {RTP_1} 1 7"), "sdp 2 10.0.0.2:5000", &format!("rtp {RTP_1} 2 7")],
            &[
                "1 10.0.0.1:4000>10.0.0.2:5000 ssrc=7 packets=1 rtcp=0",
                "2 10.0.0.1:4000>10.0.0.2:5000 ssrc=7 packets=1 rtcp=0",
            ],
        );
    }

    #[test]
    fn orphan_media_is_one_session_per_address_pair() {
        check(
            &[
                &format!("rtp {RTP_1} 1 7"),
                &format!("rtp {RTP_2} 1 8"),
                &format!("rtp {RTP_1} 2 7"),
                &format!("rtp {RTP_2} 2 8"),
            ],
            &[
                "rtp 10.0.0.1:4000>10.0.0.2:5000 ssrc=7 packets=2 rtcp=0",
                "rtp 10.0.0.2:5000>10.0.0.1:4000 ssrc=8 packets=2 rtcp=0",
            ],
        );
        // A single packet is not a stream: no session.
        check(&[&format!("rtp {RTP_1} 1 7")], &[]);
    }

    #[test]
    fn orphan_rtcp_on_the_ports_above_joins_its_stream() {
        let rtcp = "rtcp 10.0.0.2:5001>10.0.0.1:4001 7";
        let (one, two) = (format!("rtp {RTP_1} 1 7"), format!("rtp {RTP_1} 2 7"));
        let expected = ["rtp 10.0.0.1:4000>10.0.0.2:5000 ssrc=7 packets=2 rtcp=1"];
        check(&[&one, &two, rtcp], &expected);
        check(&[rtcp, &one, &two], &expected);
        // Alone, it makes no session.
        check(&[rtcp], &[]);
        // Between even ports it is not the RTCP of another pair.
        check(
            &[&one, &two, "rtcp 10.0.0.2:5002>10.0.0.1:4002 7"],
            &["rtp 10.0.0.1:4000>10.0.0.2:5000 ssrc=7 packets=2 rtcp=0"],
        );
    }

    /// A datagram from `src` to `dst` at `ms` through a fresh memo.
    fn feed(table: &mut MediaTable, src: &str, dst: &str, ms: i64, payload: &[u8]) {
        let hints = UdpHints::of(payload);
        let d = Datagram {
            src: addr(src),
            dst: addr(dst),
            context: 0,
            tunnel: None,
            payload,
            hints: &hints,
            ts: Timestamp::from_nanos(1_700_000_000_000_000_000 + ms * 1_000_000),
            frame: ms as u64,
            wire_len: 0,
        };
        let mut memo = MediaMemo::default();
        if table.on_announced(&mut memo, &d).is_none() {
            let kind = if hints.rtcp_like { MediaKind::Rtcp } else { MediaKind::Rtp };
            table.on_orphan(&mut memo, kind, &d).expect("media");
        }
    }

    #[test]
    fn rtcp_that_does_not_parse_to_its_end_gives_no_report_but_a_stray_byte_or_two_is_tolerated() {
        let reports = |tail: &[u8]| {
            let mut table = MediaTable::default();
            for seq in 1..=3u16 {
                feed(&mut table, "10.0.0.1:4000", "10.0.0.2:5000", i64::from(seq) * 20, &rtp_packet(seq, 7));
            }
            let mut sr = sender_report(7);
            sr.extend_from_slice(tail);
            let hints = UdpHints::of(&sr);
            let d = Datagram {
                src: addr("10.0.0.1:4001"),
                dst: addr("10.0.0.2:5001"),
                context: 0,
                tunnel: None,
                payload: &sr,
                hints: &hints,
                ts: Timestamp::from_nanos(1_700_000_000_100_000_000),
                frame: 100,
                wire_len: 0,
            };
            // Neither is RTCP to its end (NotMedia); what differs is whether reports are kept.
            assert_eq!(table.on_orphan(&mut MediaMemo::default(), MediaKind::Rtcp, &d).err(), Some(NotMedia));
            let owner = table.all_orphans()[0];
            table.take_orphan_session(owner).0.expect("session").media[0].rtcp.len()
        };
        // heplify's rtp_rtcp_sip_ipv4_udp.pcap: two stray bytes after good reports.
        assert_eq!(reports(&[0, 0]), 1);
        // SRTCP nobody announced: an SR in clear, then the E flag, the index and a tag.
        assert_eq!(reports(&[0x80, 0, 0, 2, 0xc2, 0xc8, 0xc5, 0x42, 0xb9, 0x68, 0x49, 0x96, 0xa1, 0x36]), 0);
    }

    #[test]
    fn rtcp_summary_gives_the_round_trip_and_what_the_receiver_reported() {
        let mut table = MediaTable::default();
        for seq in 1..=100u16 {
            feed(&mut table, "10.0.0.1:4000", "10.0.0.2:5000", i64::from(seq) * 20, &rtp_packet(seq, 7));
        }
        // The sender's SR at 1000 ms, NTP 0x0000_1234_5678_0000: its LSR is 0x1234_5678.
        let mut sr = vec![0x80, 200, 0, 6];
        sr.extend_from_slice(&7u32.to_be_bytes());
        sr.extend_from_slice(&0x0000_1234_5678_0000u64.to_be_bytes());
        sr.extend_from_slice(&[0; 12]);
        feed(&mut table, "10.0.0.1:4001", "10.0.0.2:5001", 1000, &sr);
        // The receiver's RR at 1580 ms, held 0.5 s (DLSR 32768): RTT 1580 - 1000 - 500 = 80 ms.
        // Fraction lost 64/256, cumulative 3, jitter 240 timestamp units (30 ms at 8 kHz).
        let mut rr = vec![0x81, 201, 0, 7];
        rr.extend_from_slice(&8u32.to_be_bytes());
        rr.extend_from_slice(&7u32.to_be_bytes());
        rr.extend_from_slice(&[64, 0, 0, 3]);
        for w in [100u32, 240, 0x1234_5678, 32768] {
            rr.extend_from_slice(&w.to_be_bytes());
        }
        // And an XR VoIP metrics block about SSRC 7 (MOS-LQ 4.1, R 80, loss 10/256).
        rr.extend_from_slice(&[0x80, 207, 0, 10]);
        rr.extend_from_slice(&8u32.to_be_bytes());
        rr.extend_from_slice(&[7, 0, 0, 8]);
        rr.extend_from_slice(&7u32.to_be_bytes());
        rr.extend_from_slice(&[10, 0, 0, 0, 0, 0, 0, 0, 0, 80, 0, 40, 127, 127, 127, 16, 80, 127, 41, 127, 0, 0]);
        rr.extend_from_slice(&[0, 60, 0, 80, 0, 200]);
        feed(&mut table, "10.0.0.2:5001", "10.0.0.1:4001", 1580, &rr);
        let owner = table.all_orphans()[0];
        let (session, _) = table.take_orphan_session(owner);
        let stream = &session.expect("session").media[0];
        let summary = stream.rtcp_summary.as_ref().expect("summary");
        assert_eq!(summary.reports, 1);
        assert_eq!(summary.rtt_ms, Some(80.0));
        assert_eq!((summary.reported_loss_pct, summary.reported_lost), (Some(25.0), Some(3)));
        assert_eq!(summary.reported_jitter_ms, Some(30.0));
        assert_eq!((summary.captured_loss_pct, summary.captured_jitter_ms), (0.0, 0.0));
        let xr = summary.xr_voip.as_ref().expect("xr");
        assert_eq!((xr.r_factor, xr.mos_lq, xr.mos_cq, xr.round_trip_delay_ms), (Some(80), Some(4.1), None, 80));
        // The quality's delay is half the round trip plus the 60 ms buffer.
        assert_eq!(stream.quality.as_ref().map(|q| q.delay_ms), Some(100.0));
    }
}
