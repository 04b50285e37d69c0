//! `GET /probe/push` on the metrics listener: the `sipedge test-push` transaction (`test_push.rs`)
//! run by the edge itself, so a Kubernetes probe or an alert can use it. 200 on success, 503 on
//! failure, with `{"TargetFqdn","Result","Latency","Error","Diagnosis","cached"}` as JSON.
//!
//! The client identity: the edge connects to its own internal listener (its bound address) as a
//! known server. A production configuration has no client key of its own, and a new key pair just
//! for the probe would be a second secret to deploy, so the probe presents the edge's *internal*
//! certificate and key (`internal.cert_file`/`key_file`) and trusts `internal.ca_file` plus the CAs
//! in that chain. For the probe to pass, that certificate's name must be a known server
//! (`[[internal.known_servers]] fqdn = "<internal.fqdn>"`), it must be issued by a CA in
//! `internal.ca_file` and allow client authentication (no EKU, or clientAuth); otherwise the probe
//! fails and its Diagnosis says which. The embedded default uses the local PKI's `client.pem`.
//!
//! Rate limit and cache: at most one transaction at a time; its outcome is served from a cache
//! (`"cached": true`) for [`CACHE_FOR`] after it finished. An applied reload empties the cache, so
//! a fixed configuration is seen by the next probe. The metrics thread never waits: the transaction
//! runs on a thread of its own and the HTTP request is parked until it ends, for at most
//! `push.timeout_ms` + [`MARGIN`] (the transaction's own timeout) + [`MARGIN`], then 504.

use std::net::SocketAddr;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sipedge_metrics::{Probe, Reply};

use crate::config::local_pki;
use crate::config::{Config, TlsIdentity};
use crate::sip_client::Target;
use crate::test_push::{self, Outcome, Runner, Setup};

/// The path served.
pub const PATH: &str = "/probe/push";
/// How long an outcome is served from the cache.
pub const CACHE_FOR: Duration = Duration::from_secs(5);
/// Added to `push.timeout_ms` for the transaction, and again for the HTTP wait.
pub const MARGIN: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct PushProbe {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// From the running configuration: the setup, or why there is none (as the outcome to serve).
    setup: Option<Result<Setup, Outcome>>,
    /// The internal listener's bound address.
    internal: Option<SocketAddr>,
    /// Bumped by each configuration, so an outcome of an older one is not cached.
    generation: u64,
    cache: Option<(Instant, Outcome)>,
    waiters: Vec<Sender<Reply>>,
    running: bool,
    /// Transactions run (cached answers not counted): `[success, failure]`.
    results: [u64; 2],
    /// The last transaction's outcome and when it finished (kept across reloads: the status page).
    last: Option<(Instant, Outcome)>,
}

impl PushProbe {
    /// The internal listener's bound address (known once the listeners are up).
    pub fn set_internal_addr(&self, addr: SocketAddr) {
        self.inner.lock().internal = Some(addr);
    }

    /// Takes the facts of `config` (at start and after each applied reload) and empties the cache.
    pub fn configure(&self, config: &Config) {
        let setup = setup(config);
        let mut inner = self.inner.lock();
        inner.setup = Some(setup);
        inner.generation = inner.generation.wrapping_add(1);
        inner.cache = None;
    }

    /// Transactions the probe ran so far: `(successes, failures)` (for `sipedge_push_probes_total`).
    pub fn results(&self) -> (u64, u64) {
        let r = self.inner.lock().results;
        (r[0], r[1])
    }

    /// The last probe's outcome and how long ago it finished; `None` before the first.
    pub fn last(&self) -> Option<(std::time::Duration, Outcome)> {
        self.inner
            .lock()
            .last
            .as_ref()
            .map(|(at, o)| (at.elapsed(), o.clone()))
    }

    /// The answer for `path`: `None` unless it is [`PATH`].
    pub fn answer(&self, path: &str) -> Option<Probe> {
        (path == PATH).then(|| self.answer_now())
    }

    fn answer_now(&self) -> Probe {
        let mut inner = self.inner.lock();
        if let Some((at, outcome)) = &inner.cache {
            if at.elapsed() < CACHE_FOR {
                return Probe::Ready(reply(outcome, true));
            }
        }
        let Some(setup) = inner.setup.clone() else {
            let o = Outcome::setup_failure("", "the edge is starting", "try again in a moment");
            return Probe::Ready(reply(&o, false));
        };
        let internal = inner.internal;
        let wait = match &setup {
            Ok(s) => s.timeout + MARGIN,
            Err(_) => MARGIN,
        };
        let (tx, rx) = mpsc::channel();
        inner.waiters.push(tx);
        if !inner.running {
            inner.running = true;
            let generation = inner.generation;
            let shared = Arc::clone(&self.inner);
            let spawned = std::thread::Builder::new()
                .name("sipedge-probe-push".to_owned())
                .spawn(move || run(&shared, setup, internal, generation));
            if let Err(e) = spawned {
                inner.running = false;
                inner.waiters.clear();
                let o = Outcome::setup_failure("", &format!("cannot start the probe: {e}"), "");
                return Probe::Ready(reply(&o, false));
            }
        }
        Probe::Pending { reply: rx, wait }
    }
}

/// One transaction on the probe's thread; its outcome goes to every waiter and (same
/// configuration) into the cache.
fn run(shared: &Mutex<Inner>, setup: Result<Setup, Outcome>, internal: Option<SocketAddr>, generation: u64) {
    let outcome = match setup {
        Ok(mut s) => {
            if let Some(a) = internal.and_then(test_push::connectable) {
                s.target.edge = a;
            }
            test_push::transaction(&s)
        }
        Err(o) => o,
    };
    let mut inner = shared.lock();
    if let Some(n) = inner.results.get_mut(usize::from(!outcome.success)) {
        *n += 1;
    }
    if inner.generation == generation {
        inner.cache = Some((Instant::now(), outcome.clone()));
    }
    inner.last = Some((Instant::now(), outcome.clone()));
    for w in inner.waiters.drain(..) {
        let _ = w.send(reply(&outcome, false));
    }
    inner.running = false;
}

fn reply(outcome: &Outcome, cached: bool) -> Reply {
    Reply {
        status: if outcome.success { 200 } else { 503 },
        content_type: "application/json".to_owned(),
        body: format!("{}\n", outcome.json(cached)),
    }
}

/// The probe's setup from the running configuration.
fn setup(config: &Config) -> Result<Setup, Outcome> {
    let target_fqdn = config.internal().fqdn.to_string();
    let identity = match &config.internal().tls {
        TlsIdentity::Files(_) => test_push::internal_identity(config),
        TlsIdentity::SelfSigned => test_push::local_identity(&local_pki::state_dir().path),
    };
    let (tls, client_name) = identity.map_err(|e| {
        Outcome::setup_failure(
            &target_fqdn,
            &e.to_string(),
            "the probe presents the edge's internal certificate and key as a known server: check \
             internal.cert_file and internal.key_file",
        )
    })?;
    let edge = test_push::connectable(config.internal().listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], config.internal().listen.port())));
    let target = Target {
        edge,
        server_name: target_fqdn,
        tls,
    };
    let timeout = config.push().timeout + MARGIN;
    Ok(Setup::of(config, target, client_name, timeout, Runner::Probe))
}
