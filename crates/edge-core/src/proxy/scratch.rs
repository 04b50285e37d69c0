//! What the core keeps between messages so that, once warm, the message path allocates nothing
//! (`benches/allocs.rs` counts it): the parser's header table, the editor's edit list and arena,
//! the branch being written, spent byte buffers (sent messages the shell gives back with
//! `Proxy::recycle`, stored requests of finished transactions) and emptied [`Kept`]s.

use std::sync::Arc;

use sip_codec::{EditBuf, HeaderBuf, Kept, Message};

#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// The parser's header table: taken by a parse, given back with `Message::into_header_buf`.
    pub header_buf: HeaderBuf,
    /// The editor's edit list and arena: taken by `Editor::with_buf`, given back by `into_buf`.
    pub edit_buf: EditBuf,
    /// The branch being written for a forwarded request.
    pub branch: String,
    bufs: Vec<Vec<u8>>,
    /// Emptied stored requests (their header index kept, their bytes in `bufs`).
    kept: Vec<Arc<Kept>>,
}

/// Spent buffers kept for reuse, at most (a few bursts' worth per worker: ~200 KB of ~1.5 KB
/// messages; 2 MiB if every one had grown to `KEPT_CAPACITY`).
const KEPT_BUFFERS: usize = 128;
/// A buffer grown larger than this (a big message) is freed rather than kept, and one smaller than
/// the minimum (a keepalive's) is not worth keeping.
const KEPT_CAPACITY: usize = 16 * 1024;
const MIN_KEPT_CAPACITY: usize = 256;

impl Scratch {
    /// Gives back a buffer whose bytes are written: at most 128 are kept, each of 256 B to 16 KiB
    /// (`KEPT_BUFFERS`, `KEPT_CAPACITY`).
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        let size = buf.capacity();
        if self.bufs.len() < KEPT_BUFFERS && (MIN_KEPT_CAPACITY..=KEPT_CAPACITY).contains(&size) {
            buf.clear();
            self.bufs.push(buf);
        }
    }

    /// An empty buffer to keep `len` octets in for a while (a stored request): a spent one only if
    /// it is not much larger, so a long-lived transaction holds about what it needs.
    pub fn take_buf_for(&mut self, len: usize) -> Vec<u8> {
        match self.bufs.last() {
            Some(b) if b.capacity() >= len && b.capacity() <= 2 * len.max(MIN_KEPT_CAPACITY) => {
                self.bufs.pop().unwrap_or_default()
            }
            _ => Vec::with_capacity(len),
        }
    }

    /// `msg` kept for the later steps of its transaction: in a spent byte buffer about its size and
    /// an emptied keep, when there are.
    pub fn keep(&mut self, msg: &Message<'_>) -> Arc<Kept> {
        let bytes = self.take_buf_for(msg.as_bytes().len());
        let mut kept = self.kept.pop().unwrap_or_default();
        match Arc::get_mut(&mut kept) {
            Some(k) => k.refill(msg, bytes),
            // The pool holds only keeps nothing else shares; were one shared, a new one is made.
            None => kept = Arc::new(Kept::new(msg, bytes)),
        }
        kept
    }

    /// A finished transaction's stored request back to the pools (unless a step still holds it).
    pub fn recycle_kept(&mut self, mut kept: Arc<Kept>) {
        let Some(k) = Arc::get_mut(&mut kept) else { return };
        let bytes = k.take_bytes();
        self.recycle(bytes);
        if self.kept.len() < KEPT_BUFFERS {
            self.kept.push(kept);
        }
    }

    /// An empty buffer to write a message into: a spent one, else a new one.
    pub fn take_buf(&mut self) -> Vec<u8> {
        self.bufs.pop().unwrap_or_else(|| Vec::with_capacity(1024))
    }
}
