//! Maps keyed by short names (job kinds, queue names) that are looked up once or more per
//! job: FNV-1a costs a few instructions per byte of a ten-byte name, where the standard
//! `SipHash` spends more on its setup than such a map spends on the lookup. The keys are
//! our own names, not outside input, so the map needs no protection against chosen
//! collisions.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

/// A `HashMap` keyed by a short name.
pub type NameMap<K, V> = HashMap<K, V, BuildHasherDefault<NameHasher>>;

/// FNV-1a, 64 bits.
pub struct NameHasher(u64);

impl Default for NameHasher {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_hash_apart_and_are_found() {
        let mut map: NameMap<&str, u32> = NameMap::default();
        for (i, name) in ["noop", "webhook.retell", "calendar.sync", "billing.usage"]
            .into_iter()
            .enumerate()
        {
            map.insert(name, i as u32);
        }
        assert_eq!(map.get("calendar.sync"), Some(&2));
        assert_eq!(map.get("calendar.syn"), None);
        // The published FNV-1a test vector: "a" hashes to 0xaf63dc4c8601ec8c.
        let mut h = NameHasher::default();
        h.write(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
    }
}
