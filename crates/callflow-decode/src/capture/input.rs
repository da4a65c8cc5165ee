//! Where a capture's bytes come from: a whole file read in place, or a stream read through a bounded buffer.
//!
//! The record parsers only ever ask three things: "make `n` bytes available from the current
//! position", "show me what is available", and "consume `n` bytes and tell me where they are
//! so a frame can borrow them". A memory map or an owned `Vec` answers all three without
//! copying; a stream (gzip, stdin, a pipe) answers them from one buffer that holds the
//! unread rest of the last read plus at most the record being asked for.

use std::io::{self, Read};
use std::ops::Deref;
use std::sync::Arc;

use memmap2::{Mmap, UncheckedAdvice};

/// How many bytes of a mapped file are read between two releases of the pages behind.
const RELEASE_STEP: usize = 8 << 20;

/// How far behind the reading position the released pages stop: threads that decode frames
/// handed out by [`SharedBytes`] lag the reader by a few batches, and a page they still read
/// should not have to be faulted in again.
const RELEASE_LAG: usize = 8 << 20;

/// The page size the releases are aligned to (4 KiB, the smallest in use; a larger page
/// size only makes the kernel round the range).
const PAGE: usize = 4096;

/// How many bytes a stream asks its reader for at a time (the buffer's normal size).
pub(super) const READ_SIZE: usize = 1 << 20;

/// The bytes of a capture, however they arrive.
pub(super) enum Input {
    /// The whole capture is in memory (mapped or owned); `pos` is the next unread byte, and
    /// the pages of a map before `released` were given back to the kernel (see
    /// [`Input::release_consumed`]).
    Whole { bytes: Arc<Whole>, pos: usize, released: usize },
    /// The capture arrives through a reader.
    Stream(Stream),
}

/// A capture held whole in memory.
pub(super) enum Whole {
    /// A read-only memory map of a file.
    Map(Mmap),
    /// Bytes handed over by the caller.
    Owned(Vec<u8>),
}

/// The bytes of a capture held whole in memory, shared with other threads: what
/// [`FrameRef`](super::FrameRef)s point into. Cloning it is cheap (a reference count).
#[derive(Clone)]
pub struct SharedBytes(Arc<Whole>);

impl Deref for SharedBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.0.bytes()
    }
}

impl std::fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBytes").field("len", &self.len()).finish_non_exhaustive()
    }
}

impl Whole {
    fn bytes(&self) -> &[u8] {
        match self {
            Whole::Map(map) => map,
            Whole::Owned(vec) => vec,
        }
    }
}

/// A reader behind a buffer that grows only to fit the record being read.
pub(super) struct Stream {
    reader: Box<dyn Read + Send>,
    /// `buf[start..end]` is read but not yet consumed; bytes before `start` belong to the
    /// frame last handed out and stay put until the next `fill`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes consumed so far: the absolute offset of `buf[start]` in the stream.
    consumed: u64,
    read_size: usize,
    /// Whether the bytes are the output of a gzip decoder (for error messages).
    gzip: bool,
    eof: bool,
    /// A read error, kept until the parser has used up the bytes read before it.
    error: Option<io::Error>,
}

impl Stream {
    pub(super) fn new(reader: Box<dyn Read + Send>, gzip: bool) -> Stream {
        Stream::with_read_size(reader, gzip, READ_SIZE)
    }

    pub(super) fn with_read_size(reader: Box<dyn Read + Send>, gzip: bool, read_size: usize) -> Stream {
        Stream {
            reader,
            buf: Vec::new(),
            start: 0,
            end: 0,
            consumed: 0,
            read_size: read_size.max(1),
            gzip,
            eof: false,
            error: None,
        }
    }

    /// Gives back a reader that yields the buffered, unconsumed bytes and then the rest of the
    /// stream, so a decoder can be put in front of bytes already looked at.
    pub(super) fn into_reader(self) -> Box<dyn Read + Send> {
        let head = self.buf.get(self.start..self.end).unwrap_or(&[]).to_vec();
        Box::new(io::Cursor::new(head).chain(self.reader))
    }

    /// See [`Input::fill`].
    pub(super) fn fill(&mut self, n: usize) -> usize {
        let available = self.end - self.start;
        if available >= n || self.eof {
            return available;
        }
        // Move the partial record to the front: it is smaller than `n`, so this is cheap, and it
        // lets the buffer keep its size instead of growing with the stream.
        self.buf.copy_within(self.start..self.end, 0);
        self.start = 0;
        self.end = available;
        // The buffer is one read long, or one record long when a record is longer than that.
        let size = n.max(self.read_size);
        if self.buf.len() < size {
            self.buf.resize(size, 0);
        } else if self.buf.len() > size {
            self.buf.truncate(size);
            self.buf.shrink_to(size);
        }
        while self.end < n {
            let Some(free) = self.buf.get_mut(self.end..) else { break };
            match self.reader.read(free) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(k) => self.end += k.min(free.len()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.error = Some(e);
                    self.eof = true;
                    break;
                }
            }
        }
        self.end - self.start
    }

    /// See [`Input::peek`].
    pub(super) fn peek(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or(&[])
    }

    /// The size of the buffer (for tests of the memory bound).
    #[cfg(test)]
    pub(super) fn buffer_len(&self) -> usize {
        self.buf.len()
    }
}

impl Input {
    /// Absolute offset of the next unread byte (in the decompressed stream for gzip).
    pub(super) fn pos(&self) -> u64 {
        match self {
            Input::Whole { pos, .. } => *pos as u64,
            Input::Stream(s) => s.consumed,
        }
    }

    /// Makes at least `n` bytes available from the current position if the capture has them,
    /// and returns how many are available (fewer than `n` only at the end of the capture or
    /// after a read error, which [`Input::take_error`] then returns).
    pub(super) fn fill(&mut self, n: usize) -> usize {
        match self {
            Input::Whole { bytes, pos, .. } => bytes.bytes().len().saturating_sub(*pos),
            Input::Stream(s) => s.fill(n),
        }
    }

    /// The bytes available from the current position, as of the last `fill`.
    pub(super) fn peek(&self) -> &[u8] {
        match self {
            Input::Whole { bytes, pos, .. } => bytes.bytes().get(*pos..).unwrap_or(&[]),
            Input::Stream(s) => s.peek(),
        }
    }

    /// Consumes `n` available bytes and returns their index for [`Input::slice`], valid until
    /// the next `fill`.
    pub(super) fn advance(&mut self, n: usize) -> usize {
        match self {
            Input::Whole { bytes, pos, .. } => {
                let at = *pos;
                *pos = pos.saturating_add(n).min(bytes.bytes().len());
                at
            }
            Input::Stream(s) => {
                let at = s.start;
                let n = n.min(s.end - s.start);
                s.start += n;
                s.consumed += n as u64;
                at
            }
        }
    }

    /// What the indexes returned by [`Input::advance`] point into: the whole capture, or a
    /// stream's buffer (valid until the next `fill`).
    pub(super) fn buffer(&self) -> &[u8] {
        match self {
            Input::Whole { bytes, .. } => bytes.bytes(),
            Input::Stream(s) => &s.buf,
        }
    }

    /// The bytes of a capture held whole in memory, for other threads.
    pub(super) fn shared(&self) -> Option<SharedBytes> {
        match self {
            Input::Whole { bytes, .. } => Some(SharedBytes(bytes.clone())),
            Input::Stream(_) => None,
        }
    }

    /// Gives the mapped pages already read back to the kernel, in steps of
    /// [`RELEASE_STEP`] and [`RELEASE_LAG`] behind the reading position, so the reader's
    /// resident memory stays flat however large the file: without this every page read
    /// stays counted in the process's RSS until the map is dropped.
    pub(super) fn release_consumed(&mut self) {
        let Input::Whole { bytes, pos, released } = self else { return };
        let Whole::Map(map) = &**bytes else { return };
        if *pos < *released + RELEASE_STEP + RELEASE_LAG {
            return;
        }
        // Only whole pages go, all of them behind the lag.
        let upto = (*pos - RELEASE_LAG) & !(PAGE - 1);
        // SAFETY: the map is a private, read-only mapping of a file, so MADV_DONTNEED only
        // drops clean pages that the kernel reads back from the file if they are touched
        // again: no byte changes, so the frames that other threads still borrow through
        // `SharedBytes` keep reading the same bytes (at worst, after a page fault).
        let _ = unsafe { map.unchecked_advise_range(UncheckedAdvice::DontNeed, *released, upto - *released) };
        *released = upto;
    }

    /// The read error that ended the stream early, if any (once).
    pub(super) fn take_error(&mut self) -> Option<io::Error> {
        match self {
            Input::Whole { .. } => None,
            Input::Stream(s) => s.error.take(),
        }
    }

    /// Whether the bytes come out of a gzip decoder.
    pub(super) fn is_gzip(&self) -> bool {
        matches!(self, Input::Stream(Stream { gzip: true, .. }))
    }

    #[cfg(test)]
    pub(super) fn stream(&self) -> Option<&Stream> {
        match self {
            Input::Stream(s) => Some(s),
            Input::Whole { .. } => None,
        }
    }
}
