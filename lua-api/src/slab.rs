//! A slab with generation-tagged ids: an id is `generation << 32 | index`,
//! so a stale id (its entry was freed and the index reused) is detected.
//! Generations keep to 30 bits so ids stay below 2^62 and callers may tag
//! them (timer ids, see host.rs).

pub struct Slab<T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    len: usize,
}

struct Entry<T> {
    generation: u32,
    value: Option<T>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

/// The slab index of an id.
pub fn index_of(id: u64) -> u32 {
    id as u32
}

impl<T> Slab<T> {
    pub fn insert(&mut self, value: T) -> u64 {
        self.len += 1;
        match self.free.pop() {
            Some(index) => {
                let entry = &mut self.entries[index as usize];
                entry.generation = (entry.generation + 1) & 0x3FFF_FFFF;
                entry.value = Some(value);
                ((entry.generation as u64) << 32) | index as u64
            }
            None => {
                let index = self.entries.len() as u32;
                self.entries.push(Entry {
                    generation: 1,
                    value: Some(value),
                });
                (1u64 << 32) | index as u64
            }
        }
    }

    /// The id of what is at `index` now, if anything.
    pub fn id_at(&self, index: u32) -> Option<u64> {
        let entry = self.entries.get(index as usize)?;
        entry.value.as_ref()?;
        Some(((entry.generation as u64) << 32) | index as u64)
    }

    pub fn get(&self, id: u64) -> Option<&T> {
        let entry = self.entries.get(id as u32 as usize)?;
        if entry.generation != (id >> 32) as u32 {
            return None;
        }
        entry.value.as_ref()
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut T> {
        let entry = self.entries.get_mut(id as u32 as usize)?;
        if entry.generation != (id >> 32) as u32 {
            return None;
        }
        entry.value.as_mut()
    }

    pub fn remove(&mut self, id: u64) -> Option<T> {
        let index = id as u32;
        let entry = self.entries.get_mut(index as usize)?;
        if entry.generation != (id >> 32) as u32 {
            return None;
        }
        let value = entry.value.take()?;
        self.free.push(index);
        self.len -= 1;
        Some(value)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Ids of every live entry.
    pub fn ids(&self) -> Vec<u64> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.value.is_some())
            .map(|(i, e)| ((e.generation as u64) << 32) | i as u64)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_ids_miss() {
        let mut slab = Slab::default();
        let a = slab.insert("a");
        assert_eq!(slab.get(a), Some(&"a"));
        assert_eq!(slab.remove(a), Some("a"));
        let b = slab.insert("b");
        assert_eq!(index_of(a), index_of(b));
        assert_eq!(slab.get(a), None);
        assert_eq!(slab.get(b), Some(&"b"));
    }
}
