//! SCTP user messages: DATA chunks put back together per stream by TSN and the B/E flags (I-DATA by message id and fragment number), bounded in size and time.
//!
//! A user message larger than the path MTU is cut into fragments (RFC 9260 section 6.9):
//! the first has the B flag, the last the E flag, and the fragments of one message take
//! consecutive TSNs (RFC 8260's I-DATA numbers them by message id and fragment sequence
//! instead, so fragments of different streams may interleave). A whole message, B and E
//! set, is handed on at once without a copy; fragments are collected per direction and
//! stream until the E fragment. A gap (a fragment lost before the capture point) drops the
//! message being collected; a retransmitted fragment is ignored.

use callflow_decode::sctp::DataChunk;
use callflow_decode::Timestamp;
use std::collections::HashMap;
use std::net::SocketAddr;

/// Most messages collected at once; the first fragment of another one is dropped.
const MAX_PARTIAL: usize = 4096;

/// Identifies the stream a fragment belongs to: tunnel number, direction, stream, and for
/// I-DATA the message id (DATA: `None`, its fragments never interleave within a stream).
type StreamKey = (u32, SocketAddr, SocketAddr, u16, Option<u32>);

/// A message being collected.
#[derive(Debug)]
struct Partial {
    /// TSN (DATA) or fragment sequence number (I-DATA) of the last fragment taken.
    last: u32,
    bytes: Vec<u8>,
    seen: Timestamp,
}

/// Collects the fragments of SCTP user messages.
#[derive(Debug)]
pub(crate) struct SctpMessages {
    partial: HashMap<StreamKey, Partial>,
    /// Most bytes of one message; a longer one is dropped.
    max_message: usize,
}

/// What a DATA chunk completes.
pub(crate) enum Message<'a> {
    /// A whole message in one chunk.
    Whole(&'a [u8]),
    /// The last fragment of a message, reassembled.
    Reassembled(Vec<u8>),
    /// Nothing yet (a first or middle fragment), or nothing usable (a fragment after a gap).
    Pending,
}

impl SctpMessages {
    pub fn new(max_message: usize) -> SctpMessages {
        SctpMessages { partial: HashMap::new(), max_message }
    }

    /// Takes one DATA or I-DATA chunk sent from `src` to `dst` (in tunnel `context`) at `ts`.
    pub fn push<'a>(
        &mut self,
        (context, src, dst): (u32, SocketAddr, SocketAddr),
        chunk: &DataChunk<'a>,
        ts: Timestamp,
    ) -> Message<'a> {
        if chunk.begin && chunk.end {
            return Message::Whole(chunk.payload);
        }
        let key = (context, src, dst, chunk.stream_id, chunk.message_id);
        // DATA fragments follow each other by TSN; I-DATA ones by fragment number, the first
        // being number 0.
        let number = match chunk.message_id {
            Some(_) => chunk.fragment_seq.unwrap_or(0),
            None => chunk.tsn,
        };
        if chunk.begin {
            let bytes = chunk.payload.to_vec();
            if bytes.len() <= self.max_message && (self.partial.len() < MAX_PARTIAL || self.partial.contains_key(&key))
            {
                self.partial.insert(key, Partial { last: number, bytes, seen: ts });
            }
            return Message::Pending;
        }
        let Some(partial) = self.partial.get_mut(&key) else { return Message::Pending };
        if number == partial.last {
            // A retransmission of the fragment already taken.
            return Message::Pending;
        }
        if number != partial.last.wrapping_add(1) || partial.bytes.len() + chunk.payload.len() > self.max_message {
            self.partial.remove(&key);
            return Message::Pending;
        }
        partial.bytes.extend_from_slice(chunk.payload);
        partial.last = number;
        partial.seen = ts;
        if !chunk.end {
            return Message::Pending;
        }
        self.partial.remove(&key).map_or(Message::Pending, |done| Message::Reassembled(done.bytes))
    }

    /// Drops the messages whose last fragment came before `cutoff`.
    pub fn expire(&mut self, cutoff: Timestamp) {
        self.partial.retain(|_, p| p.seen >= cutoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(tsn: u32, stream_id: u16, begin: bool, end: bool, payload: &[u8]) -> DataChunk<'_> {
        DataChunk {
            tsn,
            stream_id,
            stream_seq: 0,
            ppid: 0,
            begin,
            end,
            unordered: false,
            message_id: None,
            fragment_seq: None,
            payload,
        }
    }

    /// Feeds chunks in order and lists what each gave: the message, or "-".
    fn check(chunks: &[DataChunk<'_>], expected: &[&str]) {
        let mut messages = SctpMessages::new(16);
        let dir = (0, "10.0.0.1:5060".parse().unwrap(), "10.0.0.2:5060".parse().unwrap());
        let got: Vec<String> = chunks
            .iter()
            .map(|c| match messages.push(dir, c, Timestamp::default()) {
                Message::Whole(m) => format!("whole {}", String::from_utf8_lossy(m)),
                Message::Reassembled(m) => format!("reassembled {}", String::from_utf8_lossy(&m)),
                Message::Pending => "-".to_string(),
            })
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn fragments_of_a_message_are_put_back_together_by_tsn() {
        check(&[data(1, 0, true, true, b"INVITE")], &["whole INVITE"]);
        check(
            &[data(7, 0, true, false, b"IN"), data(8, 0, false, false, b"VI"), data(9, 0, false, true, b"TE")],
            &["-", "-", "reassembled INVITE"],
        );
        // A whole message of another stream between the fragments, and a retransmission.
        check(
            &[
                data(7, 1, true, false, b"IN"),
                data(8, 2, true, true, b"BYE"),
                data(7, 1, true, false, b"IN"),
                data(9, 1, false, true, b"VITE"),
            ],
            &["-", "whole BYE", "-", "-"],
        );
        check(
            &[data(7, 1, true, false, b"IN"), data(7, 1, false, false, b"IN"), data(8, 1, false, true, b"VITE")],
            &["-", "-", "reassembled INVITE"],
        );
    }

    #[test]
    fn a_gap_or_an_oversized_message_drops_the_message() {
        check(&[data(7, 0, true, false, b"IN"), data(9, 0, false, true, b"TE")], &["-", "-"]);
        check(&[data(9, 0, false, true, b"TE")], &["-"]);
        check(&[data(1, 0, true, false, b"0123456789"), data(2, 0, false, true, b"0123456789")], &["-", "-"]);
    }

    #[test]
    fn i_data_fragments_follow_their_message_id() {
        let idata = |message_id, fragment_seq, begin, end, payload| DataChunk {
            message_id: Some(message_id),
            fragment_seq,
            ..data(0, 3, begin, end, payload)
        };
        check(
            &[
                idata(1, None, true, false, b"IN"),
                idata(2, None, true, false, b"B"),
                idata(1, Some(1), false, true, b"VITE"),
                idata(2, Some(1), false, true, b"YE"),
            ],
            &["-", "-", "reassembled INVITE", "reassembled BYE"],
        );
    }
}
