//! [`Runtime`]: the one immutable snapshot of everything a running edge may change on a reload (core
//! seam 2) — the federation policy, the proxy's next hop and transaction timers, the connection limits
//! and both sides' TLS configs (our certificates and the trust roots), with the configuration
//! generation it came from. The binary builds it off the event loops (`Runtime::build`, TLS parsed
//! here and never on a loop) and hands it to every worker with `EdgeHandle::reload`
//! (`shell/mod.rs`); each worker applies it between events (`shell/worker.rs`, `control()`), its
//! core through `Proxy::apply` (`proxy/mod.rs`), which gets the sans-IO part only: the policy and
//! [`ProxyRuntime`]; the TLS configs and limits stay with the shell. What needs a restart (listener addresses, workers,
//! DNS) is not in it.

use std::sync::Arc;
use std::time::Duration;

use federation_policy::{Fqdn, Policy};

use crate::shell::tls::TlsConfigs;
use crate::shell::{ShellLimits, ShellSettings, TlsSetupError};

/// The proxy core's reloadable settings (the rest of `ProxySettings` is fixed at start: our names
/// and listener ports are written into the Via and Record-Route of dialogs in progress).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRuntime {
    /// Where requests from partners go (the front-end pool).
    pub internal_next_hop: Fqdn,
    /// Non-INVITE client transaction timeout (Timer F).
    pub timer_f: Duration,
    /// INVITE until a provisional response (Timer B).
    pub timer_b: Duration,
    /// INVITE after a provisional response (Timer C).
    pub timer_c: Duration,
    /// `push.proxy_uri` and `push.timeout_ms` (the relay's policy settings go to the shared relay).
    pub push_uri: Option<String>,
    pub push_timeout: Duration,
    /// `limits.max_subscriptions` (edge-wide).
    pub max_subscriptions: usize,
}

/// One reload's snapshot, shared read-only by every worker (`Arc<Runtime>`).
#[derive(Debug)]
pub struct Runtime {
    pub policy: Arc<Policy>,
    pub proxy: ProxyRuntime,
    /// Limits for connections accepted or dialled from now on (open ones keep theirs).
    pub limits: ShellLimits,
    pub(crate) tls: Arc<TlsConfigs>,
    /// 1 at start, +1 per applied reload.
    pub generation: u64,
}

impl Runtime {
    /// Builds the TLS configs of `settings` (its identities and trust roots; its listen addresses and
    /// worker count are ignored) into a snapshot. Fails as start-up would on bad TLS material.
    pub fn build(
        settings: &ShellSettings,
        policy: Arc<Policy>,
        proxy: ProxyRuntime,
        generation: u64,
    ) -> Result<Runtime, TlsSetupError> {
        Ok(Runtime {
            policy,
            proxy,
            limits: settings.limits.clone(),
            tls: Arc::new(TlsConfigs::build(settings)?),
            generation,
        })
    }
}
