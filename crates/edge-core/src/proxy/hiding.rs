//! Topology hiding of the route sets (docs/topology.md): what the inside wrote into a dialog's
//! Record-Route — its proxies' entries and the edge's internal face — reaches a partner only
//! *sealed* inside the edge's external Record-Route entry (`;sh=<token>`), and is put back when the
//! dialog's messages come back in. The token is ChaCha20-Poly1305 (ring) under one key for the
//! whole edge (`EdgeShared::sealer`: every worker opens what another sealed), which every replica
//! of a pool derives the same way ([`Sealer::from_secret`]), so any replica opens what another
//! sealed, and a partner can neither read nor forge it.
//!
//! Pure functions over strings and a sealer: the edits themselves are made in `forward.rs`.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hmac;

use base64::Engine as _;
use rand::RngCore;
use sip_codec::{HeaderName, Message};

use super::ProxySettings;

/// The URI parameter of the edge's external Record-Route entry that carries the sealed entries.
pub(crate) const PARAM: &str = "sh";

/// Entries sealed into one token at most (a route set of the inside is a handful).
const MAX_ENTRIES: usize = 16;

/// The key that seals and opens route sets.
pub struct Sealer {
    /// `None` only if ring refused a 32-octet ChaCha20-Poly1305 key, which it does not: then
    /// nothing seals and nothing opens.
    key: Option<LessSafeKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// The key derived from `secret` with HKDF-SHA256 (RFC 5869; one output block, written out
    /// with ring's HMAC): the same secret gives the same key on every replica and across restarts
    /// (the binary passes the external certificate's private key, which every replica of a pool
    /// holds).
    pub fn from_secret(secret: &[u8]) -> Sealer {
        let prk = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, b"sipedge topology hiding v1"),
            secret,
        );
        let okm = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, prk.as_ref()), b"route set\x01");
        Sealer {
            key: UnboundKey::new(&CHACHA20_POLY1305, okm.as_ref())
                .ok()
                .map(LessSafeKey::new),
        }
    }

    /// `entries` (name-addr values, in route order) sealed into a URI-parameter-safe token.
    pub fn seal(&self, rng: &mut impl RngCore, entries: &[&str]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let mut data = entries.join("\n").into_bytes();
        let Some(key) = &self.key else {
            return String::new();
        };
        // Sealing cannot fail for a message this size (ring only refuses beyond 2^38 octets).
        let _ = key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(PARAM.as_bytes()),
            &mut data,
        );
        let mut out = Vec::with_capacity(NONCE_LEN + data.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
    }

    /// The entries a token sealed, or `None` for anything this key did not seal (forged, altered,
    /// another edge's, or not a token at all).
    pub fn open(&self, token: &str) -> Option<Vec<String>> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()?;
        let (nonce, sealed) = raw.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut sealed = sealed.to_vec();
        let plain = self
            .key
            .as_ref()?
            .open_in_place(nonce, Aad::from(PARAM.as_bytes()), &mut sealed)
            .ok()?;
        let text = std::str::from_utf8(plain).ok()?;
        let entries: Vec<String> = text
            .split('\n')
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect();
        (entries.len() <= MAX_ENTRIES).then_some(entries)
    }
}

/// Every value of the list header `name`, in order, across its lines.
pub(crate) fn values_of<'a>(msg: &Message<'a>, name: HeaderName) -> Vec<&'a str> {
    msg.headers()
        .iter()
        .filter(|h| h.name == name)
        .filter_map(|h| h.value_str())
        .flat_map(sip_codec::split_values)
        .collect()
}

/// Whether `value` names this edge's external face (host and, unless in a pool, port).
pub(crate) fn is_external_face(settings: &ProxySettings, value: &str) -> bool {
    sip_codec::NameAddr::parse(value).is_ok_and(|na| uri_is_external_face(settings, na.uri))
}

/// [`is_external_face`] for a bare URI.
fn uri_is_external_face(settings: &ProxySettings, uri: &str) -> bool {
    let Ok(sip_codec::Uri::Sip(u)) = sip_codec::Uri::parse(uri) else {
        return false;
    };
    federation_policy::Fqdn::parse(&settings.external_host).is_ok_and(|f| {
        f.host().as_str().eq_ignore_ascii_case(u.host_str())
            && (settings.pool_routes || f.port() == u.port.unwrap_or(5061))
    })
}

/// The Record-Route of a request leaving for a partner (a dialog-creating one): the edge's
/// external face alone, the inside's entries (`inside`, in route order after it) sealed into it.
pub(crate) fn sealed_face(
    settings: &ProxySettings,
    sealer: &Sealer,
    rng: &mut impl RngCore,
    inside: &[&str],
) -> String {
    let token = sealer.seal(rng, inside);
    format!(
        "<sip:{};transport=tls;lr;{PARAM}={token}>",
        settings.external_host
    )
}

/// A Record-Route list coming back in from a partner: after each entry of ours that carries a
/// token, the entries it sealed. `None` when no entry carries one (nothing to change).
pub(crate) fn unsealed_record_route(sealer: &Sealer, values: &[&str]) -> Option<Vec<String>> {
    let mut any = false;
    let mut out = Vec::with_capacity(values.len() + 2);
    for v in values {
        out.push((*v).to_owned());
        if let Some(entries) = token_of(v).and_then(|t| sealer.open(t)) {
            any = true;
            out.extend(entries);
        }
    }
    any.then_some(out)
}

/// A Record-Route list of a response leaving for a partner: what lies above the edge's external
/// face is the inside (the front ends' entries and the edge's internal face), sealed into that face,
/// reversed into route order; the partner's entries below stay. With no external face in it (a
/// response to a request the edge did not record-route), every entry is the inside: none stays.
pub(crate) fn sealed_response_record_route(
    settings: &ProxySettings,
    sealer: &Sealer,
    rng: &mut impl RngCore,
    values: &[&str],
) -> Vec<String> {
    let Some(face) = values.iter().position(|v| is_external_face(settings, v)) else {
        return Vec::new();
    };
    let inside: Vec<&str> = values.get(..face).unwrap_or(&[]).iter().rev().copied().collect();
    let mut out = vec![sealed_face(settings, sealer, rng, &inside)];
    out.extend(
        values
            .get(face + 1..)
            .unwrap_or(&[])
            .iter()
            .map(|v| (*v).to_owned()),
    );
    out
}

/// The Route list of a partner's in-dialog request going inside: the edge's own leading entries
/// give way to the entries their tokens sealed (less the edge's own faces), the rest stays.
/// `None` when no leading entry of ours carries a token that opens (the ordinary edit applies).
pub(crate) fn unsealed_route(
    settings: &ProxySettings,
    sealer: &Sealer,
    values: &[&str],
) -> Option<Vec<String>> {
    let ours = values
        .iter()
        .take_while(|v| super::route::is_our_route(settings, v))
        .count();
    let mut inside = Vec::new();
    let mut any = false;
    for v in values.get(..ours).unwrap_or(&[]) {
        if let Some(entries) = token_of(v).and_then(|t| sealer.open(t)) {
            any = true;
            inside.extend(
                entries
                    .into_iter()
                    .filter(|e| !super::route::is_our_route(settings, e)),
            );
        }
    }
    if !any {
        return None;
    }
    inside.extend(values.get(ours..).unwrap_or(&[]).iter().map(|v| (*v).to_owned()));
    Some(inside)
}

/// The URI parameter of a Contact the edge rewrote, carrying the original URI sealed.
pub(crate) const CONTACT_PARAM: &str = "sc";

/// A Contact value leaving for a partner: a URI naming a host that is not one of our domains
/// (`ours`) is rewritten to the edge's external face, the original sealed in `;sc=`; the display
/// name and the header parameters stay. `None`: kept as it is (a domain contact such as a Lync
/// GRUU, `*`, or nothing that parses).
pub(crate) fn sealed_contact(
    settings: &ProxySettings,
    sealer: &Sealer,
    rng: &mut impl RngCore,
    ours: impl Fn(&str) -> bool,
    value: &str,
) -> Option<String> {
    let na = sip_codec::NameAddr::parse(value).ok()?;
    let sip_codec::Uri::Sip(u) = sip_codec::Uri::parse(na.uri).ok()? else {
        return None;
    };
    if ours(u.host_str()) || uri_is_external_face(settings, na.uri) {
        return None;
    }
    let base = value.as_ptr() as usize;
    let start = (na.uri.as_ptr() as usize).checked_sub(base)?;
    let end = start.checked_add(na.uri.len())?;
    let token = sealer.seal(rng, &[na.uri]);
    let user = u.user.map_or(String::new(), |user| format!("{user}@"));
    let uri = format!(
        "sip:{user}{};transport=tls;{CONTACT_PARAM}={token}",
        settings.external_host
    );
    let (head, tail) = (value.get(..start)?, value.get(end..)?);
    Some(if na.bracketed {
        format!("{head}{uri}{tail}")
    } else {
        format!("{head}<{uri}>{tail}")
    })
}

/// The Contact header of a message leaving for a partner, each value as [`sealed_contact`] has it;
/// `None` when nothing changes.
pub(crate) fn sealed_contacts(
    settings: &ProxySettings,
    sealer: &Sealer,
    rng: &mut impl RngCore,
    ours: impl Fn(&str) -> bool,
    msg: &Message<'_>,
) -> Option<String> {
    let values = values_of(msg, HeaderName::Contact);
    let mut any = false;
    let out: Vec<String> = values
        .iter()
        .map(|v| match sealed_contact(settings, sealer, rng, &ours, v) {
            Some(s) => {
                any = true;
                s
            }
            None => (*v).to_owned(),
        })
        .collect();
    any.then(|| out.join(", "))
}

/// The Request-URI of a partner's request to a Contact the edge rewrote: the original, or `None`
/// (not one of ours, or a token that does not open).
pub(crate) fn unsealed_target(settings: &ProxySettings, sealer: &Sealer, ruri: &str) -> Option<String> {
    // Every partner request comes here: the parameter is looked for first (a scan), the URI
    // parsed only when it carries one.
    let token = param_of(ruri, CONTACT_PARAM)?;
    if !uri_is_external_face(settings, ruri) {
        return None;
    }
    sealer.open(token)?.into_iter().next()
}

/// The value of URI parameter `name` of a name-addr or bare URI (header parameters after `>` are
/// not the URI's).
fn param_of<'v>(value: &'v str, name: &str) -> Option<&'v str> {
    let uri = value.split_once('<').map_or(value, |(_, rest)| rest);
    let uri = uri.split_once('>').map_or(uri, |(u, _)| u);
    uri.split(';')
        .skip(1)
        .find_map(|p| p.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
}

/// The `sh` token of a name-addr value (`<sip:…;sh=TOKEN>`), if it carries one.
pub(crate) fn token_of(value: &str) -> Option<&str> {
    param_of(value, PARAM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn what_is_sealed_opens_only_with_the_same_key_and_unaltered() {
        let mut rng = StdRng::seed_from_u64(7);
        let a = Sealer::from_secret(b"the external key");
        let entries = [
            "<sip:edge-int.corp.example:5061;transport=tls;lr>",
            "<sip:fe1.corp.example:5061;transport=tls;lr>",
        ];
        let t = a.seal(&mut rng, &entries);
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{t}"
        );
        assert!(!t.contains("corp"), "{t}");
        assert_eq!(a.open(&t).unwrap(), entries);
        assert_eq!(
            Sealer::from_secret(b"the external key").open(&t).unwrap(),
            entries,
            "another replica"
        );
        assert_ne!(a.seal(&mut rng, &entries), t, "a fresh nonce each time");
        assert_eq!(Sealer::from_secret(b"another edge").open(&t), None);
        let mut altered = t.clone().into_bytes();
        altered[20] = if altered[20] == b'A' { b'B' } else { b'A' };
        assert_eq!(a.open(std::str::from_utf8(&altered).unwrap()), None);
        for junk in ["", "x", "%%%", &"A".repeat(10)] {
            assert_eq!(a.open(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn the_token_is_found_in_a_name_addr() {
        assert_eq!(
            token_of("<sip:edge.example:5061;transport=tls;lr;sh=abc_-1>"),
            Some("abc_-1")
        );
        assert_eq!(token_of("sip:edge.example;lr;sh=q"), Some("q"));
        assert_eq!(
            token_of("<sip:edge.example;lr>;sh=outside"),
            None,
            "a header param is not ours"
        );
        assert_eq!(token_of("<sip:edge.example;lr>"), None);
    }
}
