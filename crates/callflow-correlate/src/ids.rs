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

/// `id` made unique to `scope` (callflow-jobs passes the job's UUID): FNV-1a, 128 bit, of
/// the scope and the id, as 32 hex digits. A pure function of both, so that every
/// reference to a session (`related`, the subscriber view, KPIs) maps to the same id as
/// the session itself, wherever it is rewritten.
pub(crate) fn scoped_id(scope: u128, id: &str) -> String {
    format!("{:032x}", fnv1a_128(&[&scope.to_be_bytes(), id.as_bytes()]))
}

/// FNV-1a, 128 bit, of `parts` one after the other.
fn fnv1a_128(parts: &[&[u8]]) -> u128 {
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for &b in parts.iter().flat_map(|p| p.iter()) {
        h ^= u128::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_ids_differ_by_scope_and_keep_references_equal() {
        let id = session_id("sip_call", b"abc@host", 1);
        let (a, b) = (scoped_id(1, &id), scoped_id(2, &id));
        assert_eq!(a.len(), 32);
        assert_ne!(a, b, "the same session of two jobs");
        assert_eq!(a, scoped_id(1, &id), "a reference rewritten apart is the same id");
        assert_ne!(a, scoped_id(1, &session_id("sip_call", b"abc@host", 2)));
        // The published FNV-1a 128 values of "" and "a".
        assert_eq!(fnv1a_128(&[]), 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d);
        assert_eq!(fnv1a_128(&[b"a"]), 0xd228_cb69_6f1a_8caf_7891_2b70_4e4a_8964);
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = session_id("sip_call", b"abc@host", 1);
        assert_eq!(a, session_id("sip_call", b"abc@host", 1));
        assert_eq!(a.len(), 16);
        assert_ne!(a, session_id("sip_call", b"abc@host", 2));
        assert_ne!(a, session_id("sip_register", b"abc@host", 1));
    }
}
