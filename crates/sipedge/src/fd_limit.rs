//! The open-file limit of `sipedge run` (issue 11): every TLS connection is a descriptor, and the
//! usual soft limit (1,024) would refuse connections long before `limits.max_connections` (10,000
//! by default). At start the edge raises its soft `RLIMIT_NOFILE` to the hard limit (which an
//! unprivileged process may do; raising the hard limit itself is the operator's: `ulimit -Hn`,
//! systemd `LimitNOFILE=`, a container runtime's `--ulimit nofile=`), then warns when
//! `max_connections` plus what the edge needs besides its SIP connections ([`headroom`]) does not
//! fit: past that the kernel refuses `accept(2)` and outbound connects with `EMFILE`, not the
//! edge's own connection limit with its 503 and its metric.
//!
//! `rustix` does the system calls (the workspace forbids `unsafe`; already a dependency, for
//! `sipedge reload`).

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Where the kernel caps a soft limit when the hard one is "unlimited" (`fs.nr_open`).
const NR_OPEN: &str = "/proc/sys/fs/nr_open";
/// Linux's default `fs.nr_open`, used when [`NR_OPEN`] cannot be read.
const NR_OPEN_DEFAULT: u64 = 1 << 20;

/// The limit before and after [`raise`] (`None`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit the process was started with.
    pub before: Option<u64>,
    /// The soft limit now.
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// Descriptors the edge keeps open besides its SIP connections (which `max_connections` counts,
/// inbound and outbound): per worker its two listeners, its poll and waker, a DNS UDP socket per
/// server (at most `edge_core::dns::MAX_SERVERS`, 8) and 64 DNS-over-TCP exchanges
/// (`shell/resolver.rs`); the metrics endpoint's listener, poll, waker and 32 connections
/// (`crates/metrics/src/http/`); stdio, the signal pipe and the files a start or a reload reads.
pub fn headroom(workers: usize) -> u64 {
    const PER_WORKER: u64 = 2 + 2 + edge_core::dns::MAX_SERVERS as u64 + 64;
    const METRICS: u64 = 3 + 32;
    const PROCESS: u64 = 3 + 2 + 16;
    PROCESS + METRICS + PER_WORKER * u64::try_from(workers.max(1)).unwrap_or(u64::MAX / PER_WORKER)
}

/// Why [`raise`] left the limit as it was.
#[derive(Debug, thiserror::Error)]
pub enum FdLimitError {
    /// `setrlimit(2)` refused the new soft limit (`None`: unlimited).
    #[error("cannot raise the open-file soft limit from {} to {}: {source}", show(*.from), show(*.to))]
    Raise {
        from: Option<u64>,
        to: Option<u64>,
        source: rustix::io::Errno,
    },
}

/// Raises the soft open-file limit to the hard one (to `fs.nr_open` when the hard one is
/// unlimited). `Err`: the call failed; the limit is then what the process was started with.
pub fn raise() -> Result<FdLimit, FdLimitError> {
    let now = getrlimit(Resource::Nofile);
    let target = match now.maximum {
        Some(hard) => Some(hard),
        None => Some(
            std::fs::read_to_string(NR_OPEN)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(NR_OPEN_DEFAULT),
        ),
    };
    let before = now.current;
    if before.is_none() || target <= before {
        return Ok(FdLimit {
            before,
            soft: before,
            hard: now.maximum,
        });
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: target,
            maximum: now.maximum,
        },
    )
    .map_err(|source| FdLimitError::Raise {
        from: before,
        to: target,
        source,
    })?;
    let after = getrlimit(Resource::Nofile);
    Ok(FdLimit {
        before,
        soft: after.current,
        hard: after.maximum,
    })
}

/// The limit now, without changing it (a reload checks a new `max_connections` against it).
pub fn current() -> Option<FdLimit> {
    let now = getrlimit(Resource::Nofile);
    Some(FdLimit {
        before: now.current,
        soft: now.current,
        hard: now.maximum,
    })
}

/// `unlimited` or the number.
pub fn show(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
}

/// The warning when `max_connections` SIP connections and the [`headroom`] of `workers` do not fit
/// under the soft limit `soft` (`None`: unlimited, always fits).
pub fn shortfall_warning(max_connections: usize, workers: usize, limit: &FdLimit) -> Option<String> {
    let soft = limit.soft?;
    let room = headroom(workers);
    let conns = u64::try_from(max_connections).unwrap_or(u64::MAX);
    let need = conns.saturating_add(room);
    if need <= soft {
        return None;
    }
    let usable = soft.saturating_sub(room);
    Some(format!(
        "limits.max_connections = {max_connections} does not fit the open-file limit: {need} descriptors \
         needed ({max_connections} connections + {room} for listeners, DNS, metrics and the process with \
         {}), the soft limit is {soft} (hard {}); connections past about {usable} will \
         fail with EMFILE instead of a 503 — raise the hard limit (ulimit -Hn, systemd LimitNOFILE=, \
         a container's --ulimit nofile=) or lower limits.max_connections",
        crate::log::count(workers, "worker"),
        show(limit.hard)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(soft: Option<u64>, hard: Option<u64>) -> FdLimit {
        FdLimit {
            before: soft,
            soft,
            hard,
        }
    }

    #[test]
    fn headroom_grows_with_workers() {
        assert_eq!(headroom(1), 21 + 35 + 76);
        assert_eq!(headroom(4) - headroom(1), 3 * 76);
        assert_eq!(headroom(0), headroom(1), "0 workers never means none");
    }

    #[test]
    fn a_limit_that_fits_connections_and_headroom_is_not_warned_about() {
        let room = headroom(2);
        assert_eq!(
            shortfall_warning(10_000, 2, &limit(Some(10_000 + room), Some(20_000))),
            None
        );
        assert_eq!(shortfall_warning(1_000_000, 2, &limit(None, None)), None);
    }

    #[test]
    fn one_descriptor_short_is_warned_about_with_the_numbers() {
        let room = headroom(2);
        let w = shortfall_warning(10_000, 2, &limit(Some(10_000 + room - 1), Some(20_000))).unwrap();
        assert!(w.contains("limits.max_connections = 10000"), "{w}");
        assert!(
            w.contains(&format!("{} descriptors needed", 10_000 + room)),
            "{w}"
        );
        assert!(
            w.contains(&format!("the soft limit is {} (hard 20000)", 10_000 + room - 1)),
            "{w}"
        );
        assert!(w.contains("about 9999 will"), "{w}");
        let unlimited_hard = shortfall_warning(10_000, 2, &limit(Some(1024), None)).unwrap();
        assert!(unlimited_hard.contains("(hard unlimited)"), "{unlimited_hard}");
    }

    #[test]
    fn a_refused_raise_says_from_what_to_what() {
        let e = FdLimitError::Raise {
            from: Some(1024),
            to: None,
            source: rustix::io::Errno::PERM,
        };
        assert_eq!(
            e.to_string(),
            format!(
                "cannot raise the open-file soft limit from 1024 to unlimited: {}",
                rustix::io::Errno::PERM
            )
        );
    }

    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        // This test process's own limit: raising it is what every `sipedge run` does first.
        let got = raise().unwrap();
        let now = getrlimit(Resource::Nofile);
        assert_eq!(got.soft, now.current);
        assert_eq!(got.hard, now.maximum);
        if let (Some(soft), Some(hard)) = (got.soft, got.hard) {
            assert_eq!(soft, hard);
        }
        assert!(got.soft >= got.before || got.before.is_none());
    }
}
