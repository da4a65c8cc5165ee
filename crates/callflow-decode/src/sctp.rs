//! SCTP chunks: iterate over the chunks of a packet and read DATA / I-DATA chunks.
//!
//! [`crate::packet`] stops at the 12-byte common header and hands over the rest as
//! `chunks`; [`chunks`] walks them (each chunk is padded to a multiple of 4 bytes) and
//! [`data_chunk`] reads the user-message chunks that carry SIP, Diameter or SIGTRAN.

use crate::{need, DecodeError, Layer};

/// Chunk type of a DATA chunk (RFC 9260).
pub const DATA: u8 = 0;
/// Chunk type of an I-DATA chunk (RFC 8260).
pub const I_DATA: u8 = 64;

/// One chunk: its type, its flags and the bytes after its 4-byte header, without padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// Chunk type (0 DATA, 1 INIT, 3 SACK, 64 I-DATA, ...).
    pub chunk_type: u8,
    /// Chunk flags; their meaning depends on the type.
    pub flags: u8,
    /// The chunk value: `length - 4` bytes after the chunk header, padding excluded.
    pub value: &'a [u8],
    /// Offset of the chunk header in the buffer given to [`chunks`], for error messages.
    pub offset: usize,
}

/// Iterator over the chunks of an SCTP packet; see [`chunks`].
#[derive(Clone, Debug)]
pub struct Chunks<'a> {
    bytes: &'a [u8],
    offset: usize,
    failed: bool,
}

/// Iterates over the chunks in `bytes` (an SCTP packet after its 12-byte common header).
///
/// Each item is a chunk or the error that ended the walk: a chunk header cut short or a
/// length that runs past the buffer is [`DecodeError::Truncated`], a length below 4 is
/// [`DecodeError::Invalid`]. Nothing follows an error. Error offsets are relative to
/// `bytes`. The padding after the last chunk may be missing (some stacks omit it).
pub fn chunks(bytes: &[u8]) -> Chunks<'_> {
    Chunks { bytes, offset: 0, failed: false }
}

impl<'a> Chunks<'a> {
    fn next_chunk(&mut self) -> Result<Chunk<'a>, DecodeError> {
        let at = self.offset;
        let Some(&[chunk_type, flags, len_hi, len_lo]) = self.bytes.get(at..at + 4) else {
            return Err(DecodeError::truncated(Layer::Sctp, at, 4, self.bytes.len().saturating_sub(at)));
        };
        let length = usize::from(u16::from_be_bytes([len_hi, len_lo]));
        if length < 4 {
            return Err(DecodeError::invalid(Layer::Sctp, at + 2, "chunk length", "less than the 4-byte chunk header"));
        }
        need(Layer::Sctp, self.bytes, at, length)?;
        let value = self.bytes.get(at + 4..at + length).unwrap_or_default();
        // The padding to the next multiple of 4 is not counted in the length field.
        let padded = (length + 3) & !3;
        self.offset = (at + padded).min(self.bytes.len());
        Ok(Chunk { chunk_type, flags, value, offset: at })
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = Result<Chunk<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset >= self.bytes.len() {
            return None;
        }
        let chunk = self.next_chunk();
        self.failed = chunk.is_err();
        Some(chunk)
    }
}

/// A DATA (or I-DATA) chunk: one user message or a fragment of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataChunk<'a> {
    /// Transmission sequence number.
    pub tsn: u32,
    /// Stream identifier.
    pub stream_id: u16,
    /// Stream sequence number (DATA); 0 for I-DATA, which numbers messages with `message_id`.
    pub stream_seq: u16,
    /// Payload protocol identifier (3 M3UA, 46 Diameter, ...); 0 for an I-DATA chunk that
    /// continues a message (only the first fragment of an I-DATA message carries it).
    pub ppid: u32,
    /// B flag: first fragment of a user message.
    pub begin: bool,
    /// E flag: last fragment of a user message.
    pub end: bool,
    /// U flag: unordered delivery.
    pub unordered: bool,
    /// Message identifier of an I-DATA chunk; `None` for DATA.
    pub message_id: Option<u32>,
    /// Fragment sequence number of an I-DATA chunk that continues a message; `None` otherwise.
    pub fragment_seq: Option<u32>,
    /// User data, padding excluded.
    pub payload: &'a [u8],
}

/// Reads a DATA (type 0) or I-DATA (type 64) chunk; `None` for any other chunk type.
///
/// A chunk too short for its 16-byte (DATA) or 20-byte (I-DATA) header is a
/// [`DecodeError::Truncated`] whose offset is the chunk's offset in the buffer given to
/// [`chunks`] and whose lengths count the 4-byte chunk header.
pub fn data_chunk<'a>(c: &Chunk<'a>) -> Option<Result<DataChunk<'a>, DecodeError>> {
    let header = match c.chunk_type {
        DATA => 16,
        I_DATA => 20,
        _ => return None,
    };
    let value = c.value;
    if value.len() + 4 < header {
        return Some(Err(DecodeError::truncated(Layer::Sctp, c.offset, header, value.len() + 4)));
    }
    let be16 = |at: usize| value.get(at..at + 2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    let be32 = |at: usize| value.get(at..at + 4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let (begin, end, unordered) = (c.flags & 0x02 != 0, c.flags & 0x01 != 0, c.flags & 0x04 != 0);
    let mut chunk = DataChunk {
        tsn: be32(0),
        stream_id: be16(4),
        stream_seq: 0,
        ppid: 0,
        begin,
        end,
        unordered,
        message_id: None,
        fragment_seq: None,
        payload: value.get(header - 4..).unwrap_or_default(),
    };
    if c.chunk_type == DATA {
        chunk.stream_seq = be16(6);
        chunk.ppid = be32(8);
    } else {
        chunk.message_id = Some(be32(8));
        // The word after the message id is the PPID in a first fragment, the
        // fragment sequence number in the others.
        if begin {
            chunk.ppid = be32(12);
        } else {
            chunk.fragment_seq = Some(be32(12));
        }
    }
    Some(Ok(chunk))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One expected item of a walk: a chunk as (type, flags, value, offset), or the error.
    type Expected<'a> = Result<(u8, u8, &'a [u8], usize), DecodeError>;

    fn check(bytes: &[u8], expected: &[Expected<'_>]) {
        let expected: Vec<_> = expected
            .iter()
            .map(|e| e.clone().map(|(chunk_type, flags, value, offset)| Chunk { chunk_type, flags, value, offset }))
            .collect();
        assert_eq!(chunks(bytes).collect::<Vec<_>>(), expected);
    }

    #[test]
    fn empty_buffer_has_no_chunks() {
        check(&[], &[]);
    }

    #[test]
    fn several_chunks_with_padding() {
        let bytes = [
            3, 0, 0, 5, 0xaa, 0, 0, 0, // type 3, length 5: one value byte, three padding bytes
            4, 1, 0, 8, 1, 2, 3, 4, // length 8: no padding
            14, 0, 0, 4, // empty value
        ];
        check(&bytes, &[Ok((3, 0, &[0xaa], 0)), Ok((4, 1, &[1, 2, 3, 4], 8)), Ok((14, 0, &[], 16))]);
    }

    #[test]
    fn missing_padding_after_the_last_chunk_is_tolerated() {
        check(&[9, 0, 0, 6, 1, 2], &[Ok((9, 0, &[1, 2], 0))]);
    }

    #[test]
    fn truncated_chunk_ends_the_walk() {
        let bytes = [3, 0, 0, 4, 0, 0, 0, 20, 1, 2, 3, 4, 5, 6, 7, 8];
        check(&bytes, &[Ok((3, 0, &[], 0)), Err(DecodeError::truncated(Layer::Sctp, 4, 20, 12))]);
    }

    #[test]
    fn truncated_chunk_header() {
        check(&[3, 0, 0, 4, 0, 0], &[Ok((3, 0, &[], 0)), Err(DecodeError::truncated(Layer::Sctp, 4, 4, 2))]);
    }

    #[test]
    fn length_below_four_is_invalid() {
        check(
            &[1, 0, 0, 3, 0, 0, 0, 0],
            &[Err(DecodeError::invalid(Layer::Sctp, 2, "chunk length", "less than the 4-byte chunk header"))],
        );
    }

    fn data(chunk_type: u8, flags: u8, value: &[u8]) -> Option<Result<DataChunk<'_>, DecodeError>> {
        data_chunk(&Chunk { chunk_type, flags, value, offset: 8 })
    }

    #[test]
    fn data_chunk_fields() {
        let value = [0, 0, 0, 7, 0, 2, 0, 9, 0, 0, 0, 3, b'h', b'i'];
        let expected = DataChunk {
            tsn: 7,
            stream_id: 2,
            stream_seq: 9,
            ppid: 3,
            begin: true,
            end: true,
            unordered: false,
            message_id: None,
            fragment_seq: None,
            payload: b"hi",
        };
        assert_eq!(data(DATA, 0x03, &value), Some(Ok(expected)));
        let unordered_middle = data(DATA, 0x04, &value).unwrap().unwrap();
        assert_eq!((unordered_middle.begin, unordered_middle.end, unordered_middle.unordered), (false, false, true));
    }

    #[test]
    fn data_chunk_through_the_iterator() {
        let bytes = [0, 3, 0, 18, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 46, b'o', b'k', 0, 0, 3, 0, 0, 4];
        let got: Vec<_> = chunks(&bytes).filter_map(|c| data_chunk(&c.unwrap())).collect();
        assert_eq!(got.len(), 1);
        let d = got[0].clone().unwrap();
        assert_eq!((d.tsn, d.ppid, d.payload), (1, 46, &b"ok"[..]));
    }

    #[test]
    fn i_data_chunk_fields() {
        let first = [0, 0, 0, 7, 0, 2, 0, 0, 0, 0, 0, 5, 0, 0, 0, 46, b'x'];
        let d = data(I_DATA, 0x02, &first).unwrap().unwrap();
        assert_eq!(
            (d.tsn, d.stream_id, d.message_id, d.ppid, d.fragment_seq, d.payload),
            (7, 2, Some(5), 46, None, &b"x"[..])
        );
        let next = data(I_DATA, 0x01, &first).unwrap().unwrap();
        assert_eq!((next.ppid, next.fragment_seq, next.end), (0, Some(46), true));
    }

    #[test]
    fn short_data_chunks_are_truncated() {
        assert_eq!(data(DATA, 0, &[0; 11]), Some(Err(DecodeError::truncated(Layer::Sctp, 8, 16, 15))));
        assert_eq!(data(I_DATA, 0, &[0; 12]), Some(Err(DecodeError::truncated(Layer::Sctp, 8, 20, 16))));
        assert!(data(DATA, 0, &[0; 12]).unwrap().unwrap().payload.is_empty());
    }

    #[test]
    fn other_chunk_types_are_not_data() {
        assert_eq!(data(1, 0, &[0; 32]), None);
    }
}
