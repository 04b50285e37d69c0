//! Responses the core generates itself: built from the request (Via/From/To/Call-ID/CSeq copied by
//! `sip_codec::ResponseBuilder`), with a To tag, and the diagnostic for the side they go to —
//! `ms-diagnostics` (with `source`) towards internal, `ms-diagnostics-public` towards partners.

use federation_policy::Refusal;
use sip_codec::{Message, ResponseBuilder};

use super::io::Side;

/// What to say in a generated response besides its status.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extra {
    /// `Warning: 399 <edge> "<text>"` (bad requests).
    pub warning: Option<String>,
    pub refusal: Option<Refusal>,
    pub retry_after: Option<u32>,
}

/// The response bytes for `req`, going back to `to_side`.
pub(crate) fn build(
    req: &Message<'_>,
    status: u16,
    to_tag: &str,
    edge_fqdn: &str,
    to_side: Side,
    extra: &Extra,
) -> Vec<u8> {
    let reason = sip_codec::reason_phrase(status);
    let warning = extra
        .warning
        .as_ref()
        .map(|w| format!("399 {edge_fqdn} \"{}\"", w.replace('"', "'")));
    let diag = extra.refusal.as_ref().map(|r| match to_side {
        Side::Internal => ("ms-diagnostics", r.ms_diagnostics(edge_fqdn)),
        Side::External => ("ms-diagnostics-public", r.ms_diagnostics_public()),
    });
    let retry = extra.retry_after.map(|s| s.to_string());
    let mut b = ResponseBuilder::new(req, status, reason).to_tag(to_tag);
    if let Some(w) = &warning {
        b = b.header("Warning", w);
    }
    if let Some((name, value)) = &diag {
        b = b.header(name, value);
    }
    if let Some(r) = &retry {
        b = b.header("Retry-After", r);
    }
    b = b.header("Server", "sipedge");
    b.build()
}
