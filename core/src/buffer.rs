//! Byte buffers of a connection: bytes are appended at the end and consumed
//! from the front without moving the rest until it pays to compact.

/// Past this capacity a buffer gives memory back: all of it when it
/// empties, and the unused part when what it holds falls to a quarter of
/// it. So a connection that once moved a large payload does not keep its
/// memory while idle, nor while a small remainder (the start of the next
/// pipelined command) stays buffered.
const SHRINK_ABOVE: usize = 64 * 1024;

#[derive(Default)]
pub struct Buffer {
    data: Vec<u8>,
    start: usize,
}

impl Buffer {
    pub fn new() -> Buffer {
        Buffer::default()
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.data.len() - self.start
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.data.len() == self.start
    }

    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        &self.data[self.start..]
    }

    /// Drops the first `n` bytes.
    #[inline]
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n.min(self.len());
        if self.start == self.data.len() {
            self.data.clear();
            self.start = 0;
            if self.data.capacity() > SHRINK_ABOVE {
                self.data = Vec::new();
            }
        } else if self.data.capacity() > SHRINK_ABOVE && self.len() <= self.data.capacity() / 4 {
            self.shrink();
        }
    }

    /// Moves what is left to an allocation of its size: copies at most a
    /// quarter of the capacity, which it halves at least.
    #[cold]
    #[inline(never)]
    fn shrink(&mut self) {
        let mut left = Vec::with_capacity(self.len());
        left.extend_from_slice(self.as_slice());
        self.data = left;
        self.start = 0;
    }

    /// Moves the first `n` bytes (at most all) into `out`, which must be
    /// empty, and consumes them. A large front is moved, not copied: `out`
    /// takes the buffer's memory and what follows it moves to a new one, so
    /// a large value is held once, not twice, on its way to Lua.
    pub fn take_front(&mut self, n: usize, out: &mut Vec<u8>) {
        debug_assert!(out.is_empty());
        let n = n.min(self.len());
        if n <= SHRINK_ABOVE {
            out.extend_from_slice(&self.as_slice()[..n]);
            self.consume(n);
            return;
        }
        if self.start > 0 {
            self.data.drain(..self.start);
            self.start = 0;
        }
        let rest = self.data.split_off(n);
        *out = std::mem::replace(&mut self.data, rest);
    }

    /// Appends bytes, compacting first when the consumed front is larger
    /// than what is left (so a stream never makes the buffer grow forever).
    #[inline]
    pub fn extend(&mut self, bytes: &[u8]) {
        self.compact();
        self.data.extend_from_slice(bytes);
    }

    /// Lets `write` append at the end, as [`Buffer::extend`] does: for the
    /// encoders of `proto`, which write into a `Vec`. `write` may only
    /// append.
    #[inline]
    pub fn append<R>(&mut self, write: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        self.compact();
        write(&mut self.data)
    }

    #[inline]
    fn compact(&mut self) {
        if self.start > 0 && self.start >= self.len() {
            self.data.drain(..self.start);
            self.start = 0;
        }
    }

    /// Makes room for `additional` more bytes, or says the system refused:
    /// a caller that appends what a script chose calls this first, so that
    /// a refusal is its error, not an abort.
    pub fn try_reserve(
        &mut self,
        additional: usize,
    ) -> Result<(), std::collections::TryReserveError> {
        self.data.try_reserve(additional)
    }

    pub fn clear(&mut self) {
        self.data = Vec::new();
        self.start = 0;
    }

    /// Bytes held in memory, for accounting.
    pub fn capacity(&self) -> usize {
        self.data.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_consume_compact() {
        let mut buffer = Buffer::new();
        buffer.extend(b"hello world");
        buffer.consume(6);
        assert_eq!(buffer.as_slice(), b"world");
        buffer.extend(b"!");
        assert_eq!(buffer.as_slice(), b"world!");
        buffer.consume(6);
        assert!(buffer.is_empty());
        assert_eq!(buffer.len(), 0);
    }

    #[test]
    fn large_buffer_shrinks_when_empty() {
        let mut buffer = Buffer::new();
        buffer.extend(&vec![7u8; 1 << 20]);
        buffer.consume(1 << 20);
        assert_eq!(buffer.capacity(), 0);
    }

    #[test]
    fn a_small_remainder_of_a_large_buffer_is_moved_to_a_small_one() {
        let mut buffer = Buffer::new();
        buffer.extend(&vec![7u8; 1 << 20]);
        buffer.extend(b"next");
        buffer.consume(1 << 20);
        assert_eq!(buffer.as_slice(), b"next");
        assert!(buffer.capacity() <= SHRINK_ABOVE, "{}", buffer.capacity());
        // Small buffers are left alone: no copy per message.
        let mut small = Buffer::new();
        small.extend(&[1u8; 1000]);
        let capacity = small.capacity();
        small.consume(999);
        assert_eq!(small.capacity(), capacity);
    }

    #[test]
    fn take_front_moves_a_large_front_and_keeps_the_rest() {
        let mut buffer = Buffer::new();
        buffer.extend(b"ab");
        buffer.consume(1);
        let mut large = vec![9u8; 1 << 20];
        large[0] = b'b';
        buffer.extend(&large[1..]);
        buffer.extend(b"rest");
        let mut out = Vec::new();
        buffer.take_front(1 << 20, &mut out);
        assert_eq!(out, large);
        assert_eq!(buffer.as_slice(), b"rest");
        // A small front is copied.
        let mut small = Vec::new();
        buffer.take_front(2, &mut small);
        assert_eq!(small, b"re");
        assert_eq!(buffer.as_slice(), b"st");
    }

    #[test]
    fn streaming_does_not_grow_without_bound() {
        let mut buffer = Buffer::new();
        for _ in 0..10_000 {
            buffer.extend(&[1u8; 100]);
            buffer.consume(90);
        }
        assert_eq!(buffer.len(), 1_000_000 - 900_000);
        assert!(buffer.capacity() < 4 * buffer.len() + 1024);
    }
}
