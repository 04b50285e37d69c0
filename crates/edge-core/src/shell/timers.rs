//! Time in the shell, as pure logic with `now` passed in: [`Keepalive`] (the RFC 5626 CRLF keepalive of
//! a link the edge opened) and [`Deadlines`] (every connection's next deadline, ordered, so the event
//! loop in `worker.rs` knows how long it may sleep and which connections to look at when it wakes).
//! What a connection does when its deadline passes is in `conn.rs`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The shortest time we wait for a pong.
pub const MIN_PONG_WAIT: Duration = Duration::from_secs(2);

/// What the keepalive wants done now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepaliveStep {
    /// Nothing due.
    Wait,
    /// Send a ping (`CRLF CRLF`); a pong must follow within the pong wait.
    SendPing,
    /// The last ping went unanswered: the link is dead.
    Dead,
}

/// RFC 5626 §4.4.1 keepalive of one link.
///
/// Lifecycle: idle until `next_ping` → ping sent, pong due at `now + pong_wait` → a pong clears the
/// due time (the next ping follows `interval` after the previous one) → ... ; the pong due time
/// passing without a pong is [`KeepaliveStep::Dead`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keepalive {
    interval: Duration,
    pong_wait: Duration,
    next_ping: Instant,
    pong_due: Option<Instant>,
}

impl Keepalive {
    /// `None` when `interval` is zero (keepalives off).
    pub fn new(now: Instant, interval: Duration) -> Option<Keepalive> {
        if interval.is_zero() {
            return None;
        }
        Some(Keepalive {
            interval,
            pong_wait: (interval / 2).max(MIN_PONG_WAIT),
            next_ping: now + interval,
            pong_due: None,
        })
    }

    /// When [`Keepalive::on_timer`] next has something to do.
    pub fn deadline(&self) -> Instant {
        self.pong_due.unwrap_or(self.next_ping)
    }

    pub fn on_timer(&mut self, now: Instant) -> KeepaliveStep {
        if let Some(due) = self.pong_due {
            return if now >= due {
                KeepaliveStep::Dead
            } else {
                KeepaliveStep::Wait
            };
        }
        if now < self.next_ping {
            return KeepaliveStep::Wait;
        }
        self.pong_due = Some(now + self.pong_wait);
        self.next_ping = now + self.interval;
        KeepaliveStep::SendPing
    }

    /// A pong arrived (a stray one, with no ping outstanding, changes nothing).
    pub fn on_pong(&mut self) {
        self.pong_due = None;
    }

    #[cfg(test)]
    pub fn awaiting_pong(&self) -> bool {
        self.pong_due.is_some()
    }
}

/// The armed deadline of every connection, keyed by slab index.
#[derive(Debug, Default)]
pub struct Deadlines {
    set: BTreeSet<(Instant, usize)>,
}

impl Deadlines {
    /// Moves `key` from its `armed` deadline to `next`; returns what is armed now (store it with the
    /// connection and pass it back next time).
    pub fn rearm(&mut self, key: usize, armed: Option<Instant>, next: Option<Instant>) -> Option<Instant> {
        if armed == next {
            return armed;
        }
        if let Some(at) = armed {
            self.set.remove(&(at, key));
        }
        if let Some(at) = next {
            self.set.insert((at, key));
        }
        next
    }

    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.set.first().map(|&(at, _)| at)
    }

    /// Removes and returns the keys whose deadline is at or before `now` (their armed deadline is
    /// then none).
    pub fn expired(&mut self, now: Instant) -> Vec<usize> {
        let mut keys = Vec::new();
        while let Some(&(at, key)) = self.set.first() {
            if at > now {
                break;
            }
            self.set.remove(&(at, key));
            keys.push(key);
        }
        keys
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.set.len()
    }
}

/// How long to sleep until `deadline` (zero when it has passed; none without one).
pub fn sleep_until(now: Instant, deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(now))
}

/// The earlier of two optional deadlines.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn ping_pong_cycle() {
        let t0 = Instant::now();
        let mut ka = Keepalive::new(t0, 30 * S).unwrap();
        assert_eq!(ka.deadline(), t0 + 30 * S);
        assert_eq!(ka.on_timer(t0 + 29 * S), KeepaliveStep::Wait);
        assert_eq!(ka.on_timer(t0 + 30 * S), KeepaliveStep::SendPing);
        assert!(ka.awaiting_pong());
        // The pong is due half an interval later.
        assert_eq!(ka.deadline(), t0 + 45 * S);
        assert_eq!(ka.on_timer(t0 + 44 * S), KeepaliveStep::Wait);
        ka.on_pong();
        assert_eq!(ka.deadline(), t0 + 60 * S);
        assert_eq!(ka.on_timer(t0 + 60 * S), KeepaliveStep::SendPing);
        assert_eq!(ka.on_timer(t0 + 75 * S), KeepaliveStep::Dead);
    }

    #[test]
    fn short_intervals_wait_at_least_two_seconds_for_a_pong() {
        let t0 = Instant::now();
        let mut ka = Keepalive::new(t0, S).unwrap();
        assert_eq!(ka.on_timer(t0 + S), KeepaliveStep::SendPing);
        assert_eq!(ka.deadline(), t0 + 3 * S);
        // While a pong is due no second ping goes out.
        assert_eq!(ka.on_timer(t0 + 2 * S), KeepaliveStep::Wait);
        assert_eq!(ka.on_timer(t0 + 3 * S), KeepaliveStep::Dead);
        assert!(Keepalive::new(t0, Duration::ZERO).is_none());
    }

    #[test]
    fn deadlines_in_order() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        let a = d.rearm(1, None, Some(t0 + 5 * S));
        let b = d.rearm(2, None, Some(t0 + 2 * S));
        let c = d.rearm(3, None, Some(t0 + 9 * S));
        assert_eq!(d.next(), Some(t0 + 2 * S));
        let a = d.rearm(1, a, Some(t0 + S));
        assert_eq!(d.next(), Some(t0 + S));
        assert_eq!(d.expired(t0 + 2 * S), vec![1, 2]);
        assert_eq!(d.len(), 1);
        assert_eq!(d.rearm(3, c, None), None);
        assert_eq!(d.next(), None);
        let _ = (a, b);
        assert_eq!(sleep_until(t0 + S, Some(t0)), Some(Duration::ZERO));
        assert_eq!(earliest(Some(t0 + S), None), Some(t0 + S));
        assert_eq!(earliest(Some(t0 + S), Some(t0)), Some(t0));
    }
}
