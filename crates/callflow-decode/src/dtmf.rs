//! RFC 4733 telephone events (DTMF digits and other tones carried as RTP payload).

use crate::{need, DecodeError, Layer};

/// One telephone-event payload: which event, whether it ended, its volume and duration.
///
/// A sender repeats the event in several packets with the same RTP timestamp and a
/// growing duration, and sends the final packet (E bit set) up to three times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: 0-9, 10 `*`, 11 `#`, 12-15 `A`-`D`, 16 flash, others from the registry.
    pub event: u8,
    /// The E bit: the event has ended.
    pub end: bool,
    /// The R bit, reserved: senders set it to 0, receivers ignore it.
    pub reserved: bool,
    /// Power level of the tone, in -dBm0 (0-63).
    pub volume: u8,
    /// Duration so far, in RTP timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses the first event of a telephone-event payload (4 bytes; RFC 4733 redundant
    /// events that may follow are ignored).
    ///
    /// Fewer than 4 bytes is [`DecodeError::Truncated`] at offset 0.
    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        need(Layer::TelephoneEvent, b, 0, 4)?;
        let Some(&[event, flags, dur_hi, dur_lo]) = b.get(..4) else {
            return Err(DecodeError::truncated(Layer::TelephoneEvent, 0, 4, b.len()));
        };
        Ok(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            reserved: flags & 0x40 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([dur_hi, dur_lo]),
        })
    }

    /// The DTMF key of the event: `0`-`9`, `*`, `#` or `A`-`D`; `None` for other events.
    pub fn digit(&self) -> Option<char> {
        match self.event {
            0..=9 => Some(char::from(b'0' + self.event)),
            10 => Some('*'),
            11 => Some('#'),
            12..=15 => Some(char::from(b'A' + self.event - 12)),
            _ => None,
        }
    }
}

/// A DTMF key sent in a SIP INFO body: `application/dtmf-relay` (`Signal=5` and
/// `Duration=160` lines, the duration in milliseconds) or `application/dtmf` (the key
/// alone, or the same `Signal=` form some senders use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InfoDtmf {
    /// The key: `0`-`9`, `*`, `#` or `A`-`D` (`16`, flash, is kept as `!`).
    pub digit: char,
    /// The duration in milliseconds, when given.
    pub duration_ms: Option<u32>,
}

impl InfoDtmf {
    /// Reads the key of an INFO body of type `content_type`; `None` for another type or a
    /// body without a key.
    pub fn parse(content_type: &str, body: &[u8]) -> Option<InfoDtmf> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        let relay = media.eq_ignore_ascii_case("application/dtmf-relay");
        if !relay && !media.eq_ignore_ascii_case("application/dtmf") {
            return None;
        }
        let text = std::str::from_utf8(body.get(..body.len().min(1024))?).ok()?;
        let key = |v: &str| {
            let v = v.trim();
            match v.as_bytes() {
                [c @ (b'0'..=b'9' | b'*' | b'#')] => Some(char::from(*c)),
                [c @ (b'A'..=b'D' | b'a'..=b'd')] => Some(char::from(c.to_ascii_uppercase())),
                [b'1', b'0'] => Some('*'),
                [b'1', b'1'] => Some('#'),
                [b'1', b'6'] => Some('!'),
                _ => None,
            }
        };
        let (mut digit, mut duration_ms) = (None, None);
        for line in text.lines() {
            match line.split_once('=') {
                Some((name, value)) if name.trim().eq_ignore_ascii_case("signal") => digit = key(value),
                Some((name, value)) if name.trim().eq_ignore_ascii_case("duration") => {
                    duration_ms = value.trim().parse().ok();
                }
                None if !relay && digit.is_none() => digit = key(line),
                _ => {}
            }
        }
        Some(InfoDtmf { digit: digit?, duration_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_bodies() {
        let check = |ct: &str, body: &str| InfoDtmf::parse(ct, body.as_bytes()).map(|d| (d.digit, d.duration_ms));
        assert_eq!(check("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"), Some(('5', Some(160))));
        assert_eq!(check("Application/DTMF-Relay; x=y", "signal= *\nDuration=250"), Some(('*', Some(250))));
        assert_eq!(check("application/dtmf-relay", "Signal=11\r\n"), Some(('#', None)));
        assert_eq!(check("application/dtmf", "7"), Some(('7', None)));
        assert_eq!(check("application/dtmf", "Signal=d\r\nDuration=100"), Some(('D', Some(100))));
        assert_eq!(check("application/dtmf-relay", "Duration=160"), None);
        assert_eq!(check("application/dtmf-relay", "Signal=55"), None);
        assert_eq!(check("application/sdp", "Signal=5"), None);
    }

    /// (event, end, reserved, volume, duration, digit).
    type Fields = (u8, bool, bool, u8, u16, Option<char>);

    fn check(input: &[u8], expected: Result<Fields, DecodeError>) {
        let got = TelephoneEvent::parse(input).map(|e| (e.event, e.end, e.reserved, e.volume, e.duration, e.digit()));
        assert_eq!(got, expected);
    }

    #[test]
    fn digit_start() {
        check(&[1, 0x0a, 0x00, 0xa0], Ok((1, false, false, 10, 160, Some('1'))));
    }

    #[test]
    fn end_of_event() {
        check(&[11, 0x8a, 0x03, 0x20], Ok((11, true, false, 10, 800, Some('#'))));
    }

    #[test]
    fn reserved_bit_and_full_volume() {
        check(&[10, 0x7f, 0xff, 0xff], Ok((10, false, true, 63, 65535, Some('*'))));
    }

    #[test]
    fn every_digit() {
        let digits: String = (0..=17)
            .map(|event| TelephoneEvent { event, end: false, reserved: false, volume: 0, duration: 0 })
            .map(|e| e.digit().unwrap_or('-'))
            .collect();
        assert_eq!(digits, "0123456789*#ABCD--");
    }

    #[test]
    fn flash_and_other_events_have_no_digit() {
        check(&[16, 0, 0, 0], Ok((16, false, false, 0, 0, None)));
        check(&[255, 0x80, 0, 1], Ok((255, true, false, 0, 1, None)));
    }

    #[test]
    fn redundant_events_after_the_first_are_ignored() {
        check(&[5, 0x8a, 0x01, 0x40, 5, 0x8a, 0x01, 0x40], Ok((5, true, false, 10, 320, Some('5'))));
    }

    #[test]
    fn truncated() {
        check(&[], Err(DecodeError::truncated(Layer::TelephoneEvent, 0, 4, 0)));
        check(&[1, 0x0a, 0x00], Err(DecodeError::truncated(Layer::TelephoneEvent, 0, 4, 3)));
    }
}
