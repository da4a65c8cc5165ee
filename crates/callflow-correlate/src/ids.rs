//! Stable session identifiers: a hash of what identifies a session, identical across runs.

use std::hash::Hasher;

/// FNV-1a, 64 bit: tiny, stable across Rust versions and platforms (unlike `DefaultHasher`),
/// which is what makes session ids reproducible.
pub(crate) struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv64 {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The id of a session: its kind, what names it (Call-ID, or the media endpoints) and
/// the frame it started at, hashed, so ids are short and the same for the same input.
pub(crate) fn session_id(kind: &str, name: &[u8], first_frame: u64) -> String {
    let mut h = Fnv64::default();
    h.write(kind.as_bytes());
    h.write(&[0]);
    h.write(name);
    h.write(&first_frame.to_le_bytes());
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = session_id("sip_call", b"abc@host", 1);
        assert_eq!(a, session_id("sip_call", b"abc@host", 1));
        assert_eq!(a.len(), 16);
        assert_ne!(a, session_id("sip_call", b"abc@host", 2));
        assert_ne!(a, session_id("sip_register", b"abc@host", 1));
    }
}
