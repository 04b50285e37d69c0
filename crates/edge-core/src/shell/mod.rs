//! The I/O shell around the sans-IO proxy core: [`start`] binds both listeners (one SO_REUSEPORT
//! socket per worker per side), builds the TLS configs and runs one event-loop thread per worker, each
//! with its own core; [`EdgeHandle`] reports the bound addresses and drains and stops the workers. The
//! contract with the core is `proxy/io.rs` (`Input` in, `Effect` out), reached through [`Core`].
//!
//! Files: `settings.rs` (what the binary fills in), `tls.rs` (rustls configs, our certificate,
//! peer identities), `listener.rs` (sockets), `conn/` (one TLS connection: `read.rs`, `write.rs`, `dial.rs`) and `close.rs` (why it
//! ended), `pool.rs` (outbound connections per hop, name resolution), `timers.rs` (keepalive,
//! deadlines), `worker.rs` (the loop) and `worker/effects.rs` (carrying out the core's effects),
//! `log.rs` (JSON log lines), `shared.rs` (the connection count and each worker's published
//! counters). What else crosses threads is listed in docs/architecture.md, Threads. Loopback tests of the whole shell are in `tests.rs`.

mod close;
mod conn;
mod listener;
pub mod log;
pub use log::timestamp as log_timestamp;
mod pool;
mod resolver;
mod settings;
mod shared;
mod timers;
pub(crate) mod tls;
mod worker;

#[cfg(test)]
mod testpki;
#[cfg(test)]
mod tests;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::{Interest, Poll, Waker};

pub use listener::ensure_free as ensure_listen_address_free;
pub use pool::StaticHosts;
pub use settings::{ShellLimits, ShellSettings, TlsIdentity};
pub use shared::{Published, WorkerSnapshot, PUBLISH_PERIOD};
pub use tls::{
    names_host_exactly, peer_identities, provider as crypto_provider, san_dns_names, TlsSetupError,
    PROVIDER_NAME as CRYPTO_PROVIDER,
};

use crate::dns::{DnsConfig, SharedCache};
use crate::proxy::io::{Effect, Input, Level, Side};
use crate::proxy::Proxy;
use crate::Runtime;
use conn::ConnLimits;
use resolver::Resolver;
use shared::ConnCount;
use tls::TlsConfigs;
use worker::{listener_token, Control, Worker, WorkerParts, WAKER};

/// What the shell drives: the proxy core's calls, as a trait so the shell is tested with small fakes.
/// [`Proxy`] is the one real implementation.
pub trait Core {
    fn handle(&mut self, input: Input<'_>, now: Instant, out: &mut Vec<Effect>);
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Effect>);
    fn open_transactions(&self) -> usize;
    fn begin_shutdown(&mut self);
    /// The core's counters, for the shell to publish (`None`: a core that counts nothing).
    fn stats(&self) -> Option<&crate::proxy::stats::CoreStats> {
        None
    }
    /// A reload's part for the core, applied between events (fakes may ignore it): the policy and
    /// the proxy's reloadable settings — nothing of I/O.
    fn apply(&mut self, _policy: &Arc<federation_policy::Policy>, _proxy: &crate::ProxyRuntime) {}
    /// A buffer of `Effect::Send` bytes the shell has written out, for the core to reuse (fakes may
    /// drop it).
    fn recycle(&mut self, _buf: Vec<u8>) {}
}

impl Core for Proxy {
    fn handle(&mut self, input: Input<'_>, now: Instant, out: &mut Vec<Effect>) {
        Proxy::handle(self, input, now, out);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Proxy::poll_timeout(self)
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Effect>) {
        Proxy::handle_timeout(self, now, out);
    }

    fn open_transactions(&self) -> usize {
        Proxy::open_transactions(self)
    }

    fn begin_shutdown(&mut self) {
        Proxy::begin_shutdown(self);
    }

    fn stats(&self) -> Option<&crate::proxy::stats::CoreStats> {
        Some(Proxy::stats(self))
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        Proxy::recycle(self, buf);
    }

    fn apply(&mut self, policy: &Arc<federation_policy::Policy>, proxy: &crate::ProxyRuntime) {
        Proxy::apply(self, policy, proxy);
    }
}

/// Builds the core of a worker, called on that worker's thread with its index and the internal and
/// external addresses as bound (the real ports when port 0 was asked for: the core writes them into
/// `Via` and `Record-Route`).
pub type MakeCore<C> = Arc<dyn Fn(usize, SocketAddr, SocketAddr) -> C + Send + Sync>;
/// Starts the edge: listeners bound, one worker thread per core (or `settings.workers`), each with
/// its own poll, core, pool and resolver; the DNS cache is shared by all workers.
pub fn start<C: Core + 'static>(settings: ShellSettings, make_core: MakeCore<C>) -> io::Result<EdgeHandle> {
    let statics =
        StaticHosts::new(&settings.hosts).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let dns_cache = SharedCache::new(settings.dns_cache_entries);
    let workers = settings.worker_count();
    let tls =
        Arc::new(TlsConfigs::build(&settings).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?);
    let (internal, internal_addr) = listener::bind_group("internal", settings.internal_listen, workers)?;
    let (external, external_addr) = listener::bind_group("external", settings.external_listen, workers)?;
    let conn_count = ConnCount::new(settings.limits.max_connections);
    let mut handle = EdgeHandle {
        internal_addr,
        external_addr,
        workers: Vec::with_capacity(workers),
        conn_count: Arc::clone(&conn_count),
    };
    for (index, (li, le)) in internal.into_iter().zip(external).enumerate() {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut listeners = vec![(li, Side::Internal), (le, Side::External)];
        for (i, (l, _)) in listeners.iter_mut().enumerate() {
            poll.registry()
                .register(l, listener_token(i), Interest::READABLE)?;
        }
        let (control, control_rx) = crossbeam_channel::unbounded();
        let published = Arc::new(Published::default());
        // Alive from its creation: a health check before the thread's first turn must not fail it.
        let born = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        published
            .heartbeat_unix_ms
            .store(born, std::sync::atomic::Ordering::Relaxed);
        let parts = WorkerParts {
            index,
            poll,
            listeners,
            tls: Arc::clone(&tls),
            limits: ConnLimits::from(&settings.limits),
            per_ip_limit: per_ip_share(settings.limits.max_connections_per_ip, workers),
            per_hop_limit: settings.limits.outgoing_tls_per_hop,
            conn_count: Arc::clone(&conn_count),
            published: Arc::clone(&published),
            control: control_rx,
            log_debug: settings.limits.log_debug,
            idle_hook: settings.idle_hook,
        };
        let make_core = Arc::clone(&make_core);
        let (statics, cache) = (statics.clone(), dns_cache.clone());
        let dns = DnsConfig::new(settings.dns_servers.clone());
        // Query ids come from this seed: unpredictable per worker and per start.
        let seed = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), index);
        let spawned = std::thread::Builder::new()
            .name(format!("sipedge-worker-{index}"))
            .spawn(move || {
                let core = make_core(index, internal_addr, external_addr);
                let resolver = Resolver::new(statics, dns, cache, seed, parts.poll.registry())?;
                Worker::new(parts, core, resolver).run()
            });
        let thread = match spawned {
            Ok(thread) => thread,
            Err(e) => {
                handle.shutdown(Duration::ZERO);
                handle.join();
                return Err(e);
            }
        };
        handle.workers.push(WorkerHandle {
            control,
            waker,
            published,
            thread,
        });
    }
    Ok(handle)
}

/// One worker's part of `max_connections_per_ip` (see `worker.rs`).
fn per_ip_share(limit: usize, workers: usize) -> usize {
    limit.div_ceil(workers.max(1)).max(1)
}

#[derive(Debug)]
struct WorkerHandle {
    control: Sender<Control>,
    waker: Arc<Waker>,
    published: Arc<Published>,
    thread: JoinHandle<io::Result<()>>,
}

/// Read access to every worker's counters, from any thread (cheap to clone).
#[derive(Debug, Clone)]
pub struct StatsHandle {
    workers: Vec<Arc<Published>>,
    conn_count: Arc<ConnCount>,
}

impl StatsHandle {
    /// Every worker's last published counters, in worker order.
    pub fn worker_snapshots(&self) -> Vec<WorkerSnapshot> {
        self.workers.iter().map(|w| w.snapshot.lock().clone()).collect()
    }

    /// Every worker's last loop turn (UNIX milliseconds), in worker order.
    pub fn heartbeats(&self) -> Vec<u64> {
        self.workers
            .iter()
            .map(|w| w.heartbeat_unix_ms.load(std::sync::atomic::Ordering::Relaxed))
            .collect()
    }

    /// Connections open now, all workers.
    pub fn open_connections(&self) -> usize {
        self.conn_count.open()
    }
}

/// The running edge. Dropping it leaves the workers running; [`EdgeHandle::shutdown`] then
/// [`EdgeHandle::join`] stops them.
#[derive(Debug)]
pub struct EdgeHandle {
    internal_addr: SocketAddr,
    external_addr: SocketAddr,
    workers: Vec<WorkerHandle>,
    conn_count: Arc<ConnCount>,
}

impl EdgeHandle {
    /// The internal listener's address as bound (the real port when port 0 was asked for).
    pub fn internal_addr(&self) -> SocketAddr {
        self.internal_addr
    }

    /// The external listener's address as bound.
    pub fn external_addr(&self) -> SocketAddr {
        self.external_addr
    }

    /// Stops accepting at once; each worker exits when its open transactions are done or after
    /// `grace`, closing every connection. Returns without waiting: see [`EdgeHandle::join`].
    pub fn shutdown(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        for w in &self.workers {
            // A worker that already exited has dropped its receiver: nothing to stop.
            let _ = w.control.send(Control::Shutdown { deadline });
            let _ = w.waker.wake();
        }
    }

    /// Hands every worker `runtime` (core seam 2) and waits, at most `timeout`, until each has applied
    /// it between two events; returns how many did (a worker that already exited does not). From
    /// then on its core decides with the new policy and timers, and connections accepted or dialled
    /// use the new TLS configs and limits; connections already up keep theirs. The edge-wide
    /// connection cap changes here, once.
    pub fn reload(&mut self, runtime: Arc<Runtime>, timeout: Duration) -> usize {
        self.conn_count.set_max(runtime.limits.max_connections);
        let per_ip_limit = per_ip_share(runtime.limits.max_connections_per_ip, self.workers.len());
        let (done, applied) = crossbeam_channel::bounded(self.workers.len());
        let mut sent = 0;
        for w in &self.workers {
            let message = Control::Reload {
                runtime: Arc::clone(&runtime),
                per_ip_limit,
                done: done.clone(),
            };
            if w.control.send(message).is_ok() {
                sent += 1;
                let _ = w.waker.wake();
            }
        }
        drop(done);
        let deadline = Instant::now() + timeout;
        let mut count = 0;
        while count < sent && applied.recv_deadline(deadline).is_ok() {
            count += 1;
        }
        count
    }

    /// Waits for every worker; a worker that failed (a polling error, a panic) is logged.
    pub fn join(self) {
        if let Err(e) = self.try_join() {
            let text = format!("a worker stopped abnormally: {e}");
            log::write_log(0, &log::record(Level::Error, "worker_failed", text));
        }
    }

    /// Waits for every worker; the first failure (a polling error, a panic) is returned after all
    /// have been waited for.
    pub fn try_join(self) -> io::Result<()> {
        let mut result = Ok(());
        for (i, w) in self.workers.into_iter().enumerate() {
            let outcome = match w.thread.join() {
                Ok(r) => r,
                Err(_) => Err(io::Error::other(format!("worker {i} panicked"))),
            };
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    }

    /// A handle on the workers' counters for another thread (the metrics scrape): it outlives
    /// nothing and stops nothing.
    pub fn stats(&self) -> StatsHandle {
        StatsHandle {
            workers: self.workers.iter().map(|w| Arc::clone(&w.published)).collect(),
            conn_count: Arc::clone(&self.conn_count),
        }
    }

    /// Connections open now, inbound and outbound, all workers.
    pub fn open_connections(&self) -> usize {
        self.conn_count.open()
    }
}
