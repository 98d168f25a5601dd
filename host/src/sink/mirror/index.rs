//! The key index of a mirror table: key hash → where the key's row is (a pending row of this commit,
//! or a row of a committed data file). Hash collisions are resolved by comparing the key values,
//! which every entry keeps (encoded, see [`super::encode_keys`]).

use std::hash::Hasher;

use rustc_hash::{FxHashMap, FxHasher};

use super::Key;

/// Where a key's row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// Row `row` of pending batch `batch` (not written yet).
    Pending { batch: u32, row: u32 },
    /// Row `pos` of committed data file `file` (an id of the mirror's file list).
    Committed { file: u32, pos: u64 },
}

#[derive(Debug)]
struct Entry {
    key: Key,
    loc: Location,
}

#[derive(Debug)]
enum Slot {
    One(Entry),
    Many(Vec<Entry>),
}

/// Key → location of the key's live row.
#[derive(Debug, Default)]
pub struct KeyIndex {
    map: FxHashMap<u64, Slot>,
    len: usize,
}

/// The hash a key is filed under.
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h = FxHasher::default();
    h.write(key);
    // FxHash of short inputs is weak in the low bits: mix (splitmix64 finaliser).
    let mut x = h.finish();
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

impl KeyIndex {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no key is indexed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The candidates filed under `hash` (keys with that hash; usually zero or one).
    pub fn lookup(&self, hash: u64) -> impl Iterator<Item = (&[u8], Location)> {
        let entries: &[Entry] = match self.map.get(&hash) {
            None => &[],
            Some(Slot::One(e)) => std::slice::from_ref(e),
            Some(Slot::Many(v)) => v,
        };
        entries.iter().map(|e| (&*e.key, e.loc))
    }

    /// The location of `key`'s row.
    pub fn get(&self, key: &[u8]) -> Option<Location> {
        self.get_hashed(key_hash(key), key)
    }

    fn get_hashed(&self, hash: u64, key: &[u8]) -> Option<Location> {
        self.lookup(hash).find(|(k, _)| *k == key).map(|(_, l)| l)
    }

    /// Files `key` at `loc`; returns where it was before.
    pub fn insert(&mut self, key: Key, loc: Location) -> Option<Location> {
        self.insert_hashed(key_hash(&key), key, loc)
    }

    fn insert_hashed(&mut self, hash: u64, key: Key, loc: Location) -> Option<Location> {
        match self.map.get_mut(&hash) {
            None => {
                self.map.insert(hash, Slot::One(Entry { key, loc }));
                self.len += 1;
                None
            }
            Some(slot) => {
                let entries: &mut [Entry] = match slot {
                    Slot::One(e) => std::slice::from_mut(e),
                    Slot::Many(v) => v,
                };
                if let Some(e) = entries.iter_mut().find(|e| e.key == key) {
                    return Some(std::mem::replace(&mut e.loc, loc));
                }
                // A collision: another key has this hash.
                let new = Entry { key, loc };
                match slot {
                    Slot::Many(v) => v.push(new),
                    Slot::One(_) => {
                        let Slot::One(old) = std::mem::replace(slot, Slot::Many(Vec::new())) else {
                            unreachable!()
                        };
                        *slot = Slot::Many(vec![old, new]);
                    }
                }
                self.len += 1;
                None
            }
        }
    }

    /// Removes `key`; returns where its row was.
    pub fn remove(&mut self, key: &[u8]) -> Option<Location> {
        self.remove_hashed(key_hash(key), key)
    }

    fn remove_hashed(&mut self, hash: u64, key: &[u8]) -> Option<Location> {
        let slot = self.map.get_mut(&hash)?;
        let loc = match slot {
            Slot::One(e) if &*e.key == key => {
                let loc = e.loc;
                self.map.remove(&hash);
                loc
            }
            Slot::One(_) => return None,
            Slot::Many(v) => {
                let i = v.iter().position(|e| &*e.key == key)?;
                let loc = v.swap_remove(i).loc;
                if v.len() == 1 {
                    let e = v.pop().expect("one entry");
                    *slot = Slot::One(e);
                }
                loc
            }
        };
        self.len -= 1;
        Some(loc)
    }

    /// Every key and its location.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Location)> {
        self.map.values().flat_map(|s| {
            let entries: &[Entry] = match s {
                Slot::One(e) => std::slice::from_ref(e),
                Slot::Many(v) => v,
            };
            entries.iter().map(|e| (&*e.key, e.loc))
        })
    }

    /// Rewrites locations (e.g. after compaction moved rows): `f` returns the new location, or
    /// `None` to drop the key.
    pub fn remap(&mut self, mut f: impl FnMut(&[u8], Location) -> Option<Location>) {
        let mut dropped = Vec::new();
        for (h, slot) in self.map.iter_mut() {
            let entries: &mut [Entry] = match slot {
                Slot::One(e) => std::slice::from_mut(e),
                Slot::Many(v) => v,
            };
            for e in entries {
                match f(&e.key, e.loc) {
                    Some(l) => e.loc = l,
                    None => dropped.push((*h, e.key.clone())),
                }
            }
        }
        for (h, k) in dropped {
            self.remove_hashed(h, &k);
        }
    }

    /// Forgets every key.
    pub fn clear(&mut self) {
        self.map.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        s.as_bytes().into()
    }

    #[test]
    fn insert_get_remove() {
        let mut ix = KeyIndex::default();
        assert_eq!(ix.insert(key("a"), Location::Pending { batch: 0, row: 1 }), None);
        assert_eq!(
            ix.insert(key("a"), Location::Committed { file: 2, pos: 3 }),
            Some(Location::Pending { batch: 0, row: 1 })
        );
        assert_eq!(ix.get(b"a"), Some(Location::Committed { file: 2, pos: 3 }));
        assert_eq!(ix.len(), 1);
        assert_eq!(ix.remove(b"a"), Some(Location::Committed { file: 2, pos: 3 }));
        assert_eq!(ix.remove(b"a"), None);
        assert!(ix.is_empty());
    }

    #[test]
    fn collisions_are_resolved_by_key_values() {
        let mut ix = KeyIndex::default();
        let (a, b, c) = (key("a"), key("b"), key("c"));
        let la = Location::Committed { file: 0, pos: 0 };
        let lb = Location::Committed { file: 0, pos: 1 };
        assert_eq!(ix.insert_hashed(7, a.clone(), la), None);
        assert_eq!(ix.insert_hashed(7, b.clone(), lb), None);
        assert_eq!(ix.len(), 2);
        assert_eq!(ix.lookup(7).count(), 2);
        assert_eq!(ix.get_hashed(7, &a), Some(la));
        assert_eq!(ix.get_hashed(7, &b), Some(lb));
        assert_eq!(ix.get_hashed(7, &c), None);
        assert_eq!(ix.remove_hashed(7, &c), None);
        assert_eq!(ix.remove_hashed(7, &a), Some(la));
        assert_eq!(ix.get_hashed(7, &b), Some(lb));
        assert_eq!(ix.len(), 1);
    }

    #[test]
    fn remap_moves_and_drops() {
        let mut ix = KeyIndex::default();
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            ix.insert(key(k), Location::Committed { file: 0, pos: i as u64 });
        }
        ix.remap(|k, l| match (k, l) {
            (b"b", _) => None,
            (_, Location::Committed { pos, .. }) => Some(Location::Committed { file: 1, pos: pos + 10 }),
            (_, l) => Some(l),
        });
        assert_eq!(ix.len(), 2);
        assert_eq!(ix.get(b"c"), Some(Location::Committed { file: 1, pos: 12 }));
        assert_eq!(ix.get(b"b"), None);
    }
}
