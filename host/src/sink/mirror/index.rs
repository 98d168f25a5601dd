//! The key index of a mirror table: key → where the key's row is (a pending row of this commit,
//! or a row of a committed data file).
//!
//! One open-addressing table of 24-byte entries, each holding its key (encoded, see
//! [`super::encode_keys`]) so that keys with equal hashes are told apart by value, and its location
//! packed in 8 bytes. A key of up to 15 bytes — an integer key of up to 11 digits — lives in its
//! entry; a longer one in a side list the entry points into. A million keys take ~24 MiB (a boxed
//! key per entry of a map took ~60; an unpacked location, 32).

use std::hash::Hasher;

use hashbrown::HashTable;
use rustc_hash::FxHasher;

/// Where a key's row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// Row `row` of pending batch `batch` (not written yet).
    Pending { batch: u32, row: u32 },
    /// Row `pos` of committed data file `file` (an id of the mirror's file list).
    Committed { file: u32, pos: u64 },
}

/// Keys up to this long are kept in their entry.
const INLINE: usize = 15;
/// The last key byte of an entry whose key is in the side list (its index in the first four).
const SPILLED: u8 = u8::MAX;

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The key's bytes and, last, its length; or a side-list index and [`SPILLED`].
    key: [u8; INLINE + 1],
    loc: Packed,
}

/// A [`Location`] in 8 bytes: the top bit tells which kind; a pending row has its batch in the 32
/// bits below it and its row (< 2^31) in the lowest 31; a committed row its file (< 2^31) in bits
/// 32–62 and its position (< 2^32) in the lowest 32.
#[derive(Debug, Clone, Copy)]
struct Packed(u64);

const COMMITTED: u64 = 1 << 63;

impl From<Location> for Packed {
    fn from(loc: Location) -> Self {
        Packed(match loc {
            Location::Pending { batch, row } => {
                assert!(row < 1 << 31, "a pending batch has fewer than 2^31 rows");
                u64::from(batch) << 31 | u64::from(row)
            }
            Location::Committed { file, pos } => {
                assert!(file < 1 << 31, "a mirror indexes fewer than 2^31 data files");
                assert!(pos < KeyIndex::MAX_FILE_ROWS, "a data file of a mirror table has at most 2^32 rows");
                COMMITTED | u64::from(file) << 32 | pos
            }
        })
    }
}

impl From<Packed> for Location {
    fn from(p: Packed) -> Self {
        if p.0 & COMMITTED == 0 {
            Location::Pending { batch: (p.0 >> 31) as u32, row: (p.0 & ((1 << 31) - 1)) as u32 }
        } else {
            Location::Committed { file: ((p.0 & !COMMITTED) >> 32) as u32, pos: p.0 & u64::from(u32::MAX) }
        }
    }
}

/// Key → location of the key's live row.
#[derive(Debug)]
pub struct KeyIndex {
    table: HashTable<Entry>,
    /// Keys longer than [`INLINE`] (freed ones empty, their indices in `free`).
    spilled: Vec<Box<[u8]>>,
    free: Vec<u32>,
    hash: fn(&[u8]) -> u64,
}

impl Default for KeyIndex {
    fn default() -> Self {
        Self { table: HashTable::new(), spilled: Vec::new(), free: Vec::new(), hash: key_hash }
    }
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

/// The key bytes of `e`.
fn key_of<'a>(spilled: &'a [Box<[u8]>], e: &'a Entry) -> &'a [u8] {
    match e.key[INLINE] {
        SPILLED => &spilled[spilled_index(e)],
        n => &e.key[..n as usize],
    }
}

fn spilled_index(e: &Entry) -> usize {
    u32::from_le_bytes(e.key[..4].try_into().expect("four bytes")) as usize
}

impl KeyIndex {
    /// Rows a data file the index points into may have at most.
    pub const MAX_FILE_ROWS: u64 = 1 << 32;

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when no key is indexed.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The location of `key`'s row.
    pub fn get(&self, key: &[u8]) -> Option<Location> {
        let spilled = &self.spilled;
        self.table.find((self.hash)(key), |e| key_of(spilled, e) == key).map(|e| e.loc.into())
    }

    /// Files `key` at `loc`; returns where it was before.
    pub fn insert(&mut self, key: &[u8], loc: Location) -> Option<Location> {
        let hash = (self.hash)(key);
        let spilled = &self.spilled;
        if let Some(e) = self.table.find_mut(hash, |e| key_of(spilled, e) == key) {
            return Some(std::mem::replace(&mut e.loc, loc.into()).into());
        }
        let mut stored = [0u8; INLINE + 1];
        if key.len() <= INLINE {
            stored[..key.len()].copy_from_slice(key);
            stored[INLINE] = key.len() as u8;
        } else {
            let i = match self.free.pop() {
                Some(i) => {
                    self.spilled[i as usize] = key.into();
                    i
                }
                None => {
                    self.spilled.push(key.into());
                    u32::try_from(self.spilled.len() - 1).expect("fewer than 2^32 long keys")
                }
            };
            stored[..4].copy_from_slice(&i.to_le_bytes());
            stored[INLINE] = SPILLED;
        }
        let (spilled, hasher) = (&self.spilled, self.hash);
        self.table
            .insert_unique(hash, Entry { key: stored, loc: loc.into() }, |e| hasher(key_of(spilled, e)));
        None
    }

    /// Removes `key`; returns where its row was.
    pub fn remove(&mut self, key: &[u8]) -> Option<Location> {
        let spilled = &self.spilled;
        let (e, _) = self.table.find_entry((self.hash)(key), |e| key_of(spilled, e) == key).ok()?.remove();
        self.release(&e);
        Some(e.loc.into())
    }

    /// Frees the side-list slot of a removed entry's key.
    fn release(&mut self, e: &Entry) {
        if e.key[INLINE] == SPILLED {
            let i = spilled_index(e);
            self.spilled[i] = Box::default();
            self.free.push(i as u32);
        }
    }

    /// Every key and its location.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Location)> {
        self.table.iter().map(|e| (key_of(&self.spilled, e), e.loc.into()))
    }

    /// Rewrites locations (e.g. after compaction moved rows): `f` returns the new location, or
    /// `None` to drop the key.
    pub fn remap(&mut self, mut f: impl FnMut(&[u8], Location) -> Option<Location>) {
        let mut dropped = Vec::new();
        let spilled = &self.spilled;
        self.table.retain(|e| match f(key_of(spilled, e), e.loc.into()) {
            Some(l) => {
                e.loc = l.into();
                true
            }
            None => {
                dropped.push(*e);
                false
            }
        });
        for e in dropped {
            self.release(&e);
        }
    }

    /// Forgets every key.
    pub fn clear(&mut self) {
        self.table.clear();
        self.spilled.clear();
        self.free.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> &[u8] {
        s.as_bytes()
    }

    #[test]
    fn insert_get_remove() {
        let long = "a key longer than an entry holds";
        for k in ["a", long] {
            let mut ix = KeyIndex::default();
            assert_eq!(ix.insert(key(k), Location::Pending { batch: 0, row: 1 }), None);
            assert_eq!(
                ix.insert(key(k), Location::Committed { file: 2, pos: 3 }),
                Some(Location::Pending { batch: 0, row: 1 })
            );
            assert_eq!(ix.get(k.as_bytes()), Some(Location::Committed { file: 2, pos: 3 }));
            assert_eq!(ix.len(), 1);
            assert_eq!(
                ix.iter().collect::<Vec<_>>(),
                [(k.as_bytes(), Location::Committed { file: 2, pos: 3 })]
            );
            assert_eq!(ix.remove(k.as_bytes()), Some(Location::Committed { file: 2, pos: 3 }));
            assert_eq!(ix.remove(k.as_bytes()), None);
            assert!(ix.is_empty());
        }
    }

    #[test]
    fn locations_pack_to_the_edges_of_their_ranges() {
        let edges = [0, 1, (1 << 31) - 1];
        for batch in [0, 1, u32::MAX] {
            for row in edges {
                let l = Location::Pending { batch, row };
                assert_eq!(Location::from(Packed::from(l)), l);
            }
        }
        for file in edges {
            for pos in [0, 1, u64::from(u32::MAX)] {
                let l = Location::Committed { file, pos };
                assert_eq!(Location::from(Packed::from(l)), l);
            }
        }
        assert_eq!(std::mem::size_of::<Entry>(), 24);
    }

    #[test]
    fn collisions_are_resolved_by_key_values() {
        // Every key has the same hash; inline and spilled keys, through the table's growth.
        let mut ix = KeyIndex { hash: |_| 7, ..Default::default() };
        let keys: Vec<String> =
            (0..40).map(|i| if i % 2 == 0 { format!("k{i}") } else { format!("{i:0>20}") }).collect();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(ix.insert(key(k), Location::Committed { file: 0, pos: i as u64 }), None);
        }
        assert_eq!(ix.len(), 40);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(ix.get(k.as_bytes()), Some(Location::Committed { file: 0, pos: i as u64 }), "{k}");
        }
        assert_eq!(ix.get(b"c"), None);
        assert_eq!(ix.remove(b"c"), None);
        assert_eq!(ix.remove(keys[1].as_bytes()), Some(Location::Committed { file: 0, pos: 1 }));
        assert_eq!(ix.get(keys[1].as_bytes()), None);
        // The freed side-list slot is reused.
        assert_eq!(
            ix.insert(key("another key longer than fifteen"), Location::Pending { batch: 1, row: 1 }),
            None
        );
        assert_eq!(ix.spilled.len(), 20);
        assert_eq!(ix.get(keys[3].as_bytes()), Some(Location::Committed { file: 0, pos: 3 }));
        assert_eq!(ix.len(), 40);
    }

    #[test]
    fn remap_moves_and_drops() {
        let mut ix = KeyIndex::default();
        for (i, k) in ["a", "b", "c", "a key longer than an entry holds"].iter().enumerate() {
            ix.insert(key(k), Location::Committed { file: 0, pos: i as u64 });
        }
        ix.remap(|k, l| match (k, l) {
            (b"b", _) => None,
            (_, Location::Committed { pos: 3, .. }) => None,
            (_, Location::Committed { pos, .. }) => Some(Location::Committed { file: 1, pos: pos + 10 }),
            (_, l) => Some(l),
        });
        assert_eq!(ix.len(), 2);
        assert_eq!(ix.get(b"c"), Some(Location::Committed { file: 1, pos: 12 }));
        assert_eq!(ix.get(b"b"), None);
        assert_eq!(ix.free, [0]);
    }
}
