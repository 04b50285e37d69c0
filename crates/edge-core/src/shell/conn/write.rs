//! Writing a connection: messages queued (bounded by the write bound), handed to rustls in vectored
//! writes, written to the socket in as few syscalls as it takes; the buffers rustls has taken whole
//! kept for the worker to give back to the core; the flush of a closing connection.

use std::collections::VecDeque;
use std::io::{self, Write};

use super::*;

/// A connection's outbox: the whole messages waiting for rustls, in order, bounded by the write
/// bound; handed over in vectored writes; the buffers rustls has taken whole kept for the worker to
/// give back to the core (`Conn::take_spent`), so the next messages are written into them.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    queue: VecDeque<Vec<u8>>,
    /// Octets of the front message already handed to rustls.
    head: usize,
    /// Octets waiting: queued here, and before the connection is up the messages held in its
    /// `Dial::pending`. Counted against the write bound.
    bytes: usize,
    /// Messages were queued since the last flush: the worker flushes once at the end of the loop
    /// turn (`Conn::flush_pending`), so what a turn produced for this peer leaves in as few TLS
    /// records and syscalls as the peer allows.
    pub dirty: bool,
    spent: Vec<Vec<u8>>,
}

impl Outbox {
    /// Counts `len` more octets waiting, unless that passes `bound`.
    pub fn reserve(&mut self, len: usize, bound: usize) -> Result<(), CloseReason> {
        if self.bytes + len > bound {
            return Err(CloseReason::WriteOverflow);
        }
        self.bytes += len;
        Ok(())
    }

    /// Queues one message (within `bound`).
    pub fn push(&mut self, bytes: Vec<u8>, bound: usize) -> Result<(), CloseReason> {
        self.reserve(bytes.len(), bound)?;
        self.queue.push_back(bytes);
        Ok(())
    }

    /// Forgets what was counted for messages held elsewhere (they are pushed again).
    pub fn forget_reserved(&mut self) {
        self.bytes = self
            .queue
            .iter()
            .map(Vec::len)
            .sum::<usize>()
            .saturating_sub(self.head);
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Hands `to` the queued plaintext (up to `FEED_SLICES` messages in one vectored write, which
    /// rustls packs into as few records as their size allows). The number of octets taken; 0 when
    /// `to` is full or nothing waits.
    pub fn feed(&mut self, to: &mut dyn Write) -> io::Result<usize> {
        let mut slices = [io::IoSlice::new(&[]); FEED_SLICES];
        let mut count = 0;
        let mut head = self.head;
        for (slot, m) in slices.iter_mut().zip(self.queue.iter()) {
            *slot = io::IoSlice::new(m.get(head..).unwrap_or(&[]));
            head = 0;
            count += 1;
        }
        if count == 0 {
            return Ok(0);
        }
        let n = to.write_vectored(slices.get(..count).unwrap_or(&[]))?;
        // Drop what was taken from the front of the queue.
        let mut left = n;
        while left > 0 {
            let Some(front) = self.queue.front() else { break };
            let rest = front.len().saturating_sub(self.head);
            if left >= rest {
                left -= rest;
                if let Some(done) = self.queue.pop_front() {
                    if self.spent.len() < SPENT_KEPT {
                        self.spent.push(done);
                    }
                }
                self.head = 0;
            } else {
                self.head += left;
                left = 0;
            }
        }
        self.bytes = self.bytes.saturating_sub(n);
        Ok(n)
    }
}

impl Conn {
    /// The buffers written out since the last call (see `Outbox`).
    pub fn take_spent(&mut self) -> std::vec::Drain<'_, Vec<u8>> {
        self.out.spent.drain(..)
    }

    pub(super) fn enqueue(&mut self, bytes: Vec<u8>) -> Result<(), CloseReason> {
        self.out.push(bytes, self.limits.write_bound)
    }

    /// Writes until the socket would block or nothing is left. Queued messages are handed to rustls
    /// (coalesced into records) until its own buffer is full (its limit, 64 KiB by default, bounds
    /// it), then written with as few syscalls as the socket takes; what still waits is counted in
    /// the outbox against the write bound.
    pub(super) fn flush(&mut self) -> Result<(), CloseReason> {
        self.out.dirty = false;
        self.flush_inner().map(|_| ())
    }

    /// The outbox into rustls: the number of octets rustls took.
    pub(super) fn feed_tls(&mut self) -> Result<usize, CloseReason> {
        // rustls's vectored write coalesces the slices into records itself: no copy of ours.
        self.out
            .feed(&mut self.tls.writer())
            .map_err(|e| CloseReason::Io(IoCause::of(&e)))
    }

    /// `Ok(true)` when everything is written.
    pub(super) fn flush_inner(&mut self) -> Result<bool, CloseReason> {
        if self.phase() == Phase::Connecting {
            return Ok(false);
        }
        loop {
            if matches!(self.phase(), Phase::Up | Phase::Closing) {
                while self.feed_tls()? > 0 {}
            }
            if !self.tls.wants_write()
                && !self.out.is_empty()
                && matches!(self.phase(), Phase::Up | Phase::Closing)
            {
                // rustls takes nothing and has nothing to write: wait for the next readiness.
                return Ok(false);
            }
            while self.tls.wants_write() {
                match self.tls.write_tls(&mut self.stream) {
                    Ok(0) => return Err(CloseReason::Io(IoCause::kind(io::ErrorKind::WriteZero))),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(CloseReason::Io(IoCause::of(&e))),
                }
            }
            if !matches!(self.phase(), Phase::Up | Phase::Closing) || self.out.is_empty() {
                return Ok(true);
            }
        }
    }

    /// Closing: the queue, then close_notify, then a TCP half-close; `Err(reason)` when done.
    pub(super) fn flush_closing(&mut self) -> Result<(), CloseReason> {
        let reason = match &self.state {
            State::Closing { reason, .. } => reason.clone(),
            _ => CloseReason::Requested,
        };
        if !self.flush_inner()? {
            return Ok(());
        }
        if let State::Closing {
            close_notify_sent: sent @ false,
            ..
        } = &mut self.state
        {
            *sent = true;
            self.tls.send_close_notify();
            if !self.flush_inner()? {
                return Ok(());
            }
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        Err(reason)
    }
}

/// Queued messages handed to rustls in one vectored write.
const FEED_SLICES: usize = 32;

/// Written buffers a connection keeps for the worker between two `take_spent` calls, at most.
const SPENT_KEPT: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `room` octets in all, across the slices of a vectored write
    /// (as rustls's writer does).
    struct Room {
        room: usize,
        got: Vec<u8>,
    }

    impl Write for Room {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.room);
            self.room -= n;
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
            let mut n = 0;
            for b in bufs {
                n += self.write(b)?;
            }
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_outbox_hands_over_in_order_across_partial_writes_and_keeps_the_spent_buffers() {
        let mut out = Outbox::default();
        out.push(b"first ".to_vec(), 64).unwrap();
        out.push(b"second ".to_vec(), 64).unwrap();
        out.push(b"third".to_vec(), 64).unwrap();
        assert_eq!(out.bytes(), 18);
        assert!(matches!(
            out.push(vec![0; 47], 64),
            Err(CloseReason::WriteOverflow)
        ));
        let mut to = Room {
            room: 9,
            got: Vec::new(),
        };
        assert_eq!(out.feed(&mut to).unwrap(), 9);
        assert_eq!(
            (out.bytes(), out.spent.len()),
            (9, 1),
            "the first message is spent, the second begun"
        );
        to.room = 100;
        assert_eq!(out.feed(&mut to).unwrap(), 9);
        assert_eq!(to.got, b"first second third");
        assert!(out.is_empty());
        assert_eq!((out.bytes(), out.spent.len()), (0, 3));
        assert_eq!(out.feed(&mut to).unwrap(), 0);
    }

    #[test]
    fn octets_held_before_the_connection_is_up_count_until_they_are_queued() {
        let mut out = Outbox::default();
        out.reserve(40, 64).unwrap();
        assert!(matches!(out.reserve(30, 64), Err(CloseReason::WriteOverflow)));
        out.forget_reserved();
        assert_eq!(out.bytes(), 0);
        out.push(vec![1; 40], 64).unwrap();
        assert_eq!(out.bytes(), 40);
    }
}
