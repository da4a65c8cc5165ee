//! TLS key logs in the NSS format (what `SSLKEYLOGFILE` makes browsers, OpenSSL, rustls and SBCs write), keyed by client random.
//!
//! Each line is `LABEL <client random, 64 hex digits> <secret, hex>`. The labels read are
//! `CLIENT_RANDOM` (TLS 1.2's 48-byte master secret) and TLS 1.3's
//! `CLIENT_HANDSHAKE_TRAFFIC_SECRET`, `SERVER_HANDSHAKE_TRAFFIC_SECRET`,
//! `CLIENT_TRAFFIC_SECRET_0` and `SERVER_TRAFFIC_SECRET_0`. Other labels (early traffic,
//! exporter secrets, the `RSA` premaster form) and `#` comments are skipped; a line that
//! is none of these is counted with its number, so a user can be told which line was bad.
//!
//! A [`SharedKeyLog`] is one key log several owners add to and read: the analysis reads
//! it when a TLS connection needs keys, and a capture reader adds the secrets of the
//! pcapng Decryption Secrets Blocks it meets. It is consulted once per connection, never
//! per packet. A [`KeyLogTail`] follows a key log file that its writer keeps appending to
//! (a live analysis), adding the lines written since it last looked.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Most entries a key log keeps (each a client random and its secrets, about 300 bytes):
/// a hostile file cannot grow it past this.
pub const MAX_ENTRIES: usize = 1 << 20;

/// The secrets a key log holds for one client random (its `Debug` prints which are
/// there, never their bytes).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    /// TLS 1.2 (and earlier): the master secret (`CLIENT_RANDOM`).
    pub master_secret: Option<Vec<u8>>,
    /// TLS 1.3: `CLIENT_HANDSHAKE_TRAFFIC_SECRET`.
    pub client_handshake: Option<Vec<u8>>,
    /// TLS 1.3: `SERVER_HANDSHAKE_TRAFFIC_SECRET`.
    pub server_handshake: Option<Vec<u8>>,
    /// TLS 1.3: `CLIENT_TRAFFIC_SECRET_0`.
    pub client_traffic: Option<Vec<u8>>,
    /// TLS 1.3: `SERVER_TRAFFIC_SECRET_0`.
    pub server_traffic: Option<Vec<u8>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("master_secret", &self.master_secret.is_some())
            .field("client_handshake", &self.client_handshake.is_some())
            .field("server_handshake", &self.server_handshake.is_some())
            .field("client_traffic", &self.client_traffic.is_some())
            .field("server_traffic", &self.server_traffic.is_some())
            .finish()
    }
}

/// Why a line of a key log was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadLine {
    /// Fewer than three space-separated fields.
    MissingField,
    /// The client random is not 64 hex digits.
    BadClientRandom,
    /// The secret is not hex, or has an impossible length for its label.
    BadSecret,
    /// The label is none of the NSS format's.
    UnknownLabel,
}

impl BadLine {
    /// What is wrong, in words.
    pub fn as_str(self) -> &'static str {
        match self {
            BadLine::MissingField => "fewer than three fields",
            BadLine::BadClientRandom => "client random is not 64 hex digits",
            BadLine::BadSecret => "secret is not hex of a possible length",
            BadLine::UnknownLabel => "unknown label",
        }
    }
}

/// What adding a key log's text did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Added {
    /// Lines whose secret was taken.
    pub secrets: usize,
    /// Lines skipped on purpose (comments, blank lines, labels not used here).
    pub skipped: usize,
    /// Lines that were not key log lines, and the first of them (1-based number, reason).
    pub bad: usize,
    /// The first bad line: its number (1-based) and what was wrong.
    pub first_bad: Option<(usize, BadLine)>,
}

/// A key log a user gave that holds no usable secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no TLS secret in the key log ({bad} lines not in the NSS key log format{})", first_bad_text(*.first_bad))]
pub struct KeyLogError {
    /// Lines that were not key log lines.
    pub bad: usize,
    /// The first of them: its number (1-based) and what was wrong.
    pub first_bad: Option<(usize, BadLine)>,
}

fn first_bad_text(first: Option<(usize, BadLine)>) -> String {
    first.map_or_else(String::new, |(line, why)| format!("; line {line}: {}", why.as_str()))
}

/// Secrets by client random (its `Debug` prints how many, never the secrets).
#[derive(Clone, Default)]
pub struct KeyLog {
    by_random: HashMap<[u8; 32], Secrets>,
}

impl std::fmt::Debug for KeyLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLog").field("client_randoms", &self.by_random.len()).finish()
    }
}

/// The labels of the NSS format that other tools write and decryption here does not need.
const SKIPPED_LABELS: &[&str] = &[
    "RSA",
    "CLIENT_EARLY_TRAFFIC_SECRET",
    "EARLY_EXPORTER_SECRET",
    "EXPORTER_SECRET",
    "EARLY_EXPORTER_MASTER_SECRET",
    "EXPORTER_MASTER_SECRET",
];

impl KeyLog {
    /// An empty key log.
    pub fn new() -> Self {
        KeyLog::default()
    }

    /// A key log of `text` (see [`KeyLog::add`]).
    pub fn parse(text: &[u8]) -> (KeyLog, Added) {
        let mut log = KeyLog::new();
        let added = log.add(text);
        (log, added)
    }

    /// A key log a user gave: like [`KeyLog::parse`], but text with no usable secret at all
    /// is an error naming its first bad line (an empty file is an empty log).
    pub fn parse_given(text: &[u8]) -> Result<(KeyLog, Added), KeyLogError> {
        let (log, added) = KeyLog::parse(text);
        if added.secrets == 0 && added.bad > 0 {
            return Err(KeyLogError { bad: added.bad, first_bad: added.first_bad });
        }
        Ok((log, added))
    }

    /// Adds the lines of `text`; a later secret for the same client random and label
    /// replaces the earlier one.
    pub fn add(&mut self, text: &[u8]) -> Added {
        let mut added = Added::default();
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            match self.add_line(line) {
                Ok(true) => added.secrets += 1,
                Ok(false) => added.skipped += 1,
                Err(why) => {
                    added.bad += 1;
                    added.first_bad.get_or_insert((i + 1, why));
                }
            }
        }
        added
    }

    /// Adds one line: `Ok(true)` when a secret was taken, `Ok(false)` when the line is
    /// skipped on purpose.
    fn add_line(&mut self, line: &[u8]) -> Result<bool, BadLine> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            return Ok(false);
        }
        let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
        let (Some(label), Some(random), Some(secret)) = (fields.next(), fields.next(), fields.next()) else {
            return Err(BadLine::MissingField);
        };
        let label = std::str::from_utf8(label).map_err(|_| BadLine::UnknownLabel)?;
        if SKIPPED_LABELS.contains(&label) {
            return Ok(false);
        }
        // The label first: a line of another format is "unknown label", not a bad random.
        let (tls12, pick): (bool, Slot) = match label {
            "CLIENT_RANDOM" => (true, |s| &mut s.master_secret),
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET" => (false, |s| &mut s.client_handshake),
            "SERVER_HANDSHAKE_TRAFFIC_SECRET" => (false, |s| &mut s.server_handshake),
            "CLIENT_TRAFFIC_SECRET_0" => (false, |s| &mut s.client_traffic),
            "SERVER_TRAFFIC_SECRET_0" => (false, |s| &mut s.server_traffic),
            _ => return Err(BadLine::UnknownLabel),
        };
        let random: [u8; 32] = hex(random).and_then(|r| r.try_into().ok()).ok_or(BadLine::BadClientRandom)?;
        let secret = hex(secret).ok_or(BadLine::BadSecret)?;
        let length_ok = if tls12 { secret.len() == 48 } else { tls13_len(&secret) };
        if !length_ok {
            return Err(BadLine::BadSecret);
        }
        if self.by_random.len() >= MAX_ENTRIES && !self.by_random.contains_key(&random) {
            return Ok(false);
        }
        *pick(self.by_random.entry(random).or_default()) = Some(secret);
        Ok(true)
    }

    /// The secrets logged for `client_random`.
    pub fn get(&self, client_random: &[u8; 32]) -> Option<&Secrets> {
        self.by_random.get(client_random)
    }

    /// Client randoms with at least one secret.
    pub fn len(&self) -> usize {
        self.by_random.len()
    }

    /// Whether the log holds no secret.
    pub fn is_empty(&self) -> bool {
        self.by_random.is_empty()
    }
}

/// Where a label's secret goes in [`Secrets`].
type Slot = fn(&mut Secrets) -> &mut Option<Vec<u8>>;

/// TLS 1.3 secrets are a hash's length: 32 bytes (SHA-256) or 48 (SHA-384).
fn tls13_len(secret: &[u8]) -> bool {
    matches!(secret.len(), 32 | 48)
}

/// The bytes of an even-length hex string.
fn hex(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 256 {
        return None;
    }
    text.chunks_exact(2)
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16);
            Some((digit(*pair.first()?)? * 16 + digit(*pair.get(1)?)?) as u8)
        })
        .collect()
}

/// A key log shared between its writers (the user's file, a capture's Decryption Secrets
/// Blocks) and the analysis; cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct SharedKeyLog(Arc<RwLock<KeyLog>>);

impl SharedKeyLog {
    /// A shared log holding `log`.
    pub fn new(log: KeyLog) -> Self {
        SharedKeyLog(Arc::new(RwLock::new(log)))
    }

    /// Adds key log text (see [`KeyLog::add`]).
    pub fn add(&self, text: &[u8]) -> Added {
        match self.0.write() {
            Ok(mut log) => log.add(text),
            Err(poisoned) => poisoned.into_inner().add(text),
        }
    }

    /// A copy of the secrets logged for `client_random`.
    pub fn get(&self, client_random: &[u8; 32]) -> Option<Secrets> {
        match self.0.read() {
            Ok(log) => log.get(client_random).cloned(),
            Err(poisoned) => poisoned.into_inner().get(client_random).cloned(),
        }
    }

    /// Client randoms with at least one secret.
    pub fn len(&self) -> usize {
        self.0.read().map_or_else(|p| p.into_inner().len(), |log| log.len())
    }

    /// Whether the log holds no secret.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Most bytes one [`KeyLogTail::poll`] reads: a writer far ahead is caught up over several
/// polls, and one poll never holds more than this.
const TAIL_CHUNK: u64 = 1 << 20;

/// Longest unfinished last line kept for the next poll (key log lines are under 300
/// bytes); anything longer is not a key log line and is dropped.
const MAX_PARTIAL: usize = 4096;

/// A key log file followed while its writer appends to it: each [`KeyLogTail::poll`] adds
/// the complete lines written since the last one to a [`SharedKeyLog`]. A line still being
/// written (no newline yet) waits for the next poll. A file that was truncated or replaced
/// (another inode, or shorter than what was read) is read again from its start.
#[derive(Debug)]
pub struct KeyLogTail {
    path: PathBuf,
    /// The file read so far (device and inode) and how many of its bytes.
    read: Option<((u64, u64), u64)>,
    /// The end of what was read when it did not end a line.
    partial: Vec<u8>,
}

impl KeyLogTail {
    /// Follows `path` from its start (nothing is read until the first poll).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        KeyLogTail { path: path.into(), read: None, partial: Vec::new() }
    }

    /// The file followed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds to `keys` the lines written since the last poll (at most 1 MiB of them).
    /// A file that cannot be opened or read is an error, and is looked for again at the
    /// next poll.
    pub fn poll(&mut self, keys: &SharedKeyLog) -> std::io::Result<Added> {
        use std::os::unix::fs::MetadataExt;
        let mut file = File::open(&self.path)?;
        let meta = file.metadata()?;
        let id = (meta.dev(), meta.ino());
        let offset = match self.read {
            Some((read_id, offset)) if read_id == id && offset <= meta.len() => offset,
            _ => {
                self.partial.clear();
                0
            }
        };
        self.read = Some((id, offset));
        if offset == meta.len() {
            return Ok(Added::default());
        }
        file.seek(SeekFrom::Start(offset))?;
        let mut chunk = Vec::new();
        let got = file.take(TAIL_CHUNK).read_to_end(&mut chunk)?;
        self.read = Some((id, offset + got as u64));
        self.partial.extend_from_slice(&chunk);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            if self.partial.len() > MAX_PARTIAL {
                self.partial.clear();
            }
            return Ok(Added::default());
        };
        let added = keys.add(&self.partial[..end]);
        self.partial.drain(..=end);
        if self.partial.len() > MAX_PARTIAL {
            self.partial.clear();
        }
        Ok(added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const R2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    fn secret(n: usize, byte: u8) -> String {
        format!("{byte:02x}").repeat(n)
    }

    #[test]
    fn nss_lines_by_label() {
        let text = format!(
            "# SSL/TLS secrets log file\n\
             CLIENT_RANDOM {R1} {}\r\n\
             CLIENT_HANDSHAKE_TRAFFIC_SECRET {R2} {}\n\
             SERVER_HANDSHAKE_TRAFFIC_SECRET {R2} {}\n\
             CLIENT_TRAFFIC_SECRET_0 {R2} {}\n\
             SERVER_TRAFFIC_SECRET_0 {R2} {}\n\
             EXPORTER_SECRET {R2} {}\n\n",
            secret(48, 0xaa),
            secret(32, 1),
            secret(32, 2),
            secret(48, 3),
            secret(48, 4),
            secret(32, 5),
        );
        let (log, added) = KeyLog::parse(text.as_bytes());
        assert_eq!(added, Added { secrets: 5, skipped: 4, bad: 0, first_bad: None });
        let r1 = log.get(&[0x11; 32]).unwrap();
        assert_eq!(r1.master_secret.as_deref(), Some(&[0xaa; 48][..]));
        let r2 = log.get(&[0x22; 32]).unwrap();
        assert_eq!(
            (r2.client_handshake.as_deref(), r2.server_handshake.as_deref(), r2.client_traffic.as_deref()),
            (Some(&[1; 32][..]), Some(&[2; 32][..]), Some(&[3; 48][..]))
        );
        assert_eq!(r2.server_traffic.as_deref(), Some(&[4; 48][..]));
        assert_eq!(r2.master_secret, None);
        assert_eq!(log.len(), 2);
    }

    #[test]
    fn bad_lines_are_counted_with_the_first_one_named() {
        let check = |line: String, why: BadLine| {
            let (log, added) = KeyLog::parse(format!("CLIENT_RANDOM {R1} {}\n{line}\n", secret(48, 1)).as_bytes());
            assert_eq!((added.secrets, added.bad, added.first_bad), (1, 1, Some((2, why))), "{line}");
            assert_eq!(log.len(), 1);
        };
        check("CLIENT_RANDOM onlytwo".into(), BadLine::MissingField);
        check(format!("CLIENT_RANDOM {} {}", &R1[2..], secret(48, 1)), BadLine::BadClientRandom);
        check(format!("CLIENT_RANDOM {R1}zz {}", secret(48, 1)), BadLine::BadClientRandom);
        check(format!("CLIENT_RANDOM {R1} {}", secret(47, 1)), BadLine::BadSecret);
        check(format!("CLIENT_TRAFFIC_SECRET_0 {R1} {}", secret(40, 1)), BadLine::BadSecret);
        check(format!("CLIENT_RANDOM {R1} 0g{}", secret(47, 1)), BadLine::BadSecret);
        check(format!("SERVER_RANDOM {R1} {}", secret(48, 1)), BadLine::UnknownLabel);
        // Not text at all.
        let (_, added) = KeyLog::parse(&[0xff, 0xfe, 0x00, b'\n', 0x80]);
        assert_eq!((added.secrets, added.bad), (0, 2));
    }

    #[test]
    fn a_given_log_without_any_secret_is_an_error_naming_the_first_bad_line() {
        let err = KeyLog::parse_given(b"# comment\nnot a key log\nsecond\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no TLS secret in the key log (2 lines not in the NSS key log format; line 2: unknown label)"
        );
        assert!(KeyLog::parse_given(b"").is_ok());
        let good = format!("junk\nCLIENT_RANDOM {R1} {}\n", secret(48, 1));
        assert_eq!(KeyLog::parse_given(good.as_bytes()).map(|(log, _)| log.len()), Ok(1));
    }

    #[test]
    fn a_shared_log_sees_secrets_added_later() {
        let shared = SharedKeyLog::default();
        let reader = shared.clone();
        assert!(reader.get(&[0x11; 32]).is_none());
        shared.add(format!("CLIENT_RANDOM {R1} {}", secret(48, 9)).as_bytes());
        assert_eq!(reader.get(&[0x11; 32]).and_then(|s| s.master_secret), Some(vec![9; 48]));
        assert_eq!(reader.len(), 1);
    }

    #[test]
    fn a_followed_key_log_adds_the_lines_appended_and_waits_for_an_unfinished_one() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("callflow-keylog-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.log");
        let line = |n: u8| format!("CLIENT_RANDOM {} {}\n", format!("{n:02x}").repeat(32), "ab".repeat(48));
        let keys = SharedKeyLog::default();
        let mut tail = KeyLogTail::new(&path);
        assert!(tail.poll(&keys).is_err(), "no file yet");
        std::fs::write(&path, line(1)).unwrap();
        assert_eq!(tail.poll(&keys).unwrap().secrets, 1);
        assert_eq!(tail.poll(&keys).unwrap().secrets, 0, "nothing new");
        // A line written in two parts is taken once it is whole.
        let second = line(2);
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&second.as_bytes()[..40]).unwrap();
        assert_eq!(tail.poll(&keys).unwrap().secrets, 0);
        file.write_all(&second.as_bytes()[40..]).unwrap();
        assert_eq!(tail.poll(&keys).unwrap().secrets, 1);
        assert_eq!(keys.len(), 2);
        // Replaced by a shorter file (rotated): read again from its start.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, line(3)).unwrap();
        assert_eq!(tail.poll(&keys).unwrap().secrets, 1);
        assert!(keys.get(&[3; 32]).is_some());
        // A "line" that never ends is dropped, not kept growing.
        std::fs::write(&path, "x".repeat(3 * MAX_PARTIAL)).unwrap();
        assert_eq!(tail.poll(&keys).unwrap().secrets, 0);
        assert!(tail.partial.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
