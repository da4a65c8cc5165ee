//! Reading ahead: one thread reads and decodes frames while the caller's thread analyses them, in capture order.
//!
//! Analysis is inherently sequential where it matters: an SDP answer must be seen before
//! the first RTP packet it announces, a BYE before the session is closed. Rather than
//! shard that state and reconcile it afterwards (and risk a single number differing from
//! the one-thread run), the work is cut where nothing is shared: locating records,
//! decoding their layers (Ethernet, VLAN, IP, tunnels, UDP/TCP headers), reassembling IP
//! fragments and finding each packet's flow depend on the packets alone (the [`Front`]
//! stage), so a second thread does them and hands over batches of prepared packets
//! through a bounded channel. The analysing thread receives them in order and never waits
//! on a lock.
//!
//! For a capture held in memory (a mapped file), the decoded packets borrow the mapped
//! bytes directly: nothing is copied. A stream (gzip, stdin) reuses its buffer for the
//! next read, so its frames are copied into the batch and prepared by the analysing
//! thread; the reading thread's share is then the decompression, usually the larger part.

use crate::front::{Forgotten, Front, Prepared};
use crate::source::{FrameSource, Pulled};
use callflow_decode::capture::{CaptureError, Frame, FrameRef};
use callflow_decode::Timestamp;
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use std::ops::ControlFlow;

/// Most frames in a batch: large enough that the channel costs little per frame, small
/// enough that the analysing thread starts at once and memory in flight stays small.
const BATCH_FRAMES: usize = 1024;

/// Most captured bytes in a batch (a batch always takes at least one frame).
const BATCH_BYTES: usize = 1 << 20;

/// Batches in flight between the threads: the reader runs at most this far ahead.
const IN_FLIGHT: usize = 4;

/// A frame handed over: prepared already when its bytes are shared, else copied into the
/// batch's arena (`frame.offset` is then into the arena).
enum Item<'s> {
    Prepared {
        frame: FrameRef,
        prepared: Prepared<'s>,
        consumed: u64,
    },
    Copied {
        frame: FrameRef,
        consumed: u64,
    },
    /// The source said time moved on without a frame (with the flows the reading
    /// thread's front stage forgot then).
    Tick {
        now: Timestamp,
        forgotten: Forgotten,
        consumed: u64,
    },
}

/// What the analysing thread is handed, in capture order: a frame as prepared, or a tick.
pub(crate) enum Event<'f, 'p> {
    Frame(&'f Frame<'f>, &'p Prepared<'p>),
    Tick(Timestamp, &'p Forgotten),
}

#[derive(Default)]
struct Batch<'s> {
    items: Vec<Item<'s>>,
    arena: Vec<u8>,
}

enum Message<'s> {
    Batch(Batch<'s>),
    /// Reading ended: at the end of the capture, or with the error that stopped it.
    End(Option<CaptureError>),
}

/// Reads `reader` on a second thread, prepared there by `front`, and calls `each` in this
/// one with every frame in capture order, as prepared (and every tick), and the bytes of
/// the capture consumed through it. Stops early when `each` breaks. Returns the front
/// stage (for what it counted; always there, the reading thread hands it back), and the error that ended reading, as
/// [`FrameSource::next_frame`] would have returned it after the last frame.
pub(crate) fn read_ahead<S: FrameSource + Send + ?Sized>(
    reader: &mut S,
    front: Front,
    mut each: impl FnMut(Event<'_, '_>, u64) -> ControlFlow<()>,
) -> (Option<Front>, Result<(), CaptureError>) {
    let shared = reader.shared_bytes();
    let bytes: &[u8] = shared.as_deref().unwrap_or(&[]);
    std::thread::scope(|scope| {
        let (to_analysis, batches) = bounded::<Message<'_>>(IN_FLIGHT);
        let (to_reader, recycled) = unbounded::<Batch<'_>>();
        // Shared frames are prepared by the reading thread; a stream's frames, copied, here.
        let (remote, mut local) = if shared.is_some() { (Some(front), None) } else { (None, Some(front)) };
        let reading = scope.spawn(move || read(reader, bytes, remote, to_analysis, recycled));
        let ended = 'batches: {
            for message in batches.iter() {
                let batch = match message {
                    Message::Batch(batch) => batch,
                    Message::End(end) => break 'batches end.map_or(Ok(()), Err),
                };
                for item in &batch.items {
                    let flow = match item {
                        Item::Prepared { frame, prepared, consumed } => {
                            each(Event::Frame(&frame.frame(bytes), prepared), *consumed)
                        }
                        Item::Copied { frame, consumed } => {
                            let frame = frame.frame(&batch.arena);
                            match local.as_mut() {
                                Some(front) => each(Event::Frame(&frame, &front.prepare(&frame)), *consumed),
                                // The reading thread has the front stage: it copies nothing.
                                None => ControlFlow::Continue(()),
                            }
                        }
                        Item::Tick { now, forgotten, consumed } => match local.as_mut() {
                            Some(front) => each(Event::Tick(*now, &front.advance_to(*now)), *consumed),
                            None => each(Event::Tick(*now, forgotten), *consumed),
                        },
                    };
                    if flow.is_break() {
                        // Dropping the receiver ends the reading thread at its next send.
                        break 'batches Ok(());
                    }
                }
                // Handing the batch back spares the reader an allocation per batch; if it has
                // already finished, the batch is simply dropped.
                let _ = to_reader.send(batch);
            }
            Ok(())
        };
        drop(batches);
        let remote = reading.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (local.or(remote), ended)
    })
}

/// The reading thread: fills batches until the capture ends or the analysis stops listening.
fn read<'s, S: FrameSource + ?Sized>(
    reader: &mut S,
    bytes: &'s [u8],
    mut front: Option<Front>,
    out: Sender<Message<'s>>,
    recycled: Receiver<Batch<'s>>,
) -> Option<Front> {
    let mut batch = Batch::default();
    let mut batch_bytes = 0;
    loop {
        let mut flush = false;
        let item = match reader.next_shared_frame() {
            Ok(Some(Pulled::At(shared))) => match front.as_mut() {
                Some(front) => {
                    batch_bytes += shared.len;
                    let prepared = front.prepare(&shared.frame(bytes));
                    Item::Prepared { frame: shared, prepared, consumed: reader.bytes_consumed() }
                }
                // Without the front stage here (never the case for shared bytes), the frame
                // is copied like a stream's.
                None => {
                    let copied = copy(&mut batch, &shared.frame(bytes), &mut batch_bytes);
                    Item::Copied { frame: copied, consumed: reader.bytes_consumed() }
                }
            },
            Ok(Some(Pulled::Here(frame))) => {
                let copied = copy(&mut batch, &frame, &mut batch_bytes);
                Item::Copied { frame: copied, consumed: reader.bytes_consumed() }
            }
            Ok(Some(Pulled::Tick(now))) => {
                let forgotten = front.as_mut().and_then(|front| front.advance_to(now));
                // A tick comes from a quiet source: what is batched goes now, not when the
                // batch fills.
                flush = true;
                Item::Tick { now, forgotten, consumed: reader.bytes_consumed() }
            }
            Ok(None) => {
                let _ = out.send(Message::Batch(batch)).and_then(|()| out.send(Message::End(None)));
                return front;
            }
            Err(e) => {
                let _ = out.send(Message::Batch(batch)).and_then(|()| out.send(Message::End(Some(e))));
                return front;
            }
        };
        batch.items.push(item);
        if flush || batch.items.len() >= BATCH_FRAMES || batch_bytes >= BATCH_BYTES {
            let mut next = recycled.try_recv().unwrap_or_default();
            next.items.clear();
            next.arena.clear();
            if out.send(Message::Batch(std::mem::replace(&mut batch, next))).is_err() {
                return front;
            }
            batch_bytes = 0;
        }
    }
}

/// Copies `frame` into the batch's arena and says where it is there.
fn copy(batch: &mut Batch<'_>, frame: &Frame<'_>, batch_bytes: &mut usize) -> FrameRef {
    let at = FrameRef {
        number: frame.number,
        ts: frame.ts,
        link_type: frame.link_type,
        orig_len: frame.orig_len,
        interface: frame.interface,
        offset: batch.arena.len(),
        len: frame.data.len(),
    };
    batch.arena.extend_from_slice(frame.data);
    *batch_bytes += frame.data.len();
    at
}
