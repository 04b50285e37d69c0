//! The core's side of subscription liveness: links coming up and going down, the subscriptions a
//! dead link ends (a terminating NOTIFY towards the subscriber, through the edge's own request
//! path: `local_*`), and the tracking of SUBSCRIBE/NOTIFY dialogs as their requests and responses
//! pass (`dialog_request`, `dialog_response`), with the bound and the expiry.

use super::*;

impl Proxy {
    /// Subscriptions this worker tracks.
    pub fn subscriptions(&self) -> usize {
        self.dialogs.len()
    }

    /// The octets the tracked subscriptions hold (their strings; the table's own slots aside).
    pub fn subscription_bytes(&self) -> usize {
        self.dialogs.subs.values().map(Subscription::heap_bytes).sum()
    }

    pub(crate) fn dialog_link_up(&mut self, peer: &PeerInfo) {
        let names = link_names(peer);
        self.count(|st| st.link(peer.side, &names, true));
        self.dialogs.link_up(peer.side, names);
    }

    /// A connection ended: if it was the last one of a link and the peer is gone, the
    /// subscriptions that depend on the link end (their subscribers told where they can be).
    pub(crate) fn dialog_link_down(
        &mut self,
        peer: &PeerInfo,
        reason: LinkEnd,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let names = link_names(peer);
        self.count(|st| st.link(peer.side, &names, false));
        let dead = self.dialogs.link_down(peer.side, names);
        if !reason.link_failed() {
            return;
        }
        for link in dead {
            self.link_failed(&link, reason.as_str(), now, out);
        }
    }

    /// A dial to `hop` failed: with no connection of the link up, it is dead.
    pub(crate) fn dialog_hop_unreachable(
        &mut self,
        hop: &NextHop,
        cause: &'static str,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let link = LinkKey {
            side: hop.side,
            name: hop.fqdn.host().to_string().to_ascii_lowercase(),
        };
        if !self.dialogs.link_is_up(&link) {
            self.link_failed(&link, cause, now, out);
        }
    }

    pub(super) fn link_failed(
        &mut self,
        link: &LinkKey,
        cause: &'static str,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let (notifier_gone, subscriber_gone) = self.dialogs.depending_on(link);
        if notifier_gone.is_empty() && subscriber_gone.is_empty() {
            return;
        }
        self.log(
            out,
            Level::Warn,
            "subscription_link_failed",
            format!(
                "{} link {} failed ({cause}): {} terminated towards their subscribers, {} whose subscriber is gone dropped",
                link.side.as_str(),
                link.name,
                match notifier_gone.len() {
                    1 => "1 subscription".to_owned(),
                    n => format!("{n} subscriptions"),
                },
                subscriber_gone.len()
            ),
            vec![
                ("side", link.side.as_str().to_owned()),
                ("link", link.name.clone()),
                ("cause", cause.to_owned()),
            ],
        );
        for id in notifier_gone {
            if let Some(s) = self.end_subscription(id, SubscriptionEnd::NotifierLinkFailed) {
                self.send_terminating_notify(&s, link, cause, now, out);
            }
        }
        for id in subscriber_gone {
            self.end_subscription(id, SubscriptionEnd::SubscriberLinkFailed);
        }
    }

    pub(super) fn end_subscription(
        &mut self,
        id: SubscriptionId,
        why: SubscriptionEnd,
    ) -> Option<Subscription> {
        let s = self.dialogs.remove(id)?;
        self.disarm(s.timer);
        self.shared.subscriptions.fetch_sub(1, Ordering::Relaxed);
        self.count(|st| {
            if let Some(n) = st.subscriptions_ended.get_mut(why.index()) {
                *n += 1;
            }
            let key = (s.subscriber.side, s.partner.clone());
            if let Some(n) = st.subscriptions_active.get_mut(&key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    st.subscriptions_active.remove(&key);
                }
            }
        });
        Some(s)
    }

    /// RFC 6665 §4.1.3: `terminated;reason=deactivated` — the subscriber re-subscribes at once.
    pub(super) fn send_terminating_notify(
        &mut self,
        s: &Subscription,
        link: &LinkKey,
        cause: &'static str,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let to_side = s.subscriber.side;
        let branch = self.new_branch();
        let host = self.settings.host(to_side).to_owned();
        let via = format!("SIP/2.0/TLS {host};branch={branch}");
        let cseq = format!(
            "{} NOTIFY",
            s.notifier_cseq
                .saturating_add(CSEQ_MARGIN + 1)
                .min(i32::MAX as u32)
        );
        let contact = format!("<sip:{host};transport=tls>");
        let refusal = route::simple_refusal(
            200,
            DiagnosticId::SUBSCRIPTION_LINK_FAILED,
            "Subscription terminated: the federation link it depends on failed",
            federation_policy::RefusalReason::NoRefusal,
            vec![
                ("link", link.name.clone()),
                ("side", link.side.as_str().to_owned()),
                ("cause", cause.to_owned()),
            ],
        )
        // The link is the other side's host: towards a partner, an internal name.
        .with_public(&["side", "cause"]);
        let (diag_name, diag) = match to_side {
            Side::Internal => ("ms-diagnostics", refusal.ms_diagnostics(&self.settings.edge_fqdn)),
            Side::External => ("ms-diagnostics-public", refusal.ms_diagnostics_public()),
        };
        let mut b = RequestBuilder::new("NOTIFY", &s.target).header("Via", &via);
        for r in &s.route {
            b = b.header("Route", r);
        }
        let b = b
            .header("From", &s.notifier.addr)
            .header("To", &s.subscriber.addr)
            .header("Call-ID", s.call_id())
            .header("CSeq", &cseq)
            .header("Contact", &contact)
            .header("Event", &s.event)
            .header("Subscription-State", "terminated;reason=deactivated")
            .header(diag_name, &diag);
        let Some(bytes) = b.build() else { return };
        let Some(dest) = self.towards(s) else { return };
        let token = Token(self.next_id());
        let timer = self.arm(now + LOCAL_TIMEOUT, TimerKind::LocalTimeout(token));
        self.dialogs.local.insert(
            branch.clone(),
            LocalRequest {
                conn: None,
                timer,
                token,
            },
        );
        self.local_tokens.insert(token, branch);
        self.txns.pending.insert(token, Pending::Local { token });
        self.count(|st| st.request_out(to_side, crate::proxy::stats::MethodLabel::of("NOTIFY")));
        out.push(Effect::Send {
            dest: Destination::Hop(dest),
            bytes,
            token: Some(token),
        });
    }

    /// Where a request to the subscriber goes: to the internal next hop (as every request towards
    /// the front ends), or to the first hop of its route set (else its remote target) outside.
    pub(super) fn towards(&self, s: &Subscription) -> Option<NextHop> {
        match s.subscriber.side {
            Side::Internal => Some(NextHop {
                fqdn: self.settings.internal_next_hop.clone(),
                side: Side::Internal,
            }),
            Side::External => {
                let first = s
                    .route
                    .first()
                    .and_then(|r| sip_codec::NameAddr::parse(r).ok())
                    .map(|na| na.uri)
                    .unwrap_or(&s.target);
                let Ok(Uri::Sip(u)) = Uri::parse(first) else {
                    return None;
                };
                Fqdn::parse(&hostport(&u)).ok().map(|fqdn| NextHop {
                    fqdn,
                    side: Side::External,
                })
            }
        }
    }

    /// The shell delivered the edge's own NOTIFY on `conn`: its answer must come back there.
    pub(crate) fn local_delivered(&mut self, token: Token, conn: ConnId) {
        let branch = self.local_tokens.get(&token);
        if let Some(l) = branch.and_then(|b| self.dialogs.local.get_mut(b)) {
            l.conn = Some(conn);
        }
    }

    /// The edge's own NOTIFY is done with — answered, undeliverable or unanswered in time: the
    /// entry, its token and its timer go (the subscription itself is gone already).
    pub(super) fn local_forget(&mut self, branch: &str) {
        if let Some(l) = self.dialogs.local.remove(branch) {
            self.local_tokens.remove(&l.token);
            self.disarm(Some(l.timer));
        }
    }

    pub(crate) fn local_done(&mut self, token: Token) {
        if let Some(branch) = self.local_tokens.get(&token).cloned() {
            self.local_forget(&branch);
        }
    }

    /// A response to a request the edge originated: absorbed (true) if it is one, on the
    /// connection the request went out on; a response with our branch elsewhere is not ours to take.
    pub(crate) fn local_response(&mut self, branch: &str, conn: ConnId, status: u16) -> bool {
        let Some(l) = self.dialogs.local.get(branch) else {
            return false;
        };
        if l.conn != Some(conn) {
            return false;
        }
        if status >= 200 {
            self.local_forget(branch);
        }
        true
    }

    /// The bound on subscriptions: a new SUBSCRIBE past it is refused (counted by the caller).
    pub(crate) fn subscriptions_full(&self) -> bool {
        self.shared.subscriptions.load(Ordering::Relaxed) >= self.settings.max_subscriptions
    }

    /// A request from `side` is about to be forwarded: a NOTIFY in a tracked dialog, from the
    /// notifier's side, raises the notifier's CSeq or, terminated, ends it. One from the other side
    /// (a peer that learnt the dialog's tags) changes nothing.
    pub(crate) fn dialog_request(&mut self, side: Side, msg: &Message<'_>) {
        let Some(method) = msg.method().filter(|m| is_notify(m)) else {
            return;
        };
        let (Ok(call_id), Ok(from), Ok(to)) = (msg.call_id(), msg.from(), msg.to()) else {
            return;
        };
        // NOTIFY: From is the notifier, To the subscriber.
        let Some(id) = self
            .dialogs
            .find(call_id, to.tag().unwrap_or(""), from.tag().unwrap_or(""))
        else {
            return;
        };
        if self
            .dialogs
            .subs
            .get(&id)
            .is_some_and(|s| s.notifier.side != side)
        {
            return;
        }
        let cseq = msg.cseq().map_or(0, |c| c.number);
        let terminated = msg
            .header(HeaderName::SubscriptionState)
            .and_then(|h| h.value_str())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("terminated"));
        if terminated && method == "NOTIFY" {
            self.end_subscription(id, SubscriptionEnd::Terminated);
        } else if let Some(s) = self.dialogs.subs.get_mut(&id) {
            s.notifier_cseq = s.notifier_cseq.max(cseq);
        }
    }

    /// A final response to server transaction `sid` is about to be forwarded: a 2xx to a SUBSCRIBE
    /// creates or refreshes its subscription; a 481 ends the dialog it names.
    pub(crate) fn dialog_response(
        &mut self,
        sid: ServerId,
        notifier_link: Option<&NextHop>,
        resp: &Message<'_>,
        now: Instant,
    ) {
        let status = resp.status().unwrap_or(0);
        let Some(method) = resp.cseq().map(|c| c.method) else {
            return;
        };
        if status == 481 {
            let (Ok(call_id), Ok(from), Ok(to)) = (resp.call_id(), resp.from(), resp.to()) else {
                return;
            };
            let (f, t) = (from.tag().unwrap_or(""), to.tag().unwrap_or(""));
            // Sent by either party: try the subscriber's SUBSCRIBE and the notifier's NOTIFY.
            if let Some(id) = self
                .dialogs
                .find(call_id, f, t)
                .or_else(|| self.dialogs.find(call_id, t, f))
            {
                self.end_subscription(id, SubscriptionEnd::Gone);
            }
            return;
        }
        if method != "SUBSCRIBE" || !(200..300).contains(&status) {
            return;
        }
        let Some(server) = self.txns.servers.get(&sid) else {
            return;
        };
        let (side, conn) = (server.side, server.conn);
        // Shared, not borrowed: `self` stays free to arm timers.
        let kept = std::sync::Arc::clone(&server.request);
        let Some(req) = kept.message() else {
            return;
        };
        let (Ok(call_id), Ok(from), Ok(to)) = (resp.call_id(), resp.from(), resp.to()) else {
            return;
        };
        let (Some(stag), Some(ntag)) = (from.tag(), to.tag()) else {
            return;
        };
        // RFC 6665 §4.2.1.1: the 2xx's Expires may shorten the SUBSCRIBE's, never lengthen it, so
        // a notifier cannot make the edge keep a dialog longer than the subscriber asked.
        let asked = req.expires().ok().flatten();
        let expires = match (resp.expires().ok().flatten(), asked) {
            (Some(granted), Some(asked)) => granted.min(asked),
            (granted, asked) => granted.or(asked).unwrap_or(DEFAULT_EXPIRES),
        };
        let at = now + Duration::from_secs(u64::from(expires));
        if let Some(id) = self.dialogs.find(call_id, stag, ntag) {
            // A refresh (or a retransmitted 2xx): the expiry moves.
            if expires == 0 {
                // Unsubscribed: the notifier's final NOTIFY (terminated) may still pass; nothing
                // more to guard.
                self.end_subscription(id, SubscriptionEnd::Terminated);
                return;
            }
            let old = self.dialogs.subs.get(&id).and_then(|s| s.timer);
            self.disarm(old);
            let seq = self.arm(at, TimerKind::SubscriptionExpiry(id));
            if let Some(s) = self.dialogs.subs.get_mut(&id) {
                s.timer = Some(seq);
            }
            return;
        }
        // A new dialog: only for a SUBSCRIBE that opened one, through a link the edge knows.
        if req.to().ok().and_then(|t| t.tag()).is_some() || expires == 0 {
            return;
        }
        let (Some(hop), Some(peer)) = (notifier_link, self.peers.get(&conn)) else {
            return;
        };
        let subscriber_link = link_names(peer).into_iter().next().unwrap_or_default();
        let target = req.contacts().find_map(|c| match c {
            Ok(sip_codec::ContactValue::Addr(c)) => Some(c.addr.uri.to_owned()),
            _ => None,
        });
        let Some(target) = target else { return };
        let skip_ours = |v: &&str| !route::is_our_route(&self.settings, v);
        let route: Vec<String> = req
            .headers()
            .iter()
            .filter(|h| h.name == HeaderName::RecordRoute)
            .filter_map(|h| h.value_str())
            .flat_map(sip_codec::split_values)
            .filter(skip_ours)
            .map(str::to_owned)
            .collect();
        // The partner: the domain of the party outside, if it is a configured partner.
        let outside = if side == Side::External { &from } else { &to };
        let partner = outside
            .parsed_uri()
            .ok()
            .and_then(|u| {
                u.as_sip()
                    .and_then(|s| federation_policy::DomainName::parse(s.host_str()).ok())
            })
            .filter(|d| self.policy.allowed(d).is_some())
            .map_or_else(|| "other".to_owned(), |d| d.to_string());
        let id = SubscriptionId(self.next_id());
        let seq = self.arm(at, TimerKind::SubscriptionExpiry(id));
        let sub = Subscription {
            key: dialog_key(call_id, stag, ntag),
            event: text(&req, HeaderName::Event),
            subscriber: Party {
                side,
                link: subscriber_link,
                addr: text(resp, HeaderName::From),
            },
            target,
            route,
            notifier: Party {
                side: hop.side,
                link: hop.fqdn.host().to_string().to_ascii_lowercase(),
                addr: text(resp, HeaderName::To),
            },
            partner: partner.clone(),
            notifier_cseq: 0,
            timer: Some(seq),
        };
        self.dialogs.insert(id, sub);
        self.shared.subscriptions.fetch_add(1, Ordering::Relaxed);
        self.count(|st| *st.subscriptions_active.entry((side, partner)).or_default() += 1);
    }

    pub(crate) fn subscription_expired(&mut self, id: SubscriptionId) {
        if let Some(s) = self.dialogs.subs.get_mut(&id) {
            // The timer that fired is gone already.
            s.timer = None;
        }
        self.end_subscription(id, SubscriptionEnd::Expired);
    }
}

/// `host[:port]` of a SIP URI.
pub(super) fn hostport(u: &SipUri<'_>) -> String {
    match u.port {
        Some(p) => format!("{}:{p}", u.host_str()),
        None => u.host_str().to_owned(),
    }
}
