//! Writing a connection: messages queued (bounded by the write bound), handed to rustls in vectored
//! writes, written to the socket in as few syscalls as it takes; the buffers rustls has taken whole
//! kept for the worker to give back to the core; the flush of a closing connection.

use std::io::{self, Write};

use super::*;

impl Conn {
    /// The buffers written out since the last call (see `spent`).
    pub fn take_spent(&mut self) -> std::vec::Drain<'_, Vec<u8>> {
        self.spent.drain(..)
    }

    pub(super) fn enqueue(&mut self, bytes: Vec<u8>) -> Result<(), CloseReason> {
        if self.wq_bytes + bytes.len() > self.limits.write_bound {
            return Err(CloseReason::WriteOverflow);
        }
        self.wq_bytes += bytes.len();
        self.wq.push_back(bytes);
        Ok(())
    }

    /// Writes until the socket would block or nothing is left. Queued messages are handed to rustls
    /// (coalesced into records) until its own buffer is full (its limit,
    /// 64 KiB by default, bounds it), then written with as few syscalls as the socket takes; what
    /// still waits is counted in `wq_bytes` against the write bound.
    pub(super) fn flush(&mut self) -> Result<(), CloseReason> {
        self.dirty = false;
        self.flush_inner().map(|_| ())
    }

    /// Hands rustls the queued plaintext (up to `FEED_SLICES` messages in one vectored write, which
    /// rustls packs into as few records as their size allows). The number of octets rustls took; 0
    /// when its buffer is full or nothing waits.
    pub(super) fn feed_tls(&mut self) -> Result<usize, CloseReason> {
        // rustls's vectored write coalesces the slices into records itself: no copy of ours, and
        // no buffer kept per connection.
        let mut slices = [io::IoSlice::new(&[]); FEED_SLICES];
        let mut count = 0;
        let mut head = self.wq_head;
        for (slot, m) in slices.iter_mut().zip(self.wq.iter()) {
            *slot = io::IoSlice::new(m.get(head..).unwrap_or(&[]));
            head = 0;
            count += 1;
        }
        if count == 0 {
            return Ok(0);
        }
        let n = self
            .tls
            .writer()
            .write_vectored(slices.get(..count).unwrap_or(&[]))
            .map_err(|e| CloseReason::Io(IoCause::of(&e)))?;
        // Drop what rustls took from the front of the queue.
        let mut left = n;
        while left > 0 {
            let Some(front) = self.wq.front() else { break };
            let rest = front.len().saturating_sub(self.wq_head);
            if left >= rest {
                left -= rest;
                if let Some(done) = self.wq.pop_front() {
                    if self.spent.len() < SPENT_KEPT {
                        self.spent.push(done);
                    }
                }
                self.wq_head = 0;
            } else {
                self.wq_head += left;
                left = 0;
            }
        }
        self.wq_bytes = self.wq_bytes.saturating_sub(n);
        Ok(n)
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
                && !self.wq.is_empty()
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
            if !matches!(self.phase(), Phase::Up | Phase::Closing) || self.wq.is_empty() {
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
