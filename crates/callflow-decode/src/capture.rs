//! Capture-file reader: pcap and pcapng, plain or gzip-compressed, record by record without copying.
//!
//! [`CaptureReader`] recognises the format by its first bytes, never by the file name:
//!
//! - pcap in either byte order, with microsecond (`a1b2c3d4`) or nanosecond (`a1b23c4d`)
//!   timestamps;
//! - pcapng: sections in either byte order, any number of interfaces with their own link types
//!   and timestamp resolutions (`if_tsresol`, power of 10 or of 2, and `if_tsoffset`),
//!   enhanced, simple and obsolete packet blocks; every other block, and every option the
//!   reader does not need, is skipped;
//! - either of them gzip-compressed (`1f 8b`, several gzip members are read one after the other).
//!
//! Plain files are memory-mapped and a [`Frame`] borrows the mapping. Gzip files and streams
//! (stdin) go through one buffer that holds a large read plus at most the record being read
//! (the largest a record may be is a 16 MiB pcapng block), and a frame borrows that buffer.
//!
//! Reading stops at the first bad record with a [`CaptureError`] that names the record's
//! absolute offset (in the decompressed capture for gzip); the frames before it have been
//! returned. After an error, [`CaptureReader::next_frame`] returns `Ok(None)`.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use memmap2::Mmap;

use crate::tls::keylog::SharedKeyLog;
use crate::{LinkType, Timestamp};

mod input;

pub use input::SharedBytes;
use input::{Input, Stream, Whole};
use std::sync::Arc;

/// The largest captured length accepted for one record, so a lying length field cannot make
/// the reader allocate or skip without bound. This is tcpdump's and Wireshark's maximum snap length.
pub const MAX_CAPLEN: u32 = 262_144;

/// The largest pcapng block accepted, for the same reason.
pub const MAX_BLOCK_LEN: u32 = 16 * 1024 * 1024;

/// More interface descriptions than this in one pcapng section is taken for garbage.
const MAX_INTERFACES: usize = 65_536;

const PCAP_HEADER_LEN: usize = 24;
const PCAP_RECORD_HEADER_LEN: usize = 16;

const PCAPNG_SHB: u32 = 0x0A0D_0D0A;
const PCAPNG_IDB: u32 = 0x0000_0001;
const PCAPNG_OPB: u32 = 0x0000_0002;
const PCAPNG_SPB: u32 = 0x0000_0003;
const PCAPNG_EPB: u32 = 0x0000_0006;
/// Decryption Secrets Block: key material for the section's encrypted traffic.
const PCAPNG_DSB: u32 = 0x0000_000A;
/// A Decryption Secrets Block's secrets type for a TLS key log ('TLSK').
const DSB_TLS_KEY_LOG: u32 = 0x544c_534b;
const PCAPNG_BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

const OPT_END: u16 = 0;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;

/// Why a capture could not be read (further).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// Opening, mapping or reading the file or stream failed. For streams and gzip the
    /// message names the offset in the (decompressed) capture where reading broke off.
    #[error("I/O error: {0}")]
    Io(std::io::Error),
    /// The file or stream holds no bytes at all.
    #[error("not a capture file: empty")]
    Empty,
    /// The first bytes are neither a pcap, a pcapng nor a gzip magic number.
    #[error("not a capture file: bad magic 0x{magic:08x} at offset {offset}")]
    NotACapture {
        /// The first four bytes, read as a big-endian number.
        magic: u32,
        /// Where they were read (0: the start of the capture).
        offset: u64,
    },
    /// A header, record or block is cut short by the end of the capture.
    #[error("capture truncated: record at offset {offset} needs {needed} bytes, {available} available")]
    Truncated {
        /// Absolute offset of the record (or header) that is cut short.
        offset: u64,
        /// Bytes the record needs from `offset`.
        needed: u64,
        /// Bytes the capture has from `offset`.
        available: u64,
    },
    /// A record or block declares something impossible (a captured length over
    /// [`MAX_CAPLEN`], a bad pcapng block length, an unknown interface, ...).
    #[error("corrupt capture: record at offset {offset}: {reason}")]
    Corrupt {
        /// Absolute offset of the record or block.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
}

impl From<io::Error> for CaptureError {
    fn from(e: io::Error) -> Self {
        CaptureError::Io(e)
    }
}

fn corrupt(offset: u64, reason: impl Into<String>) -> CaptureError {
    CaptureError::Corrupt { offset, reason: reason.into() }
}

/// The container format of a capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CaptureFormat {
    /// Classic libpcap format.
    Pcap {
        /// Timestamps in nanoseconds (magic `a1b23c4d`) rather than microseconds.
        nanosecond: bool,
        /// Written big-endian.
        big_endian: bool,
        /// Read through gzip decompression.
        gzip: bool,
    },
    /// pcapng.
    PcapNg {
        /// The first section is big-endian (later sections may differ).
        big_endian: bool,
        /// Read through gzip decompression.
        gzip: bool,
    },
}

impl CaptureFormat {
    /// Whether the capture is gzip-compressed.
    pub fn is_gzip(self) -> bool {
        match self {
            CaptureFormat::Pcap { gzip, .. } | CaptureFormat::PcapNg { gzip, .. } => gzip,
        }
    }

    /// A short name: `pcap`, `pcap-ns`, `pcapng`, with `.gz` appended when compressed.
    pub fn name(self) -> &'static str {
        match self {
            CaptureFormat::Pcap { nanosecond: false, gzip: false, .. } => "pcap",
            CaptureFormat::Pcap { nanosecond: true, gzip: false, .. } => "pcap-ns",
            CaptureFormat::PcapNg { gzip: false, .. } => "pcapng",
            CaptureFormat::Pcap { nanosecond: false, gzip: true, .. } => "pcap.gz",
            CaptureFormat::Pcap { nanosecond: true, gzip: true, .. } => "pcap-ns.gz",
            CaptureFormat::PcapNg { gzip: true, .. } => "pcapng.gz",
        }
    }
}

impl fmt::Display for CaptureFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One captured packet, borrowing the reader's bytes until the next call to
/// [`CaptureReader::next_frame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Position of the packet in the capture, counting from 1 (as Wireshark numbers frames).
    pub number: u64,
    /// When the packet was captured. A pcapng simple packet block has no timestamp and gets
    /// the previous packet's (the epoch if it is the first).
    pub ts: Timestamp,
    /// Link-layer type of the interface the packet was captured on.
    pub link_type: LinkType,
    /// The captured bytes (possibly fewer than `orig_len`).
    pub data: &'a [u8],
    /// The packet's length on the wire.
    pub orig_len: u32,
    /// Interface number within the pcapng section (0 for pcap).
    pub interface: u32,
}

/// Timestamp resolution of a pcapng interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TsResol {
    /// Units of 10^-n seconds.
    Pow10(u8),
    /// Units of 2^-n seconds.
    Pow2(u8),
}

impl TsResol {
    fn from_option(v: u8) -> TsResol {
        if v & 0x80 == 0 {
            TsResol::Pow10(v)
        } else {
            TsResol::Pow2(v & 0x7f)
        }
    }

    /// Converts a count of units to nanoseconds, exactly where it can and rounding down where
    /// a unit is finer than a nanosecond.
    fn to_nanos(self, units: u64) -> i128 {
        let units = u128::from(units);
        match self {
            TsResol::Pow10(n) if n <= 9 => (units * 10u128.pow(9 - u32::from(n))) as i128,
            // 10^39 does not fit in a u128, but a u64 count of such units is 0 ns anyway.
            TsResol::Pow10(n) => 10u128.checked_pow(u32::from(n) - 9).map_or(0, |d| (units / d) as i128),
            // The product is below 2^94, and the shift is at most 127.
            TsResol::Pow2(n) => ((units * 1_000_000_000) >> n) as i128,
        }
    }
}

/// What the reader keeps of a pcapng interface description.
#[derive(Clone, Copy, Debug)]
struct Interface {
    link_type: LinkType,
    snaplen: u32,
    tsresol: TsResol,
    /// Seconds to add to every timestamp (`if_tsoffset`).
    tsoffset: i64,
}

/// A packet record found and consumed, with where its bytes are in the input.
struct Located {
    at: usize,
    len: usize,
    ts: Timestamp,
    link_type: LinkType,
    orig_len: u32,
    interface: u32,
}

impl Located {
    /// Where the frame numbered `number` is in the input's buffer.
    fn frame_ref(&self, number: u64) -> FrameRef {
        FrameRef {
            number,
            ts: self.ts,
            link_type: self.link_type,
            orig_len: self.orig_len,
            interface: self.interface,
            offset: self.at,
            len: self.len,
        }
    }
}

/// Where a frame of a capture held in memory is: what [`CaptureReader::next_shared_frame`]
/// returns instead of a borrowed [`Frame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRef {
    /// As [`Frame::number`].
    pub number: u64,
    /// As [`Frame::ts`].
    pub ts: Timestamp,
    /// As [`Frame::link_type`].
    pub link_type: LinkType,
    /// As [`Frame::orig_len`].
    pub orig_len: u32,
    /// As [`Frame::interface`].
    pub interface: u32,
    /// Where the captured bytes start in the [`SharedBytes`].
    pub offset: usize,
    /// How many bytes were captured.
    pub len: usize,
}

impl FrameRef {
    /// The frame, its bytes borrowed from `bytes`: the [`SharedBytes`] of the reader that
    /// returned it. Out of range (another reader's bytes), the frame holds no data.
    pub fn frame<'a>(&self, bytes: &'a [u8]) -> Frame<'a> {
        let data = self.offset.checked_add(self.len).and_then(|end| bytes.get(self.offset..end)).unwrap_or(&[]);
        Frame {
            number: self.number,
            ts: self.ts,
            link_type: self.link_type,
            data,
            orig_len: self.orig_len,
            interface: self.interface,
        }
    }
}

/// A frame from [`CaptureReader::next_shared_frame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedFrame<'a> {
    /// The frame is in the capture's [`SharedBytes`].
    At(FrameRef),
    /// The capture is a stream: here is the frame, valid until the next call.
    Here(Frame<'a>),
}

/// Reads pcap and pcapng captures, plain or gzip-compressed, one [`Frame`] at a time.
///
/// ```no_run
/// use callflow_decode::capture::CaptureReader;
///
/// let mut reader = CaptureReader::open("call.pcapng.gz")?;
/// let mut frames = 0;
/// while let Some(frame) = reader.next_frame()? {
///     frames += 1;
///     assert_eq!(frame.number, frames);
/// }
/// println!("{frames} frames, link types {:?}, format {}", reader.link_types(), reader.format());
/// # Ok::<(), callflow_decode::capture::CaptureError>(())
/// ```
pub struct CaptureReader {
    input: Input,
    format: CaptureFormat,
    total_bytes: Option<u64>,
    /// Byte order of the pcap file or of the current pcapng section.
    big_endian: bool,
    /// The pcap file's link type (unused for pcapng).
    pcap_link: LinkType,
    /// Whether the pcap file's records have their two lengths the other way round.
    lengths_swapped: LengthsSwapped,
    /// Interfaces of the current pcapng section, by interface id.
    interfaces: Vec<Interface>,
    link_types: Vec<LinkType>,
    /// Timestamp of the last packet, for simple packet blocks.
    last_ts: Timestamp,
    frames: u64,
    done: bool,
    /// Where the TLS key logs of Decryption Secrets Blocks go.
    tls_keys: SharedKeyLog,
}

impl fmt::Debug for CaptureReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureReader")
            .field("format", &self.format)
            .field("total_bytes", &self.total_bytes)
            .field("bytes_consumed", &self.bytes_consumed())
            .field("frames", &self.frames)
            .field("link_types", &self.link_types)
            .finish_non_exhaustive()
    }
}

impl CaptureReader {
    /// Opens a capture file: memory-mapped if plain, decompressed as a stream if gzip. A path
    /// that is not a regular file (a FIFO, `/dev/stdin`) is read as a stream.
    pub fn open(path: impl AsRef<Path>) -> Result<CaptureReader, CaptureError> {
        let file = File::open(path.as_ref())?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return CaptureReader::from_stream(Box::new(file), None);
        }
        let len = meta.len();
        if len == 0 {
            return Err(CaptureError::Empty);
        }
        // SAFETY: the map is read-only and private to this reader. If another process
        // truncates or rewrites the file while it is mapped, reads may see the new bytes or
        // fault (SIGBUS); that is the accepted price of zero-copy reading, as in every
        // mmap-based capture tool. No reference into the map outlives the reader.
        let map = unsafe { Mmap::map(&file)? };
        #[cfg(unix)]
        {
            // Only a hint to the kernel's read-ahead; reading works without it.
            let _ = map.advise(memmap2::Advice::Sequential);
        }
        if is_gzip(&map) {
            drop(map);
            let reader = BufReader::with_capacity(input::READ_SIZE / 4, file);
            let stream = Stream::new(Box::new(flate2::bufread::MultiGzDecoder::new(reader)), true);
            return CaptureReader::from_input(Input::Stream(stream), Some(len), true);
        }
        CaptureReader::from_input(
            Input::Whole { bytes: Arc::new(Whole::Map(map)), pos: 0, released: 0 },
            Some(len),
            false,
        )
    }

    /// Reads a capture from a stream such as `Box::new(std::io::stdin())`, plain or gzip.
    pub fn from_reader(r: Box<dyn Read + Send>) -> Result<CaptureReader, CaptureError> {
        CaptureReader::from_stream(r, None)
    }

    /// Reads a capture from a stream of a known size, plain or gzip: a file read through a
    /// wrapper of the caller's (one that counts the compressed bytes read, say).
    /// [`CaptureReader::total_bytes`] and the document's `source.bytes` are `total_bytes`,
    /// as for [`CaptureReader::open`].
    pub fn from_reader_with_size(r: Box<dyn Read + Send>, total_bytes: u64) -> Result<CaptureReader, CaptureError> {
        CaptureReader::from_stream(r, Some(total_bytes))
    }

    /// Reads a capture held in memory, plain or gzip.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<CaptureReader, CaptureError> {
        let len = bytes.len() as u64;
        if is_gzip(&bytes) {
            let reader = flate2::bufread::MultiGzDecoder::new(io::Cursor::new(bytes));
            let stream = Stream::new(Box::new(reader), true);
            return CaptureReader::from_input(Input::Stream(stream), Some(len), true);
        }
        CaptureReader::from_input(
            Input::Whole { bytes: Arc::new(Whole::Owned(bytes)), pos: 0, released: 0 },
            Some(len),
            false,
        )
    }

    /// Returns the next packet, `Ok(None)` at the end of the capture, or the error that stops
    /// reading (after which it returns `Ok(None)`).
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        let Some(located) = self.next_located()? else { return Ok(None) };
        Ok(Some(located.frame_ref(self.frames).frame(self.input.buffer())))
    }

    /// Like [`CaptureReader::next_frame`], but a frame of a capture held whole in memory (a
    /// plain file, or bytes given) comes as a [`FrameRef`] into
    /// [`CaptureReader::shared_bytes`] instead of a borrow of the reader, so other threads
    /// can decode frames while this one reads on, without copying them. A stream's frame
    /// comes as a [`Frame`], valid until the next call.
    pub fn next_shared_frame(&mut self) -> Result<Option<SharedFrame<'_>>, CaptureError> {
        let Some(located) = self.next_located()? else { return Ok(None) };
        let at = located.frame_ref(self.frames);
        Ok(Some(match self.input {
            Input::Stream(_) => SharedFrame::Here(at.frame(self.input.buffer())),
            Input::Whole { .. } => SharedFrame::At(at),
        }))
    }

    /// The bytes of a capture held whole in memory (a plain file, or bytes given), shared so
    /// that other threads can read the frames [`CaptureReader::next_shared_frame`] points
    /// at; `None` for a stream.
    pub fn shared_bytes(&self) -> Option<SharedBytes> {
        self.input.shared()
    }

    fn next_located(&mut self) -> Result<Option<Located>, CaptureError> {
        if self.done {
            return Ok(None);
        }
        self.input.release_consumed();
        let found = match self.format {
            CaptureFormat::Pcap { .. } => self.next_pcap_record(),
            CaptureFormat::PcapNg { .. } => self.next_pcapng_packet(),
        };
        match found {
            Ok(Some(located)) => {
                self.frames += 1;
                self.last_ts = located.ts;
                Ok(Some(located))
            }
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }

    /// Size of the file (compressed size for gzip) or of the bytes given; `None` for streams.
    pub fn total_bytes(&self) -> Option<u64> {
        self.total_bytes
    }

    /// Bytes of the (decompressed) capture read so far, headers included.
    pub fn bytes_consumed(&self) -> u64 {
        self.input.pos()
    }

    /// The distinct link types of the interfaces seen so far, in the order first seen.
    pub fn link_types(&self) -> &[LinkType] {
        &self.link_types
    }

    /// The container format, as recognised from the magic number.
    pub fn format(&self) -> CaptureFormat {
        self.format
    }

    /// Frames returned so far.
    pub fn frames_read(&self) -> u64 {
        self.frames
    }

    fn from_stream(r: Box<dyn Read + Send>, total_bytes: Option<u64>) -> Result<CaptureReader, CaptureError> {
        let mut plain = Stream::new(r, false);
        plain.fill(2);
        if is_gzip(plain.peek()) {
            let reader = BufReader::with_capacity(input::READ_SIZE / 4, plain.into_reader());
            let gz = Stream::new(Box::new(flate2::bufread::MultiGzDecoder::new(reader)), true);
            return CaptureReader::from_input(Input::Stream(gz), total_bytes, true);
        }
        CaptureReader::from_input(Input::Stream(plain), total_bytes, false)
    }

    /// Recognises the format by its magic number and reads the pcap file header (a pcapng
    /// section header is read as the first block by `next_frame`).
    fn from_input(mut input: Input, total_bytes: Option<u64>, gzip: bool) -> Result<CaptureReader, CaptureError> {
        let available = input.fill(4);
        if available == 0 {
            return Err(match input.take_error() {
                Some(e) => read_error(&input, e, 0, 4, 0),
                None => CaptureError::Empty,
            });
        }
        require(&mut input, 0, 4)?;
        let magic = rd32(input.peek(), 0, true);
        let mut reader = CaptureReader {
            input,
            format: CaptureFormat::PcapNg { big_endian: false, gzip },
            total_bytes,
            big_endian: false,
            pcap_link: LinkType(0),
            lengths_swapped: LengthsSwapped::No,
            interfaces: Vec::new(),
            link_types: Vec::new(),
            last_ts: Timestamp::from_nanos(0),
            frames: 0,
            done: false,
            tls_keys: SharedKeyLog::default(),
        };
        let (nanosecond, big_endian) = match magic {
            0xA1B2_C3D4 => (false, true),
            0xD4C3_B2A1 => (false, false),
            0xA1B2_3C4D => (true, true),
            0x4D3C_B2A1 => (true, false),
            PCAPNG_SHB => {
                require(&mut reader.input, 0, 12)?;
                reader.big_endian = section_byte_order(reader.input.peek(), 0)?;
                reader.format = CaptureFormat::PcapNg { big_endian: reader.big_endian, gzip };
                return Ok(reader);
            }
            _ => return Err(CaptureError::NotACapture { magic, offset: 0 }),
        };
        require(&mut reader.input, 0, PCAP_HEADER_LEN)?;
        let header = reader.input.peek();
        let link = LinkType(rd32(header, 20, big_endian) & 0x03FF_FFFF);
        reader.lengths_swapped = LengthsSwapped::of_version(rd16(header, 4, big_endian), rd16(header, 6, big_endian));
        reader.input.advance(PCAP_HEADER_LEN);
        reader.format = CaptureFormat::Pcap { nanosecond, big_endian, gzip };
        reader.big_endian = big_endian;
        reader.pcap_link = link;
        reader.link_types.push(link);
        Ok(reader)
    }

    fn next_pcap_record(&mut self) -> Result<Option<Located>, CaptureError> {
        let offset = self.input.pos();
        if !at_record(&mut self.input, offset, PCAP_RECORD_HEADER_LEN)? {
            return Ok(None);
        }
        let big = self.big_endian;
        let header = self.input.peek();
        let secs = rd32(header, 0, big);
        let frac = rd32(header, 4, big);
        let (mut caplen, mut orig_len) = (rd32(header, 8, big), rd32(header, 12, big));
        if self.lengths_swapped == LengthsSwapped::Yes
            || (self.lengths_swapped == LengthsSwapped::Maybe && caplen > orig_len)
        {
            (caplen, orig_len) = (orig_len, caplen);
        }
        if caplen > MAX_CAPLEN {
            return Err(corrupt(offset, format!("captured length {caplen} exceeds the {MAX_CAPLEN}-byte bound")));
        }
        let total = PCAP_RECORD_HEADER_LEN + caplen as usize;
        require(&mut self.input, offset, total)?;
        let at = self.input.advance(total);
        let frac_nanos = match self.format {
            CaptureFormat::Pcap { nanosecond: true, .. } => i64::from(frac),
            _ => i64::from(frac) * 1000,
        };
        // A fraction of a second out of range (a broken writer) carries into the seconds
        // rather than being dropped.
        let ts = Timestamp::from_nanos(i64::from(secs) * 1_000_000_000 + frac_nanos);
        Ok(Some(Located {
            at: at + PCAP_RECORD_HEADER_LEN,
            len: caplen as usize,
            ts,
            link_type: self.pcap_link,
            orig_len,
            interface: 0,
        }))
    }

    /// The key log the TLS secrets of the capture's pcapng Decryption Secrets Blocks are
    /// added to, as they are read.
    pub fn tls_keys(&self) -> &SharedKeyLog {
        &self.tls_keys
    }

    /// Adds the TLS secrets of the Decryption Secrets Blocks read from now on to `keys`
    /// (the analysis's key log) instead.
    pub fn share_tls_keys(&mut self, keys: SharedKeyLog) {
        self.tls_keys = keys;
    }

    /// Reads pcapng blocks until a packet block, handling section headers and interface
    /// descriptions on the way and skipping everything else.
    fn next_pcapng_packet(&mut self) -> Result<Option<Located>, CaptureError> {
        loop {
            let offset = self.input.pos();
            if !at_record(&mut self.input, offset, 8)? {
                return Ok(None);
            }
            let head = self.input.peek();
            if rd32(head, 0, true) == PCAPNG_SHB {
                // A new section may switch byte order: its length can only be read once the
                // byte-order magic after it is known.
                require(&mut self.input, offset, 12)?;
                self.big_endian = section_byte_order(self.input.peek(), offset)?;
            }
            let big = self.big_endian;
            let head = self.input.peek();
            let block_type = rd32(head, 0, big);
            let block_len = rd32(head, 4, big);
            if block_len < 12 {
                return Err(corrupt(offset, format!("pcapng block length {block_len} is less than 12")));
            }
            if !block_len.is_multiple_of(4) {
                return Err(corrupt(offset, format!("pcapng block length {block_len} is not a multiple of 4")));
            }
            if block_len > MAX_BLOCK_LEN {
                return Err(corrupt(
                    offset,
                    format!("pcapng block length {block_len} exceeds the {MAX_BLOCK_LEN}-byte bound"),
                ));
            }
            let len = block_len as usize;
            require(&mut self.input, offset, len)?;
            let block = self.input.peek().get(..len).unwrap_or(&[]);
            let trailer = rd32(block, len - 4, big);
            if trailer != block_len {
                return Err(corrupt(
                    offset,
                    format!("pcapng block length {block_len} does not match the trailing length {trailer}"),
                ));
            }
            let body = block.get(8..len - 4).unwrap_or(&[]);
            let packet = match block_type {
                PCAPNG_SHB => {
                    let (major, minor) = (rd16(body, 4, big), rd16(body, 6, big));
                    if major != 1 {
                        return Err(corrupt(offset, format!("unsupported pcapng version {major}.{minor}")));
                    }
                    self.interfaces.clear();
                    None
                }
                PCAPNG_IDB => {
                    if body.len() < 8 {
                        return Err(corrupt(offset, "interface description block shorter than 20 bytes"));
                    }
                    if self.interfaces.len() >= MAX_INTERFACES {
                        return Err(corrupt(offset, format!("more than {MAX_INTERFACES} interfaces in one section")));
                    }
                    let interface = parse_interface(body, big);
                    if !self.link_types.contains(&interface.link_type) {
                        self.link_types.push(interface.link_type);
                    }
                    self.interfaces.push(interface);
                    None
                }
                PCAPNG_EPB | PCAPNG_OPB => {
                    if body.len() < 20 {
                        return Err(corrupt(offset, "packet block shorter than its 20-byte fixed part"));
                    }
                    let interface =
                        if block_type == PCAPNG_EPB { rd32(body, 0, big) } else { u32::from(rd16(body, 0, big)) };
                    let Some(desc) = self.interfaces.get(interface as usize) else {
                        return Err(corrupt(offset, format!("packet on undescribed interface {interface}")));
                    };
                    let units = (u64::from(rd32(body, 4, big)) << 32) | u64::from(rd32(body, 8, big));
                    let caplen = rd32(body, 12, big);
                    let orig_len = rd32(body, 16, big);
                    if caplen > MAX_CAPLEN {
                        return Err(corrupt(
                            offset,
                            format!("captured length {caplen} exceeds the {MAX_CAPLEN}-byte bound"),
                        ));
                    }
                    if caplen as usize > body.len() - 20 {
                        return Err(corrupt(
                            offset,
                            format!("captured length {caplen} runs past the end of the block"),
                        ));
                    }
                    let nanos = desc.tsresol.to_nanos(units) + i128::from(desc.tsoffset) * 1_000_000_000;
                    let ts = Timestamp::from_nanos(nanos.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64);
                    Some((28, caplen, orig_len, ts, desc.link_type, interface))
                }
                PCAPNG_SPB => {
                    if body.len() < 4 {
                        return Err(corrupt(offset, "simple packet block shorter than 16 bytes"));
                    }
                    let Some(desc) = self.interfaces.first() else {
                        return Err(corrupt(offset, "simple packet block before any interface description"));
                    };
                    let orig_len = rd32(body, 0, big);
                    let mut caplen = orig_len.min((body.len() - 4) as u32);
                    if desc.snaplen != 0 {
                        caplen = caplen.min(desc.snaplen);
                    }
                    if caplen > MAX_CAPLEN {
                        return Err(corrupt(
                            offset,
                            format!("captured length {caplen} exceeds the {MAX_CAPLEN}-byte bound"),
                        ));
                    }
                    Some((12, caplen, orig_len, self.last_ts, desc.link_type, 0))
                }
                PCAPNG_DSB => {
                    let (kind, secrets_len) = (rd32(body, 0, big), rd32(body, 4, big) as usize);
                    // A secrets length past the block damages this block only: its framing is
                    // sound, so it is skipped like an unknown block and reading goes on.
                    if let Some(secrets) = body.get(8..).and_then(|b| b.get(..secrets_len)) {
                        if kind == DSB_TLS_KEY_LOG {
                            self.tls_keys.add(secrets);
                        }
                    }
                    None
                }
                _ => None,
            };
            let at = self.input.advance(len);
            if let Some((data_offset, caplen, orig_len, ts, link_type, interface)) = packet {
                return Ok(Some(Located {
                    at: at + data_offset,
                    len: caplen as usize,
                    ts,
                    link_type,
                    orig_len,
                    interface,
                }));
            }
        }
    }
}

fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Reads the byte order of the section header block at the start of `block`.
fn section_byte_order(block: &[u8], offset: u64) -> Result<bool, CaptureError> {
    match rd32(block, 8, true) {
        PCAPNG_BYTE_ORDER_MAGIC => Ok(true),
        0x4D3C_2B1A => Ok(false),
        other => Err(corrupt(offset, format!("bad pcapng byte-order magic 0x{other:08x}"))),
    }
}

/// Reads an interface description block's body: link type, snap length and the two options
/// that change timestamps. A malformed option ends the option list rather than the capture.
fn parse_interface(body: &[u8], big: bool) -> Interface {
    let mut interface = Interface {
        link_type: LinkType(u32::from(rd16(body, 0, big))),
        snaplen: rd32(body, 4, big),
        tsresol: TsResol::Pow10(6),
        tsoffset: 0,
    };
    let mut pos = 8;
    while let (Some(code), Some(len)) = (rd16_opt(body, pos, big), rd16_opt(body, pos + 2, big)) {
        let len = usize::from(len);
        let Some(value) = body.get(pos + 4..pos + 4 + len) else { break };
        match code {
            OPT_END => break,
            OPT_IF_TSRESOL => {
                if let &[v] = value {
                    interface.tsresol = TsResol::from_option(v);
                }
            }
            OPT_IF_TSOFFSET if len == 8 => {
                let raw = rd32(value, 0, big);
                let raw2 = rd32(value, 4, big);
                let (hi, lo) = if big { (raw, raw2) } else { (raw2, raw) };
                interface.tsoffset = ((u64::from(hi) << 32) | u64::from(lo)) as i64;
            }
            _ => {}
        }
        pos += 4 + len.div_ceil(4) * 4;
    }
    interface
}

/// Checks that `n` bytes from the current position (`offset`) are there, or says why not.
fn require(input: &mut Input, offset: u64, n: usize) -> Result<(), CaptureError> {
    let available = input.fill(n);
    if available >= n {
        return Ok(());
    }
    Err(match input.take_error() {
        Some(e) => read_error(input, e, offset, n, available),
        None => CaptureError::Truncated { offset, needed: n as u64, available: available as u64 },
    })
}

/// Like [`require`], but `Ok(false)` when the capture ends cleanly right here.
fn at_record(input: &mut Input, offset: u64, n: usize) -> Result<bool, CaptureError> {
    if input.fill(n) == 0 {
        return match input.take_error() {
            Some(e) => Err(read_error(input, e, offset, n, 0)),
            None => Ok(false),
        };
    }
    require(input, offset, n).map(|()| true)
}

/// An I/O error that says where in the (decompressed) capture reading broke off.
fn read_error(input: &Input, e: io::Error, offset: u64, needed: usize, available: usize) -> CaptureError {
    let broke_at = offset + available as u64;
    let place = if input.is_gzip() {
        format!("decompressing the capture failed at offset {broke_at} of the decompressed stream")
    } else {
        format!("reading the capture failed at offset {broke_at}")
    };
    CaptureError::Io(io::Error::new(
        e.kind(),
        format!("{place} (record at offset {offset} needs {needed} bytes, {available} available): {e}"),
    ))
}

/// libpcap before 0.4 wrote a record's captured and original lengths the other way round:
/// files of format version 2.2 and older always, 2.3 sometimes (libpcap swaps them back
/// when the captured length is the larger, and so does this reader, as tshark and
/// ndpiReader do through libpcap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LengthsSwapped {
    No,
    Maybe,
    Yes,
}

impl LengthsSwapped {
    fn of_version(major: u16, minor: u16) -> Self {
        match (major, minor) {
            (2, 0..=2) => LengthsSwapped::Yes,
            (2, 3) => LengthsSwapped::Maybe,
            _ => LengthsSwapped::No,
        }
    }
}

fn rd32(b: &[u8], at: usize, big: bool) -> u32 {
    match b.get(at..at + 4) {
        Some(&[b0, b1, b2, b3]) if big => u32::from_be_bytes([b0, b1, b2, b3]),
        Some(&[b0, b1, b2, b3]) => u32::from_le_bytes([b0, b1, b2, b3]),
        _ => 0,
    }
}

fn rd16(b: &[u8], at: usize, big: bool) -> u16 {
    rd16_opt(b, at, big).unwrap_or(0)
}

fn rd16_opt(b: &[u8], at: usize, big: bool) -> Option<u16> {
    match b.get(at..at + 2) {
        Some(&[b0, b1]) if big => Some(u16::from_be_bytes([b0, b1])),
        Some(&[b0, b1]) => Some(u16::from_le_bytes([b0, b1])),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
