//! A versioned slab: values by small index, each index with a version that changes whenever its value does.
//!
//! The media table keeps announced endpoints and streams in these so that a flow can
//! remember where its packets went last as an index and a version ([`SlotRef`]), and check
//! on the next packet that nothing changed by comparing two numbers in a small array that
//! stays in cache, instead of hashing addresses again.

/// A slot as it was when remembered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotRef {
    pub index: u32,
    pub version: u32,
}

/// Values by index; freed indexes are reused, with a new version.
#[derive(Debug)]
pub(crate) struct Slots<T> {
    values: Vec<Option<T>>,
    /// Apart from the values: small, so checking a [`SlotRef`] rarely misses the cache.
    versions: Vec<u32>,
    free: Vec<u32>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots { values: Vec::new(), versions: Vec::new(), free: Vec::new() }
    }
}

impl<T> Slots<T> {
    /// Stores `value` in a free slot and returns its index.
    pub fn insert(&mut self, value: T) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.values[i as usize] = Some(value);
                i
            }
            None => {
                self.values.push(Some(value));
                self.versions.push(0);
                (self.values.len() - 1) as u32
            }
        }
    }

    /// Puts `value` in slot `index` in place of what it held (a new version).
    pub fn replace(&mut self, index: u32, value: T) {
        if let (Some(slot), Some(version)) =
            (self.values.get_mut(index as usize), self.versions.get_mut(index as usize))
        {
            *slot = Some(value);
            *version = version.wrapping_add(1);
        }
    }

    /// Empties slot `index` (a new version) and frees it for reuse.
    pub fn remove(&mut self, index: u32) -> Option<T> {
        let value = self.values.get_mut(index as usize)?.take()?;
        if let Some(version) = self.versions.get_mut(index as usize) {
            *version = version.wrapping_add(1);
        }
        self.free.push(index);
        Some(value)
    }

    pub fn get(&self, index: u32) -> Option<&T> {
        self.values.get(index as usize)?.as_ref()
    }

    pub fn get_mut(&mut self, index: u32) -> Option<&mut T> {
        self.values.get_mut(index as usize)?.as_mut()
    }

    /// Slot `index` as it is now.
    pub fn current(&self, index: u32) -> Option<SlotRef> {
        self.versions.get(index as usize).map(|&version| SlotRef { index, version })
    }

    /// Whether slot `r.index` is still as it was when `r` was taken.
    pub fn holds(&self, r: SlotRef) -> bool {
        self.versions.get(r.index as usize) == Some(&r.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_goes_stale_when_its_slot_changes_and_stays_stale_after_reuse() {
        let mut slots = Slots::default();
        let a = slots.insert("a");
        let before = slots.current(a).unwrap();
        assert!(slots.holds(before));
        slots.replace(a, "a2");
        assert!(!slots.holds(before), "replaced");
        let replaced = slots.current(a).unwrap();
        assert_eq!(slots.remove(a), Some("a2"));
        assert!(!slots.holds(replaced), "removed");
        assert_eq!(slots.remove(a), None, "removing twice frees once");
        let b = slots.insert("b");
        assert_eq!(b, a, "the freed slot is reused");
        assert!(!slots.holds(before) && !slots.holds(replaced), "under a new version");
        assert_eq!(slots.get(b), Some(&"b"));
        let c = slots.insert("c");
        assert_ne!(c, b, "freed once, reused once");
        assert_eq!(slots.get(99), None);
        assert!(!slots.holds(SlotRef { index: 99, version: 0 }));
    }
}
