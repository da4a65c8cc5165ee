//! What a live job keeps of its traffic: rotating pcap files bounded by size and age, and the list a reader cuts a call's packets from.
//!
//! A live job's traffic cannot be read again, so its frames are written, as the analysis
//! pulls them, to a directory of its own: one pcap file (nanosecond timestamps, written
//! with `pcap-file`) at a time, named after the number of its first frame
//! (`00000000000000000001.pcap`; the file header by `pcap-file`, each record its
//! 16-byte header in native byte order and the bytes), so that the frame numbers the sessions name can be
//! found again across files ([`retained_parts`]). A file is closed and the next begun when
//! it passes `segment_bytes`, when it has spanned a quarter of `max_age`, or when a frame
//! of another link type comes (pcap has one per file). The oldest closed files are deleted
//! while they hold more than `max_bytes` less `segment_bytes` (room for the open file to
//! grow, so that what is kept never passes `max_bytes`), and when their last packet is older than
//! `max_age` against the newest packet (capture time, so a replayed capture ages as it was
//! captured). Writes are buffered and flushed every [`FLUSH_EVERY`], so a call's packets
//! are in the files by the time its session is reported.

use callflow_decode::capture::Frame;
use callflow_decode::LinkType;
use pcap_file::pcap::PcapHeader;
use pcap_file::{DataLink, Endianness, TsResolution};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the open file's buffer is written out.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// The snapshot length written in each file's header: the decoder's bound on a record.
const SNAPLEN: u32 = 256 * 1024;
/// A pcap file header's size, and a record header's.
const FILE_HEADER: u64 = 24;
const RECORD_HEADER: u64 = 16;

/// The bounds on what a live job keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetainLimits {
    /// A file is closed past this many bytes.
    pub segment_bytes: u64,
    /// The oldest files go while the job keeps more than this.
    pub max_bytes: u64,
    /// Files whose last packet is older than this, against the newest, go.
    pub max_age: Duration,
}

/// One retained file: where it is and the number of its first frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetainedPart {
    /// The pcap file.
    pub path: PathBuf,
    /// The job's number of its first frame (frames are numbered from 1 over the whole job).
    pub first_frame: u64,
}

/// The files a live job keeps in `dir`, oldest first. A directory that does not exist
/// holds none.
pub fn retained_parts(dir: &Path) -> std::io::Result<Vec<RetainedPart>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut parts: Vec<RetainedPart> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let first_frame = name.to_str()?.strip_suffix(".pcap")?.parse().ok()?;
            Some(RetainedPart { path: e.path(), first_frame })
        })
        .collect();
    parts.sort_by_key(|p| p.first_frame);
    Ok(parts)
}

/// A file closed or being written.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    first_ts: i64,
    last_ts: i64,
    bytes: u64,
}

struct Open {
    segment: Segment,
    link: LinkType,
    writer: BufWriter<File>,
}

/// Writes a live job's frames into its rotating files; see the module documentation.
pub(crate) struct Retainer {
    dir: PathBuf,
    limits: RetainLimits,
    closed: VecDeque<Segment>,
    open: Option<Open>,
    newest_ts: i64,
    last_flush: Instant,
}

impl Retainer {
    /// Keeps frames in `dir` (created) within `limits`.
    pub(crate) fn new(dir: &Path, limits: RetainLimits) -> std::io::Result<Retainer> {
        std::fs::create_dir_all(dir)?;
        Ok(Retainer {
            dir: dir.to_path_buf(),
            limits,
            closed: VecDeque::new(),
            open: None,
            newest_ts: i64::MIN,
            last_flush: Instant::now(),
        })
    }

    /// Bytes kept now (closed files and the open one) and how many files.
    pub(crate) fn kept(&self) -> (u64, u64) {
        let open = self.open.as_ref().map_or(0, |o| o.segment.bytes);
        let bytes = self.closed.iter().map(|s| s.bytes).sum::<u64>() + open;
        (bytes, self.closed.len() as u64 + u64::from(self.open.is_some()))
    }

    /// The capture time of the oldest packet kept, in nanoseconds.
    pub(crate) fn kept_since(&self) -> Option<i64> {
        self.closed.front().or(self.open.as_ref().map(|o| &o.segment)).map(|s| s.first_ts)
    }

    /// Keeps `frame`.
    pub(crate) fn write(&mut self, frame: &Frame<'_>) -> std::io::Result<()> {
        let ts = frame.ts.as_nanos();
        self.newest_ts = self.newest_ts.max(ts);
        let span = i64::try_from(self.limits.max_age.as_nanos() / 4).unwrap_or(i64::MAX);
        let data = &frame.data[..frame.data.len().min(SNAPLEN as usize)];
        let size = RECORD_HEADER + data.len() as u64;
        let rotate = self.open.as_ref().is_none_or(|o| {
            o.link != frame.link_type
                || o.segment.bytes + size > self.limits.segment_bytes
                || ts.saturating_sub(o.segment.first_ts) > span
        });
        if rotate {
            self.close()?;
            self.open_segment(frame)?;
        }
        let open = self.open.as_mut().expect("opened above");
        // Timestamps before 1970 or after 2106 do not fit pcap's unsigned 32-bit seconds.
        let secs = u64::try_from(ts.div_euclid(1_000_000_000)).unwrap_or(0).min(u64::from(u32::MAX));
        let nanos = ts.rem_euclid(1_000_000_000) as u32;
        let orig_len = frame.orig_len.max(frame.data.len() as u32);
        let mut record = [0u8; RECORD_HEADER as usize];
        for (i, field) in [secs as u32, nanos, data.len() as u32, orig_len].into_iter().enumerate() {
            record[i * 4..i * 4 + 4].copy_from_slice(&field.to_ne_bytes());
        }
        open.writer.write_all(&record)?;
        open.writer.write_all(data)?;
        open.segment.bytes += size;
        open.segment.last_ts = open.segment.last_ts.max(ts);
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.maintain()?;
        }
        Ok(())
    }

    /// Writes the open file's buffer out and deletes what is past the bounds; called
    /// every [`FLUSH_EVERY`] while frames come, and at each tick of a quiet source.
    pub(crate) fn maintain(&mut self) -> std::io::Result<()> {
        self.last_flush = Instant::now();
        if let Some(open) = &mut self.open {
            open.writer.flush()?;
        }
        let max_age = i64::try_from(self.limits.max_age.as_nanos()).unwrap_or(i64::MAX);
        // Room is left for the open file to grow to its full size, so that what is kept
        // never passes `max_bytes`, between two calls as well.
        let closed_max = self.limits.max_bytes.saturating_sub(self.limits.segment_bytes);
        let mut closed: u64 = self.closed.iter().map(|s| s.bytes).sum();
        while let Some(oldest) = self.closed.front() {
            let too_old = self.newest_ts.saturating_sub(oldest.last_ts) > max_age;
            if !too_old && closed <= closed_max {
                break;
            }
            closed -= oldest.bytes;
            let oldest = self.closed.pop_front().expect("looked at above");
            match std::fs::remove_file(&oldest.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    fn open_segment(&mut self, frame: &Frame<'_>) -> std::io::Result<()> {
        let path = self.dir.join(format!("{:020}.pcap", frame.number));
        let mut writer = BufWriter::with_capacity(256 * 1024, File::create(&path)?);
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: SNAPLEN,
            datalink: DataLink::from(frame.link_type.0),
            ts_resolution: TsResolution::NanoSecond,
            endianness: Endianness::native(),
        };
        header.write_to(&mut writer).map_err(std::io::Error::other)?;
        // The header is on disk at once: a reader never finds an empty file.
        writer.flush()?;
        let ts = frame.ts.as_nanos();
        let segment = Segment { path, first_ts: ts, last_ts: ts, bytes: FILE_HEADER };
        self.open = Some(Open { segment, link: frame.link_type, writer });
        self.maintain()
    }

    /// Closes the open file, if any.
    pub(crate) fn close(&mut self) -> std::io::Result<()> {
        if let Some(mut open) = self.open.take() {
            open.writer.flush()?;
            self.closed.push_back(open.segment);
        }
        Ok(())
    }
}

impl Drop for Retainer {
    fn drop(&mut self) {
        // Best effort: a write error was reported when it happened.
        let _ = self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callflow_decode::Timestamp;

    fn frame(number: u64, secs: i64, data: &[u8]) -> Frame<'_> {
        Frame {
            number,
            ts: Timestamp::from_parts(secs, 0),
            link_type: LinkType::ETHERNET,
            data,
            orig_len: data.len() as u32,
            interface: 0,
        }
    }

    fn limits(segment_bytes: u64, max_bytes: u64, max_age_secs: u64) -> RetainLimits {
        RetainLimits { segment_bytes, max_bytes, max_age: Duration::from_secs(max_age_secs) }
    }

    #[test]
    fn files_rotate_by_size_and_the_oldest_go_past_the_byte_bound() {
        let dir = tempfile::tempdir().unwrap();
        let data = [7u8; 1000];
        let mut r = Retainer::new(dir.path(), limits(4096, 10_000, 3600)).unwrap();
        for n in 1..=40 {
            r.write(&frame(n, 1_000, &data)).unwrap();
        }
        r.maintain().unwrap();
        let (bytes, files) = r.kept();
        assert!(bytes <= 10_000, "{bytes}");
        let parts = retained_parts(dir.path()).unwrap();
        assert_eq!(parts.len() as u64, files);
        // Four 1016-byte records fit a 4096-byte file after its header: files start every 4
        // frames, and one closed file (4088 bytes) leaves room for the open one to grow.
        let firsts: Vec<u64> = parts.iter().map(|p| p.first_frame).collect();
        assert_eq!(firsts, [33, 37]);
        let on_disk: u64 = parts.iter().map(|p| std::fs::metadata(&p.path).unwrap().len()).sum();
        assert_eq!(on_disk, bytes);
        // Each file is a capture whose frames are the ones its name says.
        let mut reader = callflow_decode::capture::CaptureReader::open(&parts[0].path).unwrap();
        let mut n = 0;
        while let Some(f) = reader.next_frame().unwrap() {
            assert_eq!(f.data, &data[..]);
            n += 1;
        }
        assert_eq!(n, 4);
    }

    #[test]
    fn files_older_than_max_age_go_and_a_file_spans_a_quarter_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Retainer::new(dir.path(), limits(1 << 20, 1 << 30, 400)).unwrap();
        for (n, secs) in [(1, 0), (2, 50), (3, 101), (4, 250), (5, 520)] {
            r.write(&frame(n, secs, b"x")).unwrap();
        }
        r.maintain().unwrap();
        // Spans of at most 100 s: [1, 2], [3], [4], [5]; [1, 2] ended 470 s before the
        // newest, [3] 419 s: both older than 400 s.
        let firsts: Vec<u64> = retained_parts(dir.path()).unwrap().iter().map(|p| p.first_frame).collect();
        assert_eq!(firsts, [4, 5]);
        assert_eq!(r.kept_since(), Some(250_000_000_000));
    }

    #[test]
    fn another_link_type_begins_another_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Retainer::new(dir.path(), limits(1 << 20, 1 << 30, 3600)).unwrap();
        r.write(&frame(1, 0, b"a")).unwrap();
        r.write(&Frame { link_type: LinkType::RAW, ..frame(2, 0, b"b") }).unwrap();
        assert_eq!(retained_parts(dir.path()).unwrap().len(), 2);
    }
}
