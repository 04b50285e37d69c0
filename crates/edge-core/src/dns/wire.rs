//! The DNS wire format for the client in `mod.rs`, through `hickory-proto`'s codec only: encode one
//! query, decode a response, check that it answers the query we sent (anti-spoofing), and read what
//! it says for one (name, type) — the records, following CNAMEs inside the answer section, or a
//! negative answer with its RFC 2308 TTL, or the alias still to be asked for. Pure functions; what
//! gets cached is decided here as [`Found`] and stored by the client in `cache.rs`.

use std::net::IpAddr;

use federation_policy::SrvRecord;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::cache::{Cached, RrType};

/// RFC 2308 negative TTL when the response carries no SOA.
pub const DEFAULT_NEGATIVE_TTL: u32 = 30;
/// Upper bound of a negative TTL (RFC 2308 §5 suggests 1–3 hours; an edge wants a fixed partner
/// domain to recover within minutes).
pub const MAX_NEGATIVE_TTL: u32 = 300;

/// A name as the client keys it: lower case, no trailing dot, escaped as `Name` prints it. `Err` is
/// the human reason the name cannot be asked for.
pub(super) fn canonical_input(name: &str) -> Result<String, String> {
    let trimmed = name.trim();
    let parsed = Name::from_ascii(trimmed).map_err(|e| format!("invalid DNS name {trimmed:?}: {e}"))?;
    if parsed.num_labels() == 0 {
        return Err(format!("invalid DNS name {trimmed:?}: empty"));
    }
    Ok(canonical(&parsed))
}

/// The query message for (`name`, `rtype`) with id `id` and RD set.
pub(super) fn encode_query(id: u16, name: &str, rtype: RrType) -> Result<Vec<u8>, String> {
    let mut qname = Name::from_ascii(name).map_err(|e| format!("invalid DNS name {name:?}: {e}"))?;
    qname.set_fqdn(true);
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(qname, record_type(rtype)));
    message
        .to_vec()
        .map_err(|e| format!("cannot encode the DNS query for {name}: {e}"))
}

/// A response, if the bytes are one.
pub(super) fn decode(bytes: &[u8]) -> Option<Message> {
    let message = Message::from_vec(bytes).ok()?;
    (message.message_type() == MessageType::Response).then_some(message)
}

/// Whether `message` answers our query `id` for (`name`, `rtype`): same id, opcode, and exactly our
/// question (names compared case-insensitively).
pub(super) fn answers(message: &Message, id: u16, name: &str, rtype: RrType) -> bool {
    if message.id() != id || message.op_code() != OpCode::Query {
        return false;
    }
    match message.queries() {
        [query] => {
            query.query_type() == record_type(rtype)
                && query.query_class() == DNSClass::IN
                && canonical(query.name()) == name
        }
        _ => false,
    }
}

/// What a response says, for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// NOERROR or NXDOMAIN: an answer for the question.
    Answer(Analysis),
    /// SERVFAIL, REFUSED, FORMERR...: ask another server. The rcode as text.
    ServerError(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Analysis {
    /// The CNAMEs followed inside the answer section, in order (each cached on its own).
    pub aliases: Vec<Alias>,
    pub found: Found,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Alias {
    pub owner: String,
    pub target: String,
    pub ttl: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Found {
    /// The RRset of the wanted type at `name` (the end of the alias chain); `ttl` is its minimum.
    Records { name: String, value: Cached, ttl: u32 },
    /// NXDOMAIN or NODATA for `name` (the end of the alias chain), with the negative TTL.
    Negative { name: String, ttl: u32 },
    /// The chain ends at `target` with neither records nor a negative answer: ask for the target.
    Alias { target: String, hops: usize },
    /// More than the allowed CNAMEs (or a loop) inside the answer.
    TooDeep,
}

/// Reads `message` (already matched with [`answers`]) for (`qname`, `rtype`).
pub(super) fn analyse(message: &Message, qname: &str, rtype: RrType, max_depth: usize) -> Verdict {
    let rcode = message.response_code();
    if rcode != ResponseCode::NoError && rcode != ResponseCode::NXDomain {
        return Verdict::ServerError(rcode_text(rcode));
    }
    let mut name = qname.to_owned();
    let mut aliases: Vec<Alias> = Vec::new();
    let found = loop {
        let rrset: Vec<&Record> = message
            .answers()
            .iter()
            .filter(|r| r.dns_class() == DNSClass::IN && canonical(r.name()) == name)
            .filter(|r| matches!(record_kind(r.data()), Some(kind) if kind == rtype))
            .collect();
        if let Some(ttl) = rrset.iter().map(|r| r.ttl()).min() {
            let value = rrset_value(rtype, &rrset);
            break Found::Records { name, value, ttl };
        }
        let cname = message.answers().iter().find_map(|r| match r.data() {
            RData::CNAME(target) if canonical(r.name()) == name => Some((canonical(&target.0), r.ttl())),
            _ => None,
        });
        let Some((target, ttl)) = cname else {
            break negative_or_alias(message, name, aliases.len());
        };
        if aliases.len() >= max_depth {
            break Found::TooDeep;
        }
        aliases.push(Alias {
            owner: std::mem::replace(&mut name, target.clone()),
            target,
            ttl,
        });
    };
    Verdict::Answer(Analysis { aliases, found })
}

/// NXDOMAIN → negative. NOERROR without the records: NODATA when nothing was aliased or an SOA says
/// so for the chain's end; otherwise the server stopped at the alias and the client asks on.
fn negative_or_alias(message: &Message, name: String, hops: usize) -> Found {
    let soa_ttl = message.name_servers().iter().find_map(|r| match r.data() {
        RData::SOA(soa) => Some(soa.minimum().min(r.ttl())),
        _ => None,
    });
    if message.response_code() == ResponseCode::NXDomain || hops == 0 || soa_ttl.is_some() {
        let ttl = soa_ttl.map_or(DEFAULT_NEGATIVE_TTL, |t| t.min(MAX_NEGATIVE_TTL));
        Found::Negative { name, ttl }
    } else {
        Found::Alias { target: name, hops }
    }
}

/// SRV records kept from one answer (a partner publishes a handful).
pub(crate) const MAX_SRV_RECORDS: usize = 64;
/// Addresses kept from one A or AAAA answer.
pub(crate) const MAX_ADDRESSES: usize = 16;

fn rrset_value(rtype: RrType, rrset: &[&Record]) -> Cached {
    match rtype {
        RrType::Srv => {
            let mut records: Vec<SrvRecord> = rrset
                .iter()
                .filter_map(|r| match r.data() {
                    RData::SRV(srv) if !srv.target().is_root() => Some(SrvRecord {
                        priority: srv.priority(),
                        weight: srv.weight(),
                        port: srv.port(),
                        target: canonical(srv.target()),
                    }),
                    _ => None,
                })
                .collect();
            // Stable: within a priority the server's order (and the weights) reach the caller.
            records.sort_by_key(|r| r.priority);
            // What one answer may put in the cache is bounded too (a 64 KiB TCP answer could hold
            // thousands of targets); the most preferred are kept.
            records.truncate(MAX_SRV_RECORDS);
            Cached::Srv(records)
        }
        RrType::A | RrType::Aaaa => Cached::Addrs(
            rrset
                .iter()
                .filter_map(|r| match r.data() {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                    _ => None,
                })
                .take(MAX_ADDRESSES)
                .collect(),
        ),
        RrType::Cname => match rrset.first().map(|r| r.data()) {
            Some(RData::CNAME(target)) => Cached::Alias(canonical(&target.0)),
            _ => Cached::Negative,
        },
    }
}

fn record_kind(data: &RData) -> Option<RrType> {
    match data {
        RData::SRV(_) => Some(RrType::Srv),
        RData::A(_) => Some(RrType::A),
        RData::AAAA(_) => Some(RrType::Aaaa),
        RData::CNAME(_) => Some(RrType::Cname),
        _ => None,
    }
}

fn record_type(rtype: RrType) -> RecordType {
    match rtype {
        RrType::Srv => RecordType::SRV,
        RrType::A => RecordType::A,
        RrType::Aaaa => RecordType::AAAA,
        RrType::Cname => RecordType::CNAME,
    }
}

fn rcode_text(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::ServFail => "SERVFAIL".to_owned(),
        ResponseCode::Refused => "REFUSED".to_owned(),
        ResponseCode::FormErr => "FORMERR".to_owned(),
        ResponseCode::NotImp => "NOTIMP".to_owned(),
        other => format!("rcode {}", u16::from(other)),
    }
}

fn canonical(name: &Name) -> String {
    let ascii = name.to_ascii();
    ascii.strip_suffix('.').unwrap_or(&ascii).to_ascii_lowercase()
}
