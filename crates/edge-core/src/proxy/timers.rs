//! The core's timers: one ordered set of `(deadline, id)` and each armed timer's kind by id, so
//! re-arming (a stream of provisional responses re-arms Timer C) removes the old entry instead of
//! leaving it until its deadline. What a timer does when it fires is `txn.rs`, `Proxy::on_timer`.

use std::collections::BTreeSet;
use std::time::Instant;

use super::ids::TimerId;
use super::txn::TimerKind;
use super::FastMap;

#[derive(Debug, Default)]
pub(crate) struct Timers {
    by_deadline: BTreeSet<(Instant, TimerId)>,
    kinds: FastMap<TimerId, (Instant, TimerKind)>,
}

impl Timers {
    /// Arms timer `id` (a fresh id from the core's counter) for `at`.
    pub fn arm(&mut self, id: TimerId, at: Instant, kind: TimerKind) {
        self.by_deadline.insert((at, id));
        self.kinds.insert(id, (at, kind));
    }

    /// Removes a timer entirely; an id that already fired or was never armed is ignored.
    pub fn disarm(&mut self, id: Option<TimerId>) {
        let Some(id) = id else { return };
        if let Some((at, _)) = self.kinds.remove(&id) {
            self.by_deadline.remove(&(at, id));
        }
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.first().map(|(at, _)| *at)
    }

    /// The earliest timer due at `now`, removed; `None` when none is.
    pub fn pop_due(&mut self, now: Instant) -> Option<(TimerId, TimerKind)> {
        loop {
            let &(at, id) = self.by_deadline.first()?;
            if at > now {
                return None;
            }
            self.by_deadline.remove(&(at, id));
            if let Some((_, kind)) = self.kinds.remove(&id) {
                return Some((id, kind));
            }
        }
    }

    /// Timers armed.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_deadline.len()
    }

    /// Entries in the kind table (equal to [`Timers::len`]: the tests hold the two tables in step).
    #[cfg(test)]
    pub fn kinds_len(&self) -> usize {
        self.kinds.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::proxy::ids::ServerId;

    #[test]
    fn due_timers_come_out_in_deadline_order_and_disarmed_ones_never() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.arm(
            TimerId(1),
            t0 + Duration::from_secs(3),
            TimerKind::Linger(ServerId(1)),
        );
        t.arm(
            TimerId(2),
            t0 + Duration::from_secs(1),
            TimerKind::Linger(ServerId(2)),
        );
        t.arm(
            TimerId(3),
            t0 + Duration::from_secs(2),
            TimerKind::PushRetry(ServerId(3)),
        );
        t.disarm(Some(TimerId(3)));
        t.disarm(Some(TimerId(99)));
        t.disarm(None);
        assert_eq!((t.len(), t.kinds_len()), (2, 2));
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert!(t.pop_due(t0).is_none());
        let due: Vec<TimerId> = std::iter::from_fn(|| t.pop_due(t0 + Duration::from_secs(5)))
            .map(|(id, _)| id)
            .collect();
        assert_eq!(due, [TimerId(2), TimerId(1)]);
        assert_eq!((t.len(), t.kinds_len(), t.next_deadline()), (0, 0, None));
    }
}
