//! A slab with generation-tagged ids (see `ids.rs` for the packing): a
//! stale id (its entry was freed and the index reused) misses.

use std::marker::PhantomData;

use crate::ids::{SlabKey, SlotId};

pub struct Slab<K, T> {
    entries: Vec<SlabEntry<T>>,
    free: Vec<u32>,
    len: usize,
    key: PhantomData<K>,
}

struct SlabEntry<T> {
    generation: u32,
    value: Option<T>,
}

impl<K, T> Default for Slab<K, T> {
    fn default() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
            key: PhantomData,
        }
    }
}

impl<K: SlabKey, T> Slab<K, T> {
    pub fn insert(&mut self, value: T) -> K {
        self.len += 1;
        let (index, generation) = match self.free.pop() {
            Some(index) => {
                let entry = &mut self.entries[index as usize];
                entry.generation = SlotId::next_generation(entry.generation);
                entry.value = Some(value);
                (index, entry.generation)
            }
            None => {
                let index = self.entries.len() as u32;
                self.entries.push(SlabEntry {
                    generation: 1,
                    value: Some(value),
                });
                (index, 1)
            }
        };
        K::from_slot(SlotId::new(index, generation))
    }

    /// Puts `value` back under `key`, which was just removed (nothing was
    /// inserted since): the id holders keep working. False (and `value`
    /// dropped) if that slot is taken or was never freed.
    pub fn restore(&mut self, key: K, value: T) -> bool {
        let slot = key.slot();
        let Some(at) = self.free.iter().rposition(|&i| i == slot.index()) else {
            return false;
        };
        let entry = &mut self.entries[slot.index() as usize];
        if entry.generation != slot.generation() || entry.value.is_some() {
            return false;
        }
        self.free.swap_remove(at);
        entry.value = Some(value);
        self.len += 1;
        true
    }

    /// Gives the entry under `key` a new id in the same slot (the next
    /// generation of its index): holders of `key` miss from now on, while
    /// whatever knows only the index (the reactor's token) still finds it.
    pub fn reissue(&mut self, key: K) -> Option<K> {
        let slot = key.slot();
        let entry = self.entries.get_mut(slot.index() as usize)?;
        if entry.generation != slot.generation() || entry.value.is_none() {
            return None;
        }
        entry.generation = SlotId::next_generation(entry.generation);
        Some(K::from_slot(SlotId::new(slot.index(), entry.generation)))
    }

    /// Every live entry.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().filter_map(|e| e.value.as_ref())
    }

    /// The id of what is at `index` now, if anything.
    pub fn id_at(&self, index: u32) -> Option<K> {
        let entry = self.entries.get(index as usize)?;
        entry.value.as_ref()?;
        Some(K::from_slot(SlotId::new(index, entry.generation)))
    }

    fn entry(&self, key: K) -> Option<&SlabEntry<T>> {
        let slot = key.slot();
        let entry = self.entries.get(slot.index() as usize)?;
        (entry.generation == slot.generation()).then_some(entry)
    }

    pub fn get(&self, key: K) -> Option<&T> {
        self.entry(key)?.value.as_ref()
    }

    pub fn get_mut(&mut self, key: K) -> Option<&mut T> {
        let slot = key.slot();
        let entry = self.entries.get_mut(slot.index() as usize)?;
        if entry.generation != slot.generation() {
            return None;
        }
        entry.value.as_mut()
    }

    pub fn remove(&mut self, key: K) -> Option<T> {
        let slot = key.slot();
        let entry = self.entries.get_mut(slot.index() as usize)?;
        if entry.generation != slot.generation() {
            return None;
        }
        let value = entry.value.take()?;
        self.free.push(slot.index());
        self.len -= 1;
        Some(value)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Ids of every live entry.
    pub fn ids(&self) -> Vec<K> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.value.is_some())
            .map(|(i, e)| K::from_slot(SlotId::new(i as u32, e.generation)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ConnectionId;

    #[test]
    fn stale_ids_miss() {
        let mut slab: Slab<ConnectionId, &str> = Slab::default();
        let a = slab.insert("a");
        assert_eq!(slab.get(a), Some(&"a"));
        assert_eq!(slab.remove(a), Some("a"));
        let b = slab.insert("b");
        assert_eq!(a.index(), b.index());
        assert_eq!(slab.get(a), None);
        assert_eq!(slab.get(b), Some(&"b"));
    }

    #[test]
    fn a_reissued_entry_keeps_its_slot_under_a_new_id() {
        let mut slab: Slab<ConnectionId, &str> = Slab::default();
        let a = slab.insert("a");
        let b = slab.reissue(a).unwrap();
        assert_eq!(a.index(), b.index());
        assert_eq!(slab.get(a), None);
        assert_eq!(slab.get(b), Some(&"a"));
        assert_eq!(slab.id_at(a.index()), Some(b));
        assert!(slab.reissue(a).is_none());
        assert_eq!(slab.values().count(), 1);
    }

    #[test]
    fn a_removed_entry_can_be_restored_under_its_id() {
        let mut slab: Slab<ConnectionId, &str> = Slab::default();
        let a = slab.insert("a");
        let b = slab.insert("b");
        assert_eq!(slab.remove(a), Some("a"));
        assert!(slab.restore(a, "a again"));
        assert_eq!(slab.get(a), Some(&"a again"));
        // The slot is taken now, and a live id cannot be restored over.
        assert!(!slab.restore(a, "twice"));
        assert!(!slab.restore(b, "b twice"));
        let c = slab.insert("c");
        assert_ne!(c.index(), a.index());
    }
}
