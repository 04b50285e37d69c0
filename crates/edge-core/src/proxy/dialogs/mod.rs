//! Subscription liveness (issue 12; docs/architecture.md, Subscriptions): the SUBSCRIBE dialogs
//! this worker record-routes, and the links they depend on. A presence watcher gets no heartbeat:
//! when the federation link behind its subscription dies, NOTIFYs just stop and it finds out at
//! its next refresh, often an hour later. The edge is the one element that sees the link die; it
//! sends the subscriber a NOTIFY with `Subscription-State: terminated;reason=deactivated`
//! (RFC 6665 §4.1.3: re-subscribe at once) and an `ms-diagnostics` saying which link failed.
//!
//! **What is tracked.** A subscription is created when a 2xx answers an out-of-dialog SUBSCRIBE the
//! edge forwarded: Call-ID, both tags, the Event, the subscriber's From and Contact (its remote
//! target), the route set from the edge towards it (the Record-Route entries the SUBSCRIBE carried
//! when it reached the edge), and the link on each side. A refresh's 2xx moves the expiry; a NOTIFY
//! from the notifier raises the notifier's CSeq, and one with `Subscription-State: terminated`
//! removes it, as do a 481 to a request in the dialog and the expiry. At most `max_subscriptions`
//! for the whole edge (a shared count): a new SUBSCRIBE past it gets 503 (id 1913).
//!
//! **What a link is, and when it is dead.** A link is the peer on one side by name: for a
//! connection the edge dialled, the host it dialled; for one it accepted, the names of the peer's
//! certificate. A hop may have several pooled connections (dialled and accepted): the link lives
//! while any of this worker's connections to that name is up. It is dead when the last of them ends
//! for a reason that says the peer is gone (`LinkEnd::link_failed`: peer close, reset, TLS failure,
//! keepalive without pong, write overflow — not an idle close or the edge's own close), or when a
//! dial to it fails while none is up. Each worker judges its own connections (each has its own pool);
//! a dialog lives in the worker that forwarded its SUBSCRIBE. A worker that sees its last connection
//! to a peer die while another worker still holds one ends its subscriptions early: the subscriber
//! re-subscribes, which costs one SUBSCRIBE; it never leaves one silently stale.
//!
//! **The CSeq of the edge's NOTIFY.** The notifier owns that CSeq space; the edge cannot know
//! numbers it did not see. It uses the highest CSeq of the notifier's requests this worker forwarded
//! in the dialog plus [`CSEQ_MARGIN`] + 1 (capped at 2^31 − 1): above every request the notifier
//! sent through this worker, and above up to `CSEQ_MARGIN` that reached the edge on another
//! worker's connection. The dialog ends with this NOTIFY, so a later request of the notifier's meets
//! 481 at the subscriber, whatever its CSeq.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use federation_policy::{DiagnosticId, Fqdn};
use sip_codec::{HeaderName, Message, RequestBuilder, SipUri, Uri};

use super::ids::{ServerId, SubscriptionId, TimerId};
use super::io::{ConnId, Destination, Effect, Level, LinkEnd, NextHop, PeerInfo, Side, Token};
use super::route;
use super::txn::{Pending, TimerKind};
use super::{FastMap, Proxy};

/// See the module documentation: the CSeq head room the edge's terminating NOTIFY leaves for the
/// notifier's requests this worker did not see.
pub const CSEQ_MARGIN: u32 = 1000;

mod liveness;

/// The expiry when a SUBSCRIBE's 2xx names none (RFC 6665 §4.2.1.1 requires one; an hour is the
/// usual presence default).
const DEFAULT_EXPIRES: u32 = 3600;

/// How long the edge's own NOTIFY waits for its answer (Timer F); the answer changes nothing.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(32);

/// The edge-wide count of tracked subscriptions, shared by every worker's core.
pub type SubscriptionCount = Arc<AtomicUsize>;

/// A peer on one side, by name (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct LinkKey {
    pub side: Side,
    pub name: String,
}

/// One end of a subscription.
#[derive(Debug, Clone)]
pub(crate) struct Party {
    pub side: Side,
    /// The link this party is reached over.
    pub link: String,
    /// Its name-addr with its tag, as in the SUBSCRIBE's From (subscriber) or the 2xx's To
    /// (notifier).
    pub addr: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    /// Its key in the table: Call-ID, subscriber tag and notifier tag (`dialog_key`); the Call-ID
    /// is read from it.
    pub key: String,
    pub event: String,
    pub subscriber: Party,
    /// The subscriber's remote target (the SUBSCRIBE's Contact URI).
    pub target: String,
    /// From the edge towards the subscriber: the Record-Route values the SUBSCRIBE carried when it
    /// reached the edge, top first.
    pub route: Vec<String>,
    pub notifier: Party,
    /// The partner label of the metric (a configured partner's domain, else `other`).
    pub partner: String,
    /// The highest CSeq of the notifier's requests forwarded in the dialog.
    pub notifier_cseq: u32,
    pub timer: Option<TimerId>,
}

impl Subscription {
    pub fn call_id(&self) -> &str {
        self.key.split('\n').next().unwrap_or("")
    }

    /// The octets this subscription holds (for the per-dialog memory figure and the test of it);
    /// its key is held twice, here and in the table's index.
    pub fn heap_bytes(&self) -> usize {
        2 * self.key.capacity()
            + self.partner.capacity()
            + self.event.capacity()
            + self.subscriber.link.capacity()
            + self.subscriber.addr.capacity()
            + self.target.capacity()
            + self.route.iter().map(String::capacity).sum::<usize>()
            + self.route.capacity() * std::mem::size_of::<String>()
            + self.notifier.link.capacity()
            + self.notifier.addr.capacity()
    }
}

/// This worker's subscriptions and the up connections of each link.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    /// Call-ID, subscriber tag, notifier tag → id. The key is the peers' choice: std's SipHash with
    /// a per-process random key, so a flood of colliding keys cannot degrade the table.
    by_key: HashMap<String, SubscriptionId>,
    subs: FastMap<SubscriptionId, Subscription>,
    /// Up connections per link (this worker's).
    links: HashMap<LinkKey, u32>,
    /// The edge's own NOTIFYs awaiting an answer, by branch.
    local: FastMap<String, LocalRequest>,
}

/// A request the edge originated (a terminating NOTIFY): its answer is absorbed, never forwarded.
#[derive(Debug, Clone)]
pub(crate) struct LocalRequest {
    pub conn: Option<ConnId>,
    pub timer: TimerId,
    /// Its token (`Proxy::local_tokens` maps it back to the branch until the entry goes).
    pub token: Token,
}

fn dialog_key(call_id: &str, subscriber_tag: &str, notifier_tag: &str) -> String {
    // A newline cannot occur in a header value: no two different triples give one key.
    let mut k = String::with_capacity(call_id.len() + subscriber_tag.len() + notifier_tag.len() + 2);
    for part in [call_id, "\n", subscriber_tag, "\n", notifier_tag] {
        k.push_str(part);
    }
    k
}

/// The link names a connection counts for: the host dialled, or the certificate's names.
fn link_names(peer: &PeerInfo) -> Vec<String> {
    match &peer.dialled {
        Some(f) => vec![f.host().to_string().to_ascii_lowercase()],
        None => peer.identities.iter().map(|i| i.to_ascii_lowercase()).collect(),
    }
}

/// A header's value as text (unfolded), or empty.
fn text(msg: &Message<'_>, name: HeaderName) -> String {
    msg.header(name)
        .map(|h| String::from_utf8_lossy(&h.unfolded()).into_owned())
        .unwrap_or_default()
}

fn is_notify(method: &str) -> bool {
    // BENOTIFY: Lync's best-effort NOTIFY (no response), in the same dialog.
    matches!(method, "NOTIFY" | "BENOTIFY")
}

impl Subscriptions {
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// The edge's own requests still waiting for an answer.
    #[cfg(test)]
    pub fn local_pending(&self) -> usize {
        self.local.len()
    }

    fn link_up(&mut self, side: Side, names: Vec<String>) {
        for name in names {
            *self.links.entry(LinkKey { side, name }).or_default() += 1;
        }
    }

    /// A connection of `side` with `names` ended: the links left without a connection.
    fn link_down(&mut self, side: Side, names: Vec<String>) -> Vec<LinkKey> {
        let mut dead = Vec::new();
        for name in names {
            let key = LinkKey { side, name };
            match self.links.get_mut(&key) {
                Some(n) if *n > 1 => *n -= 1,
                _ => {
                    self.links.remove(&key);
                    dead.push(key);
                }
            }
        }
        dead
    }

    fn link_is_up(&self, key: &LinkKey) -> bool {
        self.links.get(key).is_some_and(|&n| n > 0)
    }

    /// The subscriptions whose notifier, or whose subscriber, is reached over `link`.
    fn depending_on(&self, link: &LinkKey) -> (Vec<SubscriptionId>, Vec<SubscriptionId>) {
        let on = |p: &Party| p.side == link.side && p.link == link.name;
        let (mut notifier, mut subscriber) = (Vec::new(), Vec::new());
        for (&id, s) in &self.subs {
            if on(&s.notifier) {
                notifier.push(id);
            } else if on(&s.subscriber) {
                subscriber.push(id);
            }
        }
        (notifier, subscriber)
    }

    fn insert(&mut self, id: SubscriptionId, s: Subscription) {
        self.by_key.insert(s.key.clone(), id);
        self.subs.insert(id, s);
    }

    fn remove(&mut self, id: SubscriptionId) -> Option<Subscription> {
        let s = self.subs.remove(&id)?;
        self.by_key.remove(&s.key);
        Some(s)
    }

    fn find(&self, call_id: &str, subscriber_tag: &str, notifier_tag: &str) -> Option<SubscriptionId> {
        self.by_key
            .get(&dialog_key(call_id, subscriber_tag, notifier_tag))
            .copied()
    }
}

/// Why a subscription ended, as the metric counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionEnd {
    /// The notifier's link died: the edge sent the subscriber its terminating NOTIFY.
    NotifierLinkFailed,
    /// The subscriber's link died: nobody to tell.
    SubscriberLinkFailed,
    /// The notifier ended it (NOTIFY with `Subscription-State: terminated`).
    Terminated,
    /// A 481 to a request in the dialog.
    Gone,
    /// Not refreshed in time.
    Expired,
}

impl SubscriptionEnd {
    pub const ALL: [SubscriptionEnd; 5] = [
        SubscriptionEnd::NotifierLinkFailed,
        SubscriptionEnd::SubscriberLinkFailed,
        SubscriptionEnd::Terminated,
        SubscriptionEnd::Gone,
        SubscriptionEnd::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionEnd::NotifierLinkFailed => "notifier_link_failed",
            SubscriptionEnd::SubscriberLinkFailed => "subscriber_link_failed",
            SubscriptionEnd::Terminated => "terminated",
            SubscriptionEnd::Gone => "gone",
            SubscriptionEnd::Expired => "expired",
        }
    }

    /// Its slot in `CoreStats::subscriptions_ended`.
    pub fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_do_not_run_together() {
        assert_ne!(dialog_key("a", "bc", "d"), dialog_key("ab", "c", "d"));
        assert_ne!(dialog_key("a", "b", "cd"), dialog_key("a", "bc", "d"));
    }

    #[test]
    fn a_link_dies_with_its_last_connection() {
        let mut t = Subscriptions::default();
        let names = || vec!["edge.partner.example".to_owned()];
        t.link_up(Side::External, names());
        t.link_up(Side::External, names());
        assert!(
            t.link_down(Side::External, names()).is_empty(),
            "one connection is left"
        );
        let dead = t.link_down(Side::External, names());
        assert_eq!(
            dead,
            vec![LinkKey {
                side: Side::External,
                name: "edge.partner.example".into()
            }]
        );
        // A name on the other side is another link.
        t.link_up(Side::Internal, names());
        assert!(!t.link_is_up(&LinkKey {
            side: Side::External,
            name: "edge.partner.example".into()
        }));
    }
}
