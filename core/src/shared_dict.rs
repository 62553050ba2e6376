//! Shared dictionaries: OpenResty's `lua_shared_dict` in Rust.
//!
//! A [`SharedDict`] is a bounded key-value store shared by every Lua VM on
//! every worker thread. It is the one piece of mutable state services share
//! without messages, so it is built for contention:
//!
//! 1. **Shards.** The dict is split into up to 16 shards, each a
//!    `std::sync::Mutex` around its own map and LRU list. A key's shard is
//!    picked by a fast FxHash-style hash of its bytes. Every operation on a
//!    key locks exactly one shard; operations over the whole dict (`keys`,
//!    `len`, `used_bytes`, `flush`) lock the shards one after another, never
//!    all at once. There is no global lock on any path.
//! 2. **Memory.** The capacity is split evenly over the shards and each
//!    shard enforces its part, so the dict never holds more than its
//!    capacity. An entry is charged `key.len() + value length +`
//!    [`ENTRY_OVERHEAD`] bytes (a string's length is its byte count, numbers
//!    count 8, booleans 1). An entry larger than one shard's capacity is
//!    refused with [`DictError::NoMemory`]. Small dicts use fewer shards so
//!    that each shard keeps at least [`MIN_SHARD_BYTES`], the largest entry a
//!    dict of any size above that is guaranteed to accept.
//! 3. **LRU.** Each shard keeps its entries in a doubly linked list threaded
//!    through a `Vec` by index (most recently used at the head), plus a
//!    `HashMap` from key to index: lookup, touch, insert and evict are O(1).
//!    A read or a write moves the entry to the head.
//! 4. **Expiry.** Time is passed in by the caller as monotonic milliseconds
//!    (`now_ms`), which keeps the dict free of clocks and the tests
//!    deterministic. An entry with `expires_at <= now_ms` is absent: it is
//!    removed when an operation meets it. When a shard needs room it first
//!    removes expired entries found within [`EXPIRED_SCAN`] entries of the
//!    LRU tail and only then evicts live ones from the tail; only live
//!    evictions are counted in [`SetOutcome::evicted`].
//!
//! 5. **Accounts.** A write may name the [`Account`] that pays for the
//!    entry: the entry's charge counts against that account (and the
//!    accounts above it) for as long as the entry lives, whoever removes
//!    it. A write that would take an account past its limit is refused with
//!    [`DictError::OverQuota`] before the shard changes. This bounds what
//!    one writer holds across every dict, whatever their capacities.
//!
//! A panic while a shard is locked (a bug) poisons nothing: the next caller
//! takes the lock anyway, as every operation leaves the shard consistent
//! before it can panic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Bytes charged per entry on top of its key and value: the entry record in
/// the shard's vector (~80 bytes: key pointer, value, expiry, two links),
/// the key's reference counts (16) and the map's slot (~25), rounded up.
pub const ENTRY_OVERHEAD: usize = 128;

/// The most shards a dict has. Sixteen keeps contention low on the machines
/// lunet targets (a few to a few dozen cores) without making the per-shard
/// capacity, and thus the largest entry, too small.
const MAX_SHARDS: usize = 16;

/// The smallest shard capacity a dict is split down to (64 KiB). A dict of
/// 1 MiB (the default) gets 16 shards of 64 KiB; a dict below 128 KiB gets a
/// single shard.
pub const MIN_SHARD_BYTES: usize = 64 * 1024;

/// How many entries from the LRU tail are checked for expired ones before a
/// live entry is evicted. Bounded so that making room stays O(1).
pub const EXPIRED_SCAN: usize = 8;

/// How many expired entries at the LRU tail a write removes in passing, as
/// OpenResty does, so that memory held by dead entries is returned even
/// when no one reads them.
const OPPORTUNISTIC_EXPIRE: usize = 2;

/// The default capacity of a dict created by [`dict`] without one.
pub const DEFAULT_CAPACITY: usize = 1024 * 1024;

/// "No entry" in the LRU links.
const NIL: usize = usize::MAX;

/// A value stored in a [`SharedDict`].
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A byte string (a Lua string). Shared, not copied, by `get`: a large
    /// value is copied once on its way in and once on its way out (into
    /// the reader's Lua string), and never under the shard's lock.
    Str(Arc<[u8]>),
    /// An integer (a Lua integer).
    Int(i64),
    /// A float (a Lua float).
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl Value {
    /// Bytes charged for the value (see the module header).
    fn charged_len(&self) -> usize {
        match self {
            Value::Str(bytes) => bytes.len(),
            Value::Int(_) | Value::Float(_) => 8,
            Value::Bool(_) => 1,
        }
    }
}

/// Why a [`SharedDict`] operation failed.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
pub enum DictError {
    /// The entry is larger than one shard's capacity: it can never fit.
    #[error("no memory")]
    NoMemory,
    /// `add` found a live entry under the key.
    #[error("exists")]
    Exists,
    /// The operation needs a live entry and there is none.
    #[error("not found")]
    NotFound,
    /// `incr` met a stored value, an increment or an initial value that is
    /// not an integer or a float.
    #[error("not a number")]
    NotANumber,
    /// `incr` of an integer by an integer left the `i64` range.
    #[error("integer overflow")]
    Overflow,
    /// The writer's [`Account`] (or one above it) is at its limit.
    #[error("over quota")]
    OverQuota,
}

/// Who pays for entries (step 5 of the module header): the bytes charged
/// for the live entries it wrote, bounded by `limit` (0: no bound), and
/// counted again in `parent`'s, if any.
#[derive(Debug)]
pub struct Account {
    used: AtomicUsize,
    limit: usize,
    parent: Option<Arc<Account>>,
}

impl Account {
    pub fn new(limit: usize, parent: Option<Arc<Account>>) -> Arc<Account> {
        Arc::new(Account {
            used: AtomicUsize::new(0),
            limit,
            parent,
        })
    }

    /// Bytes charged now for the live entries it pays for (and those of
    /// the accounts below it).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Charges `bytes` here and above, or nowhere if any level would pass
    /// its limit. (Public for the other things a service holds outside its
    /// VM: a runtime's state.)
    pub fn charge(&self, bytes: usize) -> bool {
        if bytes == 0 {
            return true;
        }
        let fits = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                let next = used.saturating_add(bytes);
                (self.limit == 0 || next <= self.limit).then_some(next)
            })
            .is_ok();
        if !fits {
            return false;
        }
        match &self.parent {
            Some(parent) if !parent.charge(bytes) => {
                self.used.fetch_sub(bytes, Ordering::Relaxed);
                false
            }
            _ => true,
        }
    }

    /// Gives back what [`Account::charge`] took.
    pub fn release(&self, bytes: usize) {
        let mut account = Some(self);
        while let Some(level) = account {
            level.used.fetch_sub(bytes, Ordering::Relaxed);
            account = level.parent.as_deref();
        }
    }
}

/// What a successful write did besides storing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetOutcome {
    /// How many live entries were evicted to make room (expired entries
    /// removed on the way are not counted).
    pub evicted: usize,
}

/// A bounded, sharded, LRU-evicting key-value store with TTLs, shared by
/// threads (`Send + Sync`). See the module header for the protocol.
pub struct SharedDict {
    capacity: usize,
    /// A power-of-two number of shards.
    shards: Box<[Mutex<Shard>]>,
}

impl std::fmt::Debug for SharedDict {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SharedDict")
            .field("capacity", &self.capacity)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

/// Which writes an operation allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Insert or overwrite.
    Set,
    /// Insert only: `Exists` when a live entry is there.
    Add,
    /// Overwrite only: `NotFound` when no live entry is there.
    Replace,
}

impl SharedDict {
    /// Creates a dict that holds at most `capacity_bytes`, charged as
    /// described in the module header. The number of shards is the largest
    /// power of two up to 16 that leaves each shard at least
    /// [`MIN_SHARD_BYTES`] (at least one shard); the largest entry accepted
    /// is `capacity_bytes / shards`.
    pub fn new(capacity_bytes: usize) -> Self {
        let mut shard_count = MAX_SHARDS;
        while shard_count > 1 && capacity_bytes / shard_count < MIN_SHARD_BYTES {
            shard_count /= 2;
        }
        let shard_capacity = capacity_bytes / shard_count;
        SharedDict {
            capacity: capacity_bytes,
            shards: (0..shard_count)
                .map(|_| Mutex::new(Shard::new(shard_capacity)))
                .collect(),
        }
    }

    /// The capacity given to [`new`](Self::new).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The largest entry (key + value + overhead) the dict accepts.
    pub fn max_entry_bytes(&self) -> usize {
        self.capacity / self.shards.len()
    }

    /// The value under `key`, marking it recently used. An expired entry is
    /// absent (and removed).
    pub fn get(&self, key: &[u8], now_ms: u64) -> Option<Value> {
        let mut shard = self.shard(key);
        let index = shard.find_live(key, now_ms)?;
        shard.touch(index);
        Some(shard.entry(index).value.clone())
    }

    /// Stores `value` under `key`, replacing any value, with a time to live
    /// of `ttl_ms` from `now_ms` (`None`: no expiry; `Some(0)`: expired at
    /// once). Evicts least recently used entries of the key's shard if
    /// needed. `NoMemory` when the entry is larger than a shard; the old
    /// value is then kept.
    pub fn set(
        &self,
        key: &[u8],
        value: Value,
        ttl_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<SetOutcome, DictError> {
        self.write(Mode::Set, key, value, ttl_ms, now_ms, None)
    }

    /// A write (`set`, `add` or `replace`, by `mode`) whose entry `account`
    /// pays for (step 5 of the module header); `OverQuota` when it cannot.
    pub fn write(
        &self,
        mode: Mode,
        key: &[u8],
        value: Value,
        ttl_ms: Option<u64>,
        now_ms: u64,
        account: Option<&Arc<Account>>,
    ) -> Result<SetOutcome, DictError> {
        self.shard(key)
            .store(key, value, expiry(ttl_ms, now_ms), now_ms, mode, account)
    }

    /// Like [`set`](Self::set), but `Exists` when a live entry is there.
    pub fn add(
        &self,
        key: &[u8],
        value: Value,
        ttl_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<SetOutcome, DictError> {
        self.write(Mode::Add, key, value, ttl_ms, now_ms, None)
    }

    /// Like [`set`](Self::set), but `NotFound` when no live entry is there.
    pub fn replace(
        &self,
        key: &[u8],
        value: Value,
        ttl_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<SetOutcome, DictError> {
        self.write(Mode::Replace, key, value, ttl_ms, now_ms, None)
    }

    /// Adds `by` (an `Int` or a `Float`) to the number under `key` and
    /// returns the new value; the entry's expiry is kept.
    ///
    /// When the key is absent: `NotFound` if `init` is `None`, otherwise
    /// stores `init + by` with a time to live of `init_ttl_ms`. `Int + Int`
    /// stays an `Int` (`Overflow` when it leaves the `i64` range); any sum
    /// with a `Float` is a `Float`. `NotANumber` when the stored value,
    /// `by` or `init` is not a number.
    pub fn incr(
        &self,
        key: &[u8],
        by: Value,
        init: Option<Value>,
        init_ttl_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<Value, DictError> {
        self.incr_as(key, by, init, init_ttl_ms, now_ms, None)
    }

    /// [`incr`](Self::incr) whose new entry (made from `init`) `account`
    /// pays for.
    pub fn incr_as(
        &self,
        key: &[u8],
        by: Value,
        init: Option<Value>,
        init_ttl_ms: Option<u64>,
        now_ms: u64,
        account: Option<&Arc<Account>>,
    ) -> Result<Value, DictError> {
        if !is_number(&by) {
            return Err(DictError::NotANumber);
        }
        let mut shard = self.shard(key);
        if let Some(index) = shard.find_live(key, now_ms) {
            let sum = add_numbers(&shard.entry(index).value, &by)?;
            // Numbers are all charged 8 bytes: the size does not change.
            shard.entry_mut(index).value = sum.clone();
            shard.touch(index);
            return Ok(sum);
        }
        let init = init.ok_or(DictError::NotFound)?;
        let sum = add_numbers(&init, &by)?;
        shard.store(
            key,
            sum.clone(),
            expiry(init_ttl_ms, now_ms),
            now_ms,
            Mode::Add,
            account,
        )?;
        Ok(sum)
    }

    /// Removes `key`. Returns whether a live entry was removed.
    pub fn delete(&self, key: &[u8], now_ms: u64) -> bool {
        let mut shard = self.shard(key);
        match shard.find_live(key, now_ms) {
            Some(index) => {
                shard.remove(index);
                true
            }
            None => false,
        }
    }

    /// Sets the time to live of a live entry to `ttl_ms` from `now_ms`
    /// (`None`: no expiry). `NotFound` when no live entry is there. Does not
    /// mark the entry recently used.
    pub fn expire(&self, key: &[u8], ttl_ms: Option<u64>, now_ms: u64) -> Result<(), DictError> {
        let mut shard = self.shard(key);
        let index = shard.find_live(key, now_ms).ok_or(DictError::NotFound)?;
        shard.entry_mut(index).expires_at = expiry(ttl_ms, now_ms);
        Ok(())
    }

    /// The remaining time to live of a live entry: `Ok(None)` when it does
    /// not expire, `NotFound` when no live entry is there.
    pub fn ttl(&self, key: &[u8], now_ms: u64) -> Result<Option<u64>, DictError> {
        let mut shard = self.shard(key);
        let index = shard.find_live(key, now_ms).ok_or(DictError::NotFound)?;
        Ok(shard
            .entry(index)
            .expires_at
            .map(|expires_at| expires_at - now_ms))
    }

    /// Up to `max` live keys (`0`: all), shard by shard, each shard's from
    /// most to least recently used. Removes the expired entries it meets.
    pub fn keys(&self, max: usize, now_ms: u64) -> Vec<Vec<u8>> {
        let limit = if max == 0 { usize::MAX } else { max };
        let mut keys = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.purge_expired(now_ms);
            let mut index = shard.head;
            while index != NIL && keys.len() < limit {
                let entry = shard.entry(index);
                keys.push(entry.key.to_vec());
                index = entry.next;
            }
            if keys.len() >= limit {
                break;
            }
        }
        keys
    }

    /// The number of live entries. Removes every expired entry (O(entries)).
    pub fn len(&self, now_ms: u64) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let mut shard = lock(shard);
                shard.purge_expired(now_ms);
                shard.map.len()
            })
            .sum()
    }

    /// Whether the dict holds no live entry.
    pub fn is_empty(&self, now_ms: u64) -> bool {
        self.len(now_ms) == 0
    }

    /// Bytes charged for all entries held, expired ones not yet removed
    /// included. Never more than [`capacity`](Self::capacity).
    pub fn used_bytes(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).used).sum()
    }

    /// Removes every entry.
    pub fn flush(&self) {
        for shard in self.shards.iter() {
            lock(shard).clear();
        }
    }

    fn shard(&self, key: &[u8]) -> MutexGuard<'_, Shard> {
        // The top bits of the hash are the best mixed.
        let bits = self.shards.len().trailing_zeros();
        let index = if bits == 0 {
            0
        } else {
            (hash(key) >> (64 - bits)) as usize
        };
        lock(&self.shards[index])
    }
}

/// Process-wide dicts by name: the first call for a name creates the dict
/// with `capacity_bytes` (1 MiB when `None`); later calls return the same
/// dict and ignore the capacity.
pub fn dict(name: &str, capacity_bytes: Option<usize>) -> Arc<SharedDict> {
    // Only the name lookup is serialized; operations on a dict never touch
    // this lock. Callers are expected to keep the `Arc`.
    static DICTS: OnceLock<Mutex<HashMap<String, Arc<SharedDict>>>> = OnceLock::new();
    let mut dicts = lock(DICTS.get_or_init(Default::default));
    if let Some(existing) = dicts.get(name) {
        return Arc::clone(existing);
    }
    let created = Arc::new(SharedDict::new(capacity_bytes.unwrap_or(DEFAULT_CAPACITY)));
    dicts.insert(name.to_owned(), Arc::clone(&created));
    created
}

/// Locks a mutex, taking it over if a panicking holder poisoned it (see the
/// module header).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The absolute expiry of a time to live. Saturates: a TTL too large for
/// the clock never expires in practice.
fn expiry(ttl_ms: Option<u64>, now_ms: u64) -> Option<u64> {
    ttl_ms.map(|ttl| now_ms.saturating_add(ttl))
}

fn is_number(value: &Value) -> bool {
    matches!(value, Value::Int(_) | Value::Float(_))
}

/// `a + b` for numbers, as described at [`SharedDict::incr`].
fn add_numbers(a: &Value, b: &Value) -> Result<Value, DictError> {
    match (a, b) {
        (Value::Int(a), Value::Int(b)) => {
            a.checked_add(*b).map(Value::Int).ok_or(DictError::Overflow)
        }
        (Value::Int(a), Value::Float(b)) => Ok(Value::Float(*a as f64 + b)),
        (Value::Float(a), Value::Int(b)) => Ok(Value::Float(a + *b as f64)),
        (Value::Float(a), Value::Float(b)) => Ok(Value::Float(a + b)),
        _ => Err(DictError::NotANumber),
    }
}

/// FxHash over 8-byte words, with a final multiply so the top bits (which
/// pick the shard) depend on every input bit. Keys are chosen by scripts,
/// not attackers, and only pick a shard; the maps inside use std's keyed
/// hasher.
fn hash(key: &[u8]) -> u64 {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let mut state = key.len() as u64;
    let mut chunks = key.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        state = (state.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(SEED);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        state = (state.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(SEED);
    }
    (state ^ (state >> 29)).wrapping_mul(0x94d0_49bb_1331_11eb)
}

/// One entry: a node of the shard's LRU list.
struct Entry {
    /// Shared with the map's key, so the bytes are stored once.
    key: Arc<[u8]>,
    value: Value,
    expires_at: Option<u64>,
    /// Who pays for the entry's charge (step 5).
    account: Option<Arc<Account>>,
    /// Toward the head (more recently used).
    prev: usize,
    /// Toward the tail (less recently used).
    next: usize,
}

impl Entry {
    fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at
            .is_some_and(|expires_at| expires_at <= now_ms)
    }

    fn charged(&self) -> usize {
        charge(&self.key, &self.value)
    }
}

fn charge(key: &[u8], value: &Value) -> usize {
    key.len()
        .saturating_add(value.charged_len())
        .saturating_add(ENTRY_OVERHEAD)
}

/// One shard: a map from key to entry index and an LRU list through
/// `entries`. Owned by its mutex.
struct Shard {
    map: HashMap<Arc<[u8]>, usize>,
    /// Entry records; `None` for free ones, whose indexes are in `free`.
    /// Its length never exceeds the most entries held at once, which the
    /// capacity bounds.
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    /// Most recently used.
    head: usize,
    /// Least recently used.
    tail: usize,
    used: usize,
    capacity: usize,
}

impl Shard {
    fn new(capacity: usize) -> Self {
        Shard {
            map: HashMap::new(),
            entries: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            used: 0,
            capacity,
        }
    }

    fn entry(&self, index: usize) -> &Entry {
        self.entries[index]
            .as_ref()
            .expect("shard index points at a live entry record")
    }

    fn entry_mut(&mut self, index: usize) -> &mut Entry {
        self.entries[index]
            .as_mut()
            .expect("shard index points at a live entry record")
    }

    /// The index of the live entry under `key`; removes it if expired.
    fn find_live(&mut self, key: &[u8], now_ms: u64) -> Option<usize> {
        let index = *self.map.get(key)?;
        if self.entry(index).is_expired(now_ms) {
            self.remove(index);
            return None;
        }
        Some(index)
    }

    fn store(
        &mut self,
        key: &[u8],
        value: Value,
        expires_at: Option<u64>,
        now_ms: u64,
        mode: Mode,
        account: Option<&Arc<Account>>,
    ) -> Result<SetOutcome, DictError> {
        let size = charge(key, &value);
        let existing = self.find_live(key, now_ms);
        match (mode, existing) {
            (Mode::Add, Some(_)) => return Err(DictError::Exists),
            (Mode::Replace, None) => return Err(DictError::NotFound),
            _ => {}
        }
        if size > self.capacity {
            return Err(DictError::NoMemory);
        }
        let kept = existing.map_or(0, |index| self.entry(index).charged());
        // An entry the same account pays for is charged only its growth.
        let same_payer =
            existing.is_some_and(|index| match (&self.entry(index).account, account) {
                (Some(old), Some(new)) => Arc::ptr_eq(old, new),
                _ => false,
            });
        let due = if same_payer {
            size.saturating_sub(kept)
        } else {
            size
        };
        if let Some(account) = account {
            if !account.charge(due) {
                return Err(DictError::OverQuota);
            }
        }
        self.expire_tail(now_ms, OPPORTUNISTIC_EXPIRE, existing);
        let mut outcome = SetOutcome::default();
        // `size <= capacity`, and each round frees an entry other than
        // `existing`, so this ends: at worst with only `existing` left.
        while self.used - kept + size > self.capacity {
            if self.expire_tail(now_ms, EXPIRED_SCAN, existing) == 0 {
                let victim = self.lru_other_than(existing);
                debug_assert_ne!(victim, NIL);
                self.remove(victim);
                outcome.evicted += 1;
            }
        }
        match existing {
            Some(index) => {
                self.used = self.used - kept + size;
                let entry = self.entry_mut(index);
                entry.value = value;
                entry.expires_at = expires_at;
                let previous = std::mem::replace(&mut entry.account, account.cloned());
                match previous {
                    Some(old) if same_payer => old.release(kept.saturating_sub(size)),
                    Some(old) => old.release(kept),
                    None => {}
                }
                self.touch(index);
            }
            None => self.insert(key, value, expires_at, size, account.cloned()),
        }
        Ok(outcome)
    }

    /// Removes expired entries among the `scan` least recently used ones,
    /// except `keep`. Returns how many it removed.
    fn expire_tail(&mut self, now_ms: u64, scan: usize, keep: Option<usize>) -> usize {
        let mut removed = 0;
        let mut index = self.tail;
        for _ in 0..scan {
            if index == NIL {
                break;
            }
            let entry = self.entry(index);
            let prev = entry.prev;
            if Some(index) != keep && entry.is_expired(now_ms) {
                self.remove(index);
                removed += 1;
            }
            index = prev;
        }
        removed
    }

    /// The least recently used entry other than `keep`.
    fn lru_other_than(&self, keep: Option<usize>) -> usize {
        if self.tail != NIL && Some(self.tail) == keep {
            self.entry(self.tail).prev
        } else {
            self.tail
        }
    }

    fn insert(
        &mut self,
        key: &[u8],
        value: Value,
        expires_at: Option<u64>,
        size: usize,
        account: Option<Arc<Account>>,
    ) {
        let key: Arc<[u8]> = Arc::from(key);
        let entry = Entry {
            key: Arc::clone(&key),
            value,
            expires_at,
            account,
            prev: NIL,
            next: NIL,
        };
        let index = match self.free.pop() {
            Some(index) => {
                self.entries[index] = Some(entry);
                index
            }
            None => {
                self.entries.push(Some(entry));
                self.entries.len() - 1
            }
        };
        self.link_front(index);
        self.map.insert(key, index);
        self.used += size;
    }

    fn remove(&mut self, index: usize) {
        self.unlink(index);
        let entry = self.entries[index]
            .take()
            .expect("shard index points at a live entry record");
        self.map.remove(&entry.key);
        let charged = entry.charged();
        self.used -= charged;
        if let Some(account) = &entry.account {
            account.release(charged);
        }
        self.free.push(index);
    }

    /// Marks an entry most recently used.
    fn touch(&mut self, index: usize) {
        if self.head != index {
            self.unlink(index);
            self.link_front(index);
        }
    }

    fn link_front(&mut self, index: usize) {
        let old_head = self.head;
        {
            let entry = self.entry_mut(index);
            entry.prev = NIL;
            entry.next = old_head;
        }
        if old_head == NIL {
            self.tail = index;
        } else {
            self.entry_mut(old_head).prev = index;
        }
        self.head = index;
    }

    fn unlink(&mut self, index: usize) {
        let (prev, next) = {
            let entry = self.entry(index);
            (entry.prev, entry.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.entry_mut(prev).next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.entry_mut(next).prev = prev;
        }
    }

    fn purge_expired(&mut self, now_ms: u64) {
        let mut index = self.head;
        while index != NIL {
            let entry = self.entry(index);
            let next = entry.next;
            if entry.is_expired(now_ms) {
                self.remove(index);
            }
            index = next;
        }
    }

    fn clear(&mut self) {
        for entry in self.entries.iter().flatten() {
            if let Some(account) = &entry.account {
                account.release(entry.charged());
            }
        }
        self.map.clear();
        self.entries.clear();
        self.free.clear();
        self.head = NIL;
        self.tail = NIL;
        self.used = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(text: &str) -> Value {
        Value::Str(text.as_bytes().into())
    }

    /// Charge of a key of `key_len` bytes with an `Int` value.
    fn int_entry(key_len: usize) -> usize {
        key_len + 8 + ENTRY_OVERHEAD
    }

    /// xorshift64*, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }
    }

    #[test]
    fn overhead_covers_the_records() {
        let record = std::mem::size_of::<Option<Entry>>()
            + 2 * std::mem::size_of::<usize>() // Arc counts
            + std::mem::size_of::<(Arc<[u8]>, usize)>();
        assert!(record <= ENTRY_OVERHEAD, "record {record}");
    }

    #[test]
    fn shard_counts() {
        assert_eq!(SharedDict::new(0).shards.len(), 1);
        assert_eq!(SharedDict::new(100_000).shards.len(), 1);
        assert_eq!(SharedDict::new(128 * 1024).shards.len(), 2);
        assert_eq!(SharedDict::new(DEFAULT_CAPACITY).shards.len(), 16);
        assert_eq!(SharedDict::new(1 << 30).shards.len(), 16);
        assert_eq!(SharedDict::new(1 << 30).max_entry_bytes(), 1 << 26);
        assert_eq!(SharedDict::new(5000).capacity(), 5000);
    }

    #[test]
    fn get_set_overwrite_delete() {
        let dict = SharedDict::new(DEFAULT_CAPACITY);
        assert_eq!(dict.get(b"a", 0), None);
        dict.set(b"a", text("one"), None, 0).unwrap();
        dict.set(b"b", Value::Int(-2), None, 0).unwrap();
        dict.set(b"c", Value::Float(1.5), None, 0).unwrap();
        dict.set(b"d", Value::Bool(false), None, 0).unwrap();
        assert_eq!(dict.get(b"a", 1), Some(text("one")));
        assert_eq!(dict.get(b"b", 1), Some(Value::Int(-2)));
        assert_eq!(dict.get(b"c", 1), Some(Value::Float(1.5)));
        assert_eq!(dict.get(b"d", 1), Some(Value::Bool(false)));
        assert_eq!(dict.len(1), 4);
        let used = 4 * ENTRY_OVERHEAD + 4 + 3 + 8 + 8 + 1;
        assert_eq!(dict.used_bytes(), used);

        dict.set(b"a", text("a longer value"), None, 2).unwrap();
        assert_eq!(dict.get(b"a", 2), Some(text("a longer value")));
        assert_eq!(dict.used_bytes(), used - 3 + 14);
        assert_eq!(dict.len(2), 4);

        assert!(dict.delete(b"a", 3));
        assert!(!dict.delete(b"a", 3));
        assert_eq!(dict.get(b"a", 3), None);
        assert_eq!(dict.len(3), 3);
        assert_eq!(dict.used_bytes(), used - 1 - 3 - ENTRY_OVERHEAD);

        dict.flush();
        assert_eq!(dict.len(3), 0);
        assert!(dict.is_empty(3));
        assert_eq!(dict.used_bytes(), 0);
        assert_eq!(dict.get(b"b", 3), None);
        dict.set(b"b", Value::Int(1), None, 4).unwrap();
        assert_eq!(dict.get(b"b", 4), Some(Value::Int(1)));
    }

    #[test]
    fn add_and_replace() {
        let dict = SharedDict::new(DEFAULT_CAPACITY);
        assert_eq!(
            dict.replace(b"k", text("x"), None, 0),
            Err(DictError::NotFound)
        );
        assert_eq!(dict.get(b"k", 0), None);
        dict.add(b"k", text("first"), Some(100), 0).unwrap();
        assert_eq!(
            dict.add(b"k", text("second"), None, 50),
            Err(DictError::Exists)
        );
        assert_eq!(dict.get(b"k", 50), Some(text("first")));
        dict.replace(b"k", text("third"), None, 60).unwrap();
        assert_eq!(dict.get(b"k", 60), Some(text("third")));
        assert_eq!(dict.ttl(b"k", 60), Ok(None));

        // An expired entry counts as absent for both.
        dict.set(b"t", text("old"), Some(10), 100).unwrap();
        assert_eq!(
            dict.replace(b"t", text("x"), None, 110),
            Err(DictError::NotFound)
        );
        dict.set(b"t", text("old"), Some(10), 100).unwrap();
        dict.add(b"t", text("new"), None, 110).unwrap();
        assert_eq!(dict.get(b"t", 110), Some(text("new")));
    }

    #[test]
    fn incr_semantics() {
        let dict = SharedDict::new(DEFAULT_CAPACITY);
        assert_eq!(
            dict.incr(b"n", Value::Int(1), None, None, 0),
            Err(DictError::NotFound)
        );
        assert_eq!(
            dict.incr(b"n", Value::Int(1), Some(Value::Int(10)), Some(100), 0),
            Ok(Value::Int(11))
        );
        assert_eq!(dict.ttl(b"n", 0), Ok(Some(100)));
        // init and init_ttl are ignored for an existing entry; TTL is kept.
        assert_eq!(
            dict.incr(b"n", Value::Int(-5), Some(Value::Int(0)), None, 40),
            Ok(Value::Int(6))
        );
        assert_eq!(dict.ttl(b"n", 40), Ok(Some(60)));
        assert_eq!(
            dict.incr(b"n", Value::Float(0.5), None, None, 40),
            Ok(Value::Float(6.5))
        );
        assert_eq!(
            dict.incr(b"n", Value::Int(1), None, None, 40),
            Ok(Value::Float(7.5))
        );
        assert_eq!(dict.get(b"n", 40), Some(Value::Float(7.5)));
        // Expired: init applies again.
        assert_eq!(
            dict.incr(b"n", Value::Int(1), Some(Value::Float(0.25)), None, 100),
            Ok(Value::Float(1.25))
        );
        assert_eq!(dict.ttl(b"n", 100), Ok(None));

        dict.set(b"s", text("12"), None, 0).unwrap();
        assert_eq!(
            dict.incr(b"s", Value::Int(1), None, None, 0),
            Err(DictError::NotANumber)
        );
        assert_eq!(
            dict.incr(b"n", text("1"), None, None, 0),
            Err(DictError::NotANumber)
        );
        assert_eq!(
            dict.incr(b"new", Value::Int(1), Some(Value::Bool(true)), None, 0),
            Err(DictError::NotANumber)
        );
        assert_eq!(dict.get(b"new", 0), None);

        dict.set(b"big", Value::Int(i64::MAX - 1), None, 0).unwrap();
        assert_eq!(
            dict.incr(b"big", Value::Int(1), None, None, 0),
            Ok(Value::Int(i64::MAX))
        );
        assert_eq!(
            dict.incr(b"big", Value::Int(1), None, None, 0),
            Err(DictError::Overflow)
        );
        assert_eq!(dict.get(b"big", 0), Some(Value::Int(i64::MAX)));
        assert_eq!(
            dict.incr(b"neg", Value::Int(-1), Some(Value::Int(i64::MIN)), None, 0),
            Err(DictError::Overflow)
        );
    }

    #[test]
    fn ttl_expiry_and_expire() {
        let dict = SharedDict::new(DEFAULT_CAPACITY);
        dict.set(b"k", text("v"), Some(1_000), 5_000).unwrap();
        assert_eq!(dict.ttl(b"k", 5_000), Ok(Some(1_000)));
        assert_eq!(dict.ttl(b"k", 5_999), Ok(Some(1)));
        assert_eq!(dict.get(b"k", 5_999), Some(text("v")));
        assert_eq!(dict.get(b"k", 6_000), None);
        assert_eq!(dict.ttl(b"k", 6_000), Err(DictError::NotFound));
        assert_eq!(dict.expire(b"k", None, 6_000), Err(DictError::NotFound));
        assert!(!dict.delete(b"k", 6_000));
        assert_eq!(dict.used_bytes(), 0, "expired entry removed on access");

        dict.set(b"k", text("v"), Some(10), 0).unwrap();
        dict.expire(b"k", None, 5).unwrap();
        assert_eq!(dict.ttl(b"k", 5), Ok(None));
        assert_eq!(dict.get(b"k", 1_000_000), Some(text("v")));
        dict.expire(b"k", Some(20), 1_000_000).unwrap();
        assert_eq!(dict.ttl(b"k", 1_000_005), Ok(Some(15)));
        assert_eq!(dict.get(b"k", 1_000_020), None);

        // A zero TTL expires at once.
        dict.set(b"z", text("v"), Some(0), 7).unwrap();
        assert_eq!(dict.get(b"z", 7), None);
        // A huge TTL saturates rather than wrapping into the past.
        dict.set(b"h", text("v"), Some(u64::MAX), 7).unwrap();
        assert_eq!(dict.get(b"h", u64::MAX - 1), Some(text("v")));
    }

    #[test]
    fn keys_and_len_skip_expired() {
        let dict = SharedDict::new(DEFAULT_CAPACITY);
        for index in 0..50u32 {
            let ttl = if index % 2 == 0 { Some(100) } else { None };
            dict.set(
                format!("key{index}").as_bytes(),
                Value::Int(index.into()),
                ttl,
                0,
            )
            .unwrap();
        }
        assert_eq!(dict.len(99), 50);
        assert_eq!(dict.keys(0, 99).len(), 50);
        assert_eq!(dict.keys(7, 99).len(), 7);
        let mut keys = dict.keys(0, 100);
        keys.sort();
        let mut expected: Vec<Vec<u8>> = (0..50u32)
            .filter(|index| index % 2 == 1)
            .map(|index| format!("key{index}").into_bytes())
            .collect();
        expected.sort();
        assert_eq!(keys, expected);
        assert_eq!(dict.len(100), 25);
        assert_eq!(
            dict.used_bytes(),
            25 * ENTRY_OVERHEAD + 25 * 8 + (5 * 4 + 20 * 5)
        );
    }

    #[test]
    fn lru_eviction_order_and_count() {
        // One shard of 1000 bytes; each entry is 2 + 8 + 128 = 138: 7 fit.
        let dict = SharedDict::new(1000);
        assert_eq!(dict.shards.len(), 1);
        for index in 0..7 {
            let outcome = dict
                .set(format!("k{index}").as_bytes(), Value::Int(index), None, 0)
                .unwrap();
            assert_eq!(outcome.evicted, 0);
        }
        assert_eq!(dict.used_bytes(), 7 * int_entry(2));
        // Reading k0 protects it: k1 is now the least recently used.
        assert!(dict.get(b"k0", 1).is_some());
        // So does overwriting k2 and incrementing k3.
        dict.set(b"k2", Value::Int(20), None, 1).unwrap();
        dict.incr(b"k3", Value::Int(1), None, None, 1).unwrap();
        assert_eq!(dict.set(b"k7", Value::Int(7), None, 2).unwrap().evicted, 1);
        assert_eq!(dict.get(b"k1", 2), None);
        assert_eq!(dict.set(b"k8", Value::Int(8), None, 2).unwrap().evicted, 1);
        assert_eq!(dict.get(b"k4", 2), None);
        // A larger entry needs two evictions: k5 and k6.
        let outcome = dict
            .set(b"k9", Value::Str(vec![b'x'; 138].into()), None, 3)
            .unwrap();
        assert_eq!(outcome.evicted, 2);
        assert_eq!(dict.get(b"k5", 3), None);
        assert_eq!(dict.get(b"k6", 3), None);
        for alive in ["k0", "k2", "k3", "k7", "k8", "k9"] {
            assert!(dict.get(alive.as_bytes(), 3).is_some(), "{alive}");
        }
        assert!(dict.used_bytes() <= 1000);
    }

    #[test]
    fn growing_an_entry_evicts_others_not_itself() {
        let dict = SharedDict::new(1000);
        for index in 0..7 {
            dict.set(format!("k{index}").as_bytes(), Value::Int(index), None, 0)
                .unwrap();
        }
        // k0 is the least recently used; growing it must evict from k1 on.
        let outcome = dict
            .set(b"k0", Value::Str(vec![0; 400].into()), None, 1)
            .unwrap();
        assert_eq!(outcome.evicted, 3);
        assert_eq!(dict.get(b"k0", 1), Some(Value::Str(vec![0; 400].into())));
        assert_eq!(dict.len(1), 4);
        // Growing to the whole shard leaves only itself.
        let outcome = dict
            .set(
                b"k0",
                Value::Str(vec![0; 1000 - 2 - ENTRY_OVERHEAD].into()),
                None,
                2,
            )
            .unwrap();
        assert_eq!(outcome.evicted, 3);
        assert_eq!(dict.len(2), 1);
        assert_eq!(dict.used_bytes(), 1000);
    }

    #[test]
    fn expired_entries_are_evicted_first_and_not_counted() {
        let dict = SharedDict::new(1000);
        for index in 0..7 {
            let ttl = if index == 3 { Some(10) } else { None };
            dict.set(format!("k{index}").as_bytes(), Value::Int(index), ttl, 0)
                .unwrap();
        }
        // k3 has expired; it goes before k0, the least recently used.
        let outcome = dict.set(b"k7", Value::Int(7), None, 10).unwrap();
        assert_eq!(outcome.evicted, 0);
        assert_eq!(dict.get(b"k0", 10), Some(Value::Int(0)));
        assert_eq!(dict.len(10), 7);
    }

    #[test]
    fn no_memory_for_huge_values() {
        let dict = SharedDict::new(1000);
        dict.set(b"keep", Value::Int(1), None, 0).unwrap();
        let too_big = Value::Str(vec![0; 1000].into());
        assert_eq!(
            dict.set(b"k", too_big.clone(), None, 0),
            Err(DictError::NoMemory)
        );
        assert_eq!(
            dict.add(b"k", too_big.clone(), None, 0),
            Err(DictError::NoMemory)
        );
        // An oversized overwrite keeps the old value.
        assert_eq!(
            dict.set(b"keep", too_big.clone(), None, 0),
            Err(DictError::NoMemory)
        );
        assert_eq!(dict.get(b"keep", 0), Some(Value::Int(1)));
        // Exactly a shard's capacity fits.
        let fits = Value::Str(vec![0; 1000 - 1 - ENTRY_OVERHEAD].into());
        assert_eq!(dict.set(b"f", fits, None, 0).unwrap().evicted, 1);
        assert_eq!(dict.used_bytes(), 1000);

        let dict = SharedDict::new(DEFAULT_CAPACITY);
        let max = dict.max_entry_bytes();
        assert_eq!(max, MIN_SHARD_BYTES);
        assert_eq!(
            dict.set(b"k", Value::Str(vec![0; max].into()), None, 0),
            Err(DictError::NoMemory)
        );
        dict.set(
            b"k",
            Value::Str(vec![0; max - 1 - ENTRY_OVERHEAD].into()),
            None,
            0,
        )
        .unwrap();

        let empty = SharedDict::new(0);
        assert_eq!(
            empty.set(b"", Value::Bool(true), None, 0),
            Err(DictError::NoMemory)
        );
    }

    #[test]
    fn capacity_never_exceeded_under_random_sets() {
        let capacity = 256 * 1024;
        let dict = SharedDict::new(capacity);
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut evicted = 0;
        for step in 0..100_000u64 {
            let key = format!("key-{}", rng.below(5_000)).into_bytes();
            let value = match rng.below(4) {
                0 => Value::Int(rng.next() as i64),
                1 => Value::Bool(true),
                _ => Value::Str(vec![b'v'; rng.below(2_000) as usize].into()),
            };
            let ttl = match rng.below(3) {
                0 => Some(rng.below(1_000)),
                _ => None,
            };
            match rng.below(10) {
                0 => {
                    dict.delete(&key, step);
                }
                1 => {
                    let _ = dict.add(&key, value, ttl, step);
                }
                2 => {
                    let _ = dict.get(&key, step);
                }
                _ => evicted += dict.set(&key, value, ttl, step).unwrap().evicted,
            }
            if step % 97 == 0 {
                assert!(dict.used_bytes() <= capacity, "step {step}");
            }
            for shard in dict.shards.iter() {
                let shard = lock(shard);
                assert!(shard.used <= shard.capacity);
            }
        }
        assert!(evicted > 0, "the test must exercise eviction");
        // Accounting matches the entries actually held.
        for shard in dict.shards.iter() {
            let shard = lock(shard);
            let mut sum = 0;
            let mut count = 0;
            let mut index = shard.head;
            while index != NIL {
                sum += shard.entry(index).charged();
                count += 1;
                index = shard.entry(index).next;
            }
            assert_eq!(sum, shard.used);
            assert_eq!(count, shard.map.len());
            assert_eq!(shard.entries.len() - shard.free.len(), count);
        }
        dict.flush();
        assert_eq!(dict.used_bytes(), 0);
    }

    #[test]
    fn concurrent_incr_is_exact() {
        let dict = Arc::new(SharedDict::new(DEFAULT_CAPACITY));
        const THREADS: i64 = 4;
        const ROUNDS: i64 = 10_000;
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let dict = Arc::clone(&dict);
                std::thread::spawn(move || {
                    let own = format!("own-{thread}").into_bytes();
                    for round in 0..ROUNDS {
                        dict.incr(b"shared", Value::Int(1), Some(Value::Int(0)), None, 0)
                            .unwrap();
                        dict.incr(&own, Value::Int(2), Some(Value::Int(0)), None, 0)
                            .unwrap();
                        let key = format!("t{thread}-{}", round % 100).into_bytes();
                        dict.set(&key, Value::Int(round), None, 0).unwrap();
                        let _ = dict.get(&key, 0);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("worker thread panicked");
        }
        assert_eq!(dict.get(b"shared", 0), Some(Value::Int(THREADS * ROUNDS)));
        for thread in 0..THREADS {
            let own = format!("own-{thread}").into_bytes();
            assert_eq!(dict.get(&own, 0), Some(Value::Int(2 * ROUNDS)));
        }
        assert_eq!(dict.len(0), 1 + THREADS as usize * 101);
    }

    #[test]
    fn named_dicts_are_shared() {
        let first = dict("shared_dict::tests::named", Some(4096));
        let again = dict("shared_dict::tests::named", Some(1));
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(again.capacity(), 4096);
        first.set(b"k", Value::Int(1), None, 0).unwrap();
        assert_eq!(again.get(b"k", 0), Some(Value::Int(1)));
        let default = dict("shared_dict::tests::default", None);
        assert_eq!(default.capacity(), DEFAULT_CAPACITY);
        assert!(!Arc::ptr_eq(&first, &default));
    }

    #[test]
    fn dict_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SharedDict>();
    }

    #[test]
    fn shard_hash_spreads_keys() {
        let dict = SharedDict::new(DEFAULT_CAPACITY);
        for index in 0..1_600 {
            dict.set(
                format!("user:{index}").as_bytes(),
                Value::Int(index),
                None,
                0,
            )
            .unwrap();
        }
        for shard in dict.shards.iter() {
            let count = lock(shard).map.len();
            assert!((50..=200).contains(&count), "unbalanced shard: {count}");
        }
    }

    #[test]
    fn an_account_bounds_what_its_writer_holds_and_gets_it_back_on_every_removal() {
        let dict = SharedDict::new(4 * 1024 * 1024);
        let parent = Account::new(0, None);
        let account = Account::new(10 * 1024, Some(parent.clone()));
        let big = || Value::Str(vec![b'x'; 3 * 1024].into());
        for key in [&b"a"[..], b"b", b"c"] {
            dict.write(Mode::Set, key, big(), None, 0, Some(&account))
                .unwrap();
        }
        let charged = 3 * charge(b"a", &big());
        assert_eq!(account.used(), charged);
        assert_eq!(parent.used(), charged, "counted above too");
        assert_eq!(
            dict.write(Mode::Set, b"d", big(), None, 0, Some(&account)),
            Err(DictError::OverQuota)
        );
        assert_eq!(dict.get(b"d", 0), None, "a refused write changes nothing");
        // Overwriting its own entry charges only the growth.
        dict.write(Mode::Set, b"a", big(), None, 0, Some(&account))
            .unwrap();
        assert_eq!(account.used(), charged);
        // Anyone's delete, an expiry and a flush give the bytes back.
        dict.delete(b"a", 0);
        assert_eq!(account.used(), 2 * charge(b"a", &big()));
        dict.write(Mode::Set, b"e", big(), Some(5), 0, Some(&account))
            .unwrap();
        assert_eq!(dict.get(b"e", 10), None);
        assert_eq!(account.used(), 2 * charge(b"a", &big()));
        // An entry taken over by another writer moves to its account.
        dict.set(b"b", Value::Int(1), None, 0).unwrap();
        assert_eq!(account.used(), charge(b"a", &big()));
        dict.flush();
        assert_eq!(account.used(), 0);
        assert_eq!(parent.used(), 0);
        // A parent at its limit refuses for its children.
        let tight = Account::new(1024, None);
        let child = Account::new(0, Some(tight.clone()));
        assert_eq!(
            dict.write(Mode::Set, b"f", big(), None, 0, Some(&child)),
            Err(DictError::OverQuota)
        );
        assert_eq!(child.used(), 0, "rolled back below the refusing level");
    }
}
