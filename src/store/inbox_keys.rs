//! The SQLite store's dedup keys: the `source` + `id` of every inbox row, held in memory.
//!
//! A `UNIQUE (source, event_id)` index would answer "received before?" from the file, but
//! with the random v4 ids most CloudEvents SDKs make, every new event lands on an index page
//! of its own, and SQLite writes that whole page to the WAL (two `pwrite`s) and copies it
//! back at the checkpoint: the inbox commit cost a quarter more CPU per event than with
//! ids in order (docs/performance.md). One gateway writes a SQLite file, so it can know
//! every key itself: it reads them once, at its first commit, and keeps them in step with
//! its inserts and its prunes.
//!
//! A key is held as the first 128 bits of the SHA-256 of the pair, 16 bytes a row. Two
//! different pairs share them only by a collision of those 128 bits (about 2^64 hashes to
//! find one on purpose), so an event is never taken for another in practice.
//!
//! This module must never touch the database: the store reads the rows and tells it.

use sha2::{Digest, Sha256};
use std::collections::HashSet;

/// The keys of the inbox's rows.
#[derive(Debug, Default)]
pub(super) struct InboxKeys {
    keys: HashSet<u128>,
}

/// An event's dedup key as held in memory.
pub(super) fn key(source: &str, event_id: &str) -> u128 {
    let mut h = Sha256::new();
    // The length first, so that ("ab", "c") and ("a", "bc") differ.
    h.update((source.len() as u64).to_le_bytes());
    h.update(source);
    h.update(event_id);
    let digest = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(first)
}

impl InboxKeys {
    /// A row read from the inbox.
    pub(super) fn add(&mut self, source: &str, event_id: &str) {
        self.keys.insert(key(source, event_id));
    }

    /// Which of `events` (source, id) are new: not in the inbox and not earlier in the
    /// same list. Returns their positions and keys; nothing is recorded until
    /// [`InboxKeys::inserted`].
    pub(super) fn new_ones<'a>(
        &self,
        events: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Vec<(usize, u128)> {
        let mut in_batch = HashSet::new();
        events
            .into_iter()
            .enumerate()
            .filter_map(|(i, (s, id))| {
                let k = key(s, id);
                (!self.keys.contains(&k) && in_batch.insert(k)).then_some((i, k))
            })
            .collect()
    }

    /// Rows with these keys were committed.
    pub(super) fn inserted(&mut self, keys: impl IntoIterator<Item = u128>) {
        self.keys.extend(keys);
    }

    /// Rows with these keys (source, id) were deleted.
    pub(super) fn deleted<'a>(&mut self, rows: impl IntoIterator<Item = (&'a str, &'a str)>) {
        for (s, id) in rows {
            self.keys.remove(&key(s, id));
        }
    }

    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ones_skips_known_keys_and_repeats_within_the_list() {
        let mut keys = InboxKeys::default();
        keys.add("src", "a");
        let found = keys.new_ones([("src", "a"), ("src", "b"), ("src", "b"), ("other", "a")]);
        let positions: Vec<usize> = found.iter().map(|(i, _)| *i).collect();
        assert_eq!(positions, [1, 3], "known a and the second b are duplicates");
        assert!(
            keys.new_ones([("src", "b")]).len() == 1,
            "nothing recorded yet"
        );
        keys.inserted(found.into_iter().map(|(_, k)| k));
        assert!(keys.new_ones([("src", "b"), ("other", "a")]).is_empty());
        assert_eq!(keys.len(), 3);
        keys.deleted([("src", "a")]);
        assert_eq!(
            keys.new_ones([("src", "a")]).len(),
            1,
            "a deleted row's key is new"
        );
        assert_eq!(keys.len(), 2);
    }

    #[test]
    fn the_pair_is_the_key_not_its_concatenation() {
        assert_ne!(key("ab", "c"), key("a", "bc"));
        assert_ne!(key("", "ab"), key("ab", ""));
        assert_eq!(key("s", "id"), key("s", "id"));
    }
}
