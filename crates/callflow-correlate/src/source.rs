//! Frame sources: what the analysis reads frames from (a capture file, a stream, later a live interface or HEP), and how such a source tells it that time has moved.
//!
//! The analysis loop ([`analyze_with`](crate::analyze_with)) and the read-ahead thread take
//! any [`FrameSource`], not a file reader. A source hands out frames in capture order and,
//! when it has none to give for a while (a quiet live link), a [`Pulled::Tick`] with the
//! current time: the analysis then closes the sessions that are over as of that time
//! ([`Analyzer::advance_to`](crate::Analyzer::advance_to)) and hands them to the sink, as a
//! frame of that time would have. A capture file never ticks: its frames carry the time.

use callflow_decode::capture::{CaptureError, CaptureReader, Frame, FrameRef, SharedBytes, SharedFrame};
use callflow_decode::tls::keylog::SharedKeyLog;
use callflow_decode::{LinkType, Timestamp};

/// What a [`FrameSource`] gives on each pull.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pulled<'a> {
    /// A frame in the source's [`FrameSource::shared_bytes`] (only from
    /// [`FrameSource::next_shared_frame`]).
    At(FrameRef),
    /// A frame, valid until the next pull.
    Here(Frame<'a>),
    /// No frame, but time has moved on to this instant (capture time, in the clock of the
    /// source's frames): what is over by then may be closed.
    Tick(Timestamp),
}

/// Where the analysis gets its frames: a capture file (memory-mapped or streamed, see
/// [`CaptureReader`]), standard input, or any other source of frames in capture order.
///
/// Only [`FrameSource::next_frame`], [`FrameSource::bytes_consumed`] and
/// [`FrameSource::link_types`] are required; a source whose frames live in memory that
/// other threads may read also gives [`FrameSource::shared_bytes`] and
/// [`FrameSource::next_shared_frame`], so the read-ahead thread hands frames over without
/// copying them.
pub trait FrameSource {
    /// The next frame or tick, `Ok(None)` at the end, or the error that stops reading
    /// (after which it returns `Ok(None)`). Never [`Pulled::At`].
    fn next_frame(&mut self) -> Result<Option<Pulled<'_>>, CaptureError>;

    /// Like [`FrameSource::next_frame`], but a frame held in [`FrameSource::shared_bytes`]
    /// may come as [`Pulled::At`].
    fn next_shared_frame(&mut self) -> Result<Option<Pulled<'_>>, CaptureError> {
        self.next_frame()
    }

    /// The bytes [`Pulled::At`] frames point into, when the source holds its frames in memory.
    fn shared_bytes(&self) -> Option<SharedBytes> {
        None
    }

    /// The size of the whole input when known in advance (a file), for progress.
    fn total_bytes(&self) -> Option<u64> {
        None
    }

    /// Bytes of the input read so far.
    fn bytes_consumed(&self) -> u64;

    /// The distinct link types of the frames so far, in the order first seen.
    fn link_types(&self) -> &[LinkType];

    /// Adds the TLS secrets the source itself carries (a pcapng file's Decryption Secrets
    /// Blocks) to `keys` as it reads them; a source that carries none ignores it.
    fn share_tls_keys(&mut self, _keys: SharedKeyLog) {}
}

impl FrameSource for CaptureReader {
    fn next_frame(&mut self) -> Result<Option<Pulled<'_>>, CaptureError> {
        Ok(CaptureReader::next_frame(self)?.map(Pulled::Here))
    }

    fn next_shared_frame(&mut self) -> Result<Option<Pulled<'_>>, CaptureError> {
        Ok(CaptureReader::next_shared_frame(self)?.map(|shared| match shared {
            SharedFrame::At(at) => Pulled::At(at),
            SharedFrame::Here(frame) => Pulled::Here(frame),
        }))
    }

    fn shared_bytes(&self) -> Option<SharedBytes> {
        CaptureReader::shared_bytes(self)
    }

    fn total_bytes(&self) -> Option<u64> {
        CaptureReader::total_bytes(self)
    }

    fn bytes_consumed(&self) -> u64 {
        CaptureReader::bytes_consumed(self)
    }

    fn link_types(&self) -> &[LinkType] {
        CaptureReader::link_types(self)
    }

    fn share_tls_keys(&mut self, keys: SharedKeyLog) {
        CaptureReader::share_tls_keys(self, keys)
    }
}
