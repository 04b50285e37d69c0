//! `push-relay`: requests addressed to the configured push URI (`sip:push@push.lync.com`), relayed
//! through the hosted provider with timeouts, bounded retry and a per-provider circuit breaker.
//!
//! Empty until the push-relay issue lands; the crate exists now so the workspace has its final shape.
