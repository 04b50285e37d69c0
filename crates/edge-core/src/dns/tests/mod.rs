//! Tests of the DNS client on a virtual clock: every response is a recorded wire message built with
//! hickory-proto from the query the client sent, fed back through `handle_udp`/`handle_tcp`. Here the
//! harness and the answers (SRV, hosts, negatives, CNAMEs, TTLs, the shared cache); the failure paths
//! (timeouts, rcodes, TCP, spoofing, bounds) are in `failures.rs`. Cache and resolv.conf unit tests
//! live beside their code.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::*;

mod failures;

const S1: &str = "192.0.2.53:53";
const S2: &str = "198.51.100.53:53";
const SRV_NAME: &str = "_sipfederationtls._tcp.partner.example";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn client_with(servers: &[&str], cache: SharedCache) -> DnsClient {
    let config = DnsConfig::new(servers.iter().map(|s| addr(s)).collect());
    DnsClient::new(config, cache, 0x5eed)
}

fn client(servers: &[&str]) -> DnsClient {
    client_with(servers, SharedCache::default())
}

fn transmits(client: &mut DnsClient) -> Vec<Transmit> {
    std::iter::from_fn(|| client.poll_transmit()).collect()
}

fn one_transmit(client: &mut DnsClient) -> Transmit {
    let mut sent = transmits(client);
    assert_eq!(sent.len(), 1, "{sent:?}");
    sent.pop().unwrap()
}

fn answers(client: &mut DnsClient) -> Vec<(u64, Answer)> {
    std::iter::from_fn(|| client.poll_answer()).collect()
}

/// The query inside a transmit (TCP: the length prefix checked and removed).
fn request(t: &Transmit) -> Message {
    let bytes = match t.transport {
        Transport::Udp => &t.bytes[..],
        Transport::Tcp => {
            let len = usize::from(u16::from_be_bytes([t.bytes[0], t.bytes[1]]));
            assert_eq!(len, t.bytes.len() - 2);
            &t.bytes[2..]
        }
    };
    Message::from_vec(bytes).unwrap()
}

fn name(s: &str) -> Name {
    Name::from_ascii(format!("{}.", s.trim_end_matches('.'))).unwrap()
}

fn srv(owner: &str, ttl: u32, priority: u16, weight: u16, target: &str) -> Record {
    Record::from_rdata(
        name(owner),
        ttl,
        RData::SRV(SRV::new(priority, weight, 5061, name(target))),
    )
}

fn a(owner: &str, ttl: u32, ip: [u8; 4]) -> Record {
    Record::from_rdata(name(owner), ttl, RData::A(A(Ipv4Addr::from(ip))))
}

fn aaaa(owner: &str, ttl: u32, ip: &str) -> Record {
    Record::from_rdata(name(owner), ttl, RData::AAAA(AAAA(ip.parse().unwrap())))
}

fn cname(owner: &str, ttl: u32, target: &str) -> Record {
    Record::from_rdata(name(owner), ttl, RData::CNAME(CNAME(name(target))))
}

fn soa(zone: &str, ttl: u32, minimum: u32) -> Record {
    let rdata = SOA::new(
        name("ns1.example"),
        name("hostmaster.example"),
        1,
        3600,
        600,
        86400,
        minimum,
    );
    Record::from_rdata(name(zone), ttl, RData::SOA(rdata))
}

/// A response to `t`'s query, as a server would send it.
fn response(t: &Transmit, rcode: ResponseCode, answer: Vec<Record>, authority: Vec<Record>) -> Message {
    let req = request(t);
    let mut m = Message::new();
    m.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .set_recursion_available(true)
        .set_response_code(rcode)
        .add_query(req.query().unwrap().clone())
        .add_answers(answer)
        .add_name_servers(authority);
    m
}

fn reply(t: &Transmit, answer: Vec<Record>) -> Vec<u8> {
    response(t, ResponseCode::NoError, answer, vec![])
        .to_vec()
        .unwrap()
}

fn reply_code(t: &Transmit, rcode: ResponseCode, authority: Vec<Record>) -> Vec<u8> {
    response(t, rcode, vec![], authority).to_vec().unwrap()
}

fn qtype(t: &Transmit) -> RecordType {
    request(t).query().unwrap().query_type()
}

fn srv_rec(priority: u16, weight: u16, target: &str) -> SrvRecord {
    SrvRecord {
        priority,
        weight,
        port: 5061,
        target: target.to_owned(),
    }
}

#[test]
fn srv_answer_is_sorted_by_priority_and_cached() {
    let t0 = Instant::now();
    let mut c = client(&[S1]);
    assert_eq!(c.lookup(Question::Srv(SRV_NAME.into()), 7, t0), None);
    let t = one_transmit(&mut c);
    assert_eq!((t.server, t.transport), (addr(S1), Transport::Udp));
    let q = request(&t);
    assert!(q.recursion_desired());
    assert_eq!(q.message_type(), MessageType::Query);
    assert_eq!(q.query().unwrap().name(), &name(SRV_NAME));
    assert_eq!(q.query().unwrap().query_type(), RecordType::SRV);
    assert_eq!(c.poll_timeout(), Some(t0 + DEFAULT_TIMEOUT));

    let records = vec![
        srv(SRV_NAME, 300, 20, 0, "backup.partner.example"),
        srv(SRV_NAME, 300, 10, 60, "SIP1.Partner.Example"),
        srv(SRV_NAME, 300, 10, 40, "sip2.partner.example"),
    ];
    c.handle_udp(addr(S1), &reply(&t, records), t0 + secs(1));
    let expected = Answer::Srv(vec![
        srv_rec(10, 60, "sip1.partner.example"),
        srv_rec(10, 40, "sip2.partner.example"),
        srv_rec(20, 0, "backup.partner.example"),
    ]);
    assert_eq!(answers(&mut c), vec![(7, expected.clone())]);
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(c.queries_in_flight(), 0);

    // Cached, case-insensitively and with a trailing dot.
    let upper = format!("{}.", SRV_NAME.to_uppercase());
    assert_eq!(c.lookup(Question::Srv(upper), 8, t0 + secs(2)), Some(expected));
    assert!(transmits(&mut c).is_empty());
    // Counted: one SRV query that took 1 s, one cache hit, no failure.
    let st = c.stats();
    assert_eq!((st.queries, st.cache_hits), ([1, 0, 0], [1, 0, 0]));
    assert_eq!(st.failures, [[0; 6]; 3]);
    assert_eq!((st.latency[0].count(), st.latency[0].sum_micros), (1, 1_000_000));
}

#[test]
fn host_asks_a_and_aaaa_and_answers_when_both_are_done() {
    let t0 = Instant::now();
    let mut c = client(&[S1]);
    assert_eq!(
        c.lookup(Question::Host("sip.partner.example".into()), 1, t0),
        None
    );
    let sent = transmits(&mut c);
    assert_eq!(
        sent.iter().map(qtype).collect::<Vec<_>>(),
        vec![RecordType::A, RecordType::AAAA]
    );
    let [ta, taaaa] = <[Transmit; 2]>::try_from(sent).unwrap();

    // AAAA first: nothing yet, the A half is still out.
    let v6 = "2001:db8::5";
    c.handle_udp(
        addr(S1),
        &reply(&taaaa, vec![aaaa("sip.partner.example", 60, v6)]),
        t0,
    );
    assert!(answers(&mut c).is_empty());
    c.handle_udp(
        addr(S1),
        &reply(&ta, vec![a("sip.partner.example", 60, [192, 0, 2, 5])]),
        t0,
    );
    let v6: Ipv6Addr = v6.parse().unwrap();
    let both = Answer::Hosts(vec![IpAddr::from([192, 0, 2, 5]), IpAddr::V6(v6)]);
    assert_eq!(answers(&mut c), vec![(1, both.clone())]);
    assert_eq!(
        c.lookup(Question::Host("sip.partner.example".into()), 2, t0 + secs(59)),
        Some(both)
    );

    // One family empty (NODATA) is fine; both empty is no record.
    assert_eq!(c.lookup(Question::Host("v4only.example".into()), 3, t0), None);
    let [ta, taaaa] = <[Transmit; 2]>::try_from(transmits(&mut c)).unwrap();
    c.handle_udp(
        addr(S1),
        &reply(&ta, vec![a("v4only.example", 60, [192, 0, 2, 6])]),
        t0,
    );
    c.handle_udp(addr(S1), &reply(&taaaa, vec![]), t0);
    assert_eq!(
        answers(&mut c),
        vec![(3, Answer::Hosts(vec![IpAddr::from([192, 0, 2, 6])]))]
    );
}

#[test]
fn nxdomain_is_no_record_and_negative_cached_for_the_soa_minimum() {
    let t0 = Instant::now();
    let mut c = client(&[S1]);
    c.lookup(Question::Srv(SRV_NAME.into()), 1, t0);
    let t = one_transmit(&mut c);
    let nx = reply_code(&t, ResponseCode::NXDomain, vec![soa("partner.example", 3600, 60)]);
    c.handle_udp(addr(S1), &nx, t0);
    assert_eq!(answers(&mut c), vec![(1, Answer::NoRecord)]);
    assert_eq!(
        c.lookup(Question::Srv(SRV_NAME.into()), 2, t0 + secs(59)),
        Some(Answer::NoRecord)
    );
    assert!(transmits(&mut c).is_empty());
    assert_eq!(c.lookup(Question::Srv(SRV_NAME.into()), 3, t0 + secs(60)), None);
    assert_eq!(transmits(&mut c).len(), 1);
}

#[test]
fn negative_ttl_is_capped_and_defaults_without_soa() {
    let t0 = Instant::now();
    let mut c = client(&[S1]);
    // SOA minimum of a day: capped at 300 s. The SOA's own TTL bounds it too (RFC 2308 §5).
    for (domain, authority, lasts) in [
        ("a.example", vec![soa("a.example", 86400, 86400)], 300),
        ("b.example", vec![soa("b.example", 20, 3600)], 20),
        ("c.example", vec![], 30),
    ] {
        let q = format!("_sipfederationtls._tcp.{domain}");
        c.lookup(Question::Srv(q.clone()), 1, t0);
        let t = one_transmit(&mut c);
        c.handle_udp(addr(S1), &reply_code(&t, ResponseCode::NXDomain, authority), t0);
        assert_eq!(answers(&mut c), vec![(1, Answer::NoRecord)]);
        let before = t0 + secs(lasts - 1);
        assert_eq!(
            c.lookup(Question::Srv(q.clone()), 2, before),
            Some(Answer::NoRecord),
            "{domain}"
        );
        assert_eq!(c.lookup(Question::Srv(q), 3, t0 + secs(lasts)), None, "{domain}");
        transmits(&mut c);
    }
}

#[test]
fn empty_noerror_answer_is_no_record() {
    let t0 = Instant::now();
    let mut c = client(&[S1]);
    c.lookup(Question::Srv(SRV_NAME.into()), 1, t0);
    let t = one_transmit(&mut c);
    let nodata = reply_code(&t, ResponseCode::NoError, vec![soa("partner.example", 600, 120)]);
    c.handle_udp(addr(S1), &nodata, t0);
    assert_eq!(answers(&mut c), vec![(1, Answer::NoRecord)]);
    assert_eq!(
        c.lookup(Question::Srv(SRV_NAME.into()), 2, t0 + secs(119)),
        Some(Answer::NoRecord)
    );

    // A lone "." target: the service is decidedly not available (RFC 2782).
    let other = "_sipfederationtls._tcp.nosip.example";
    c.lookup(Question::Srv(other.into()), 3, t0);
    let t = one_transmit(&mut c);
    c.handle_udp(addr(S1), &reply(&t, vec![srv(other, 60, 0, 0, ".")]), t0);
    assert_eq!(answers(&mut c), vec![(3, Answer::NoRecord)]);
}

#[test]
fn cname_chain_inside_one_answer_is_followed_and_cached() {
    let t0 = Instant::now();
    let mut c = client(&[S1]);
    c.lookup(Question::Host("WWW.partner.example".into()), 1, t0);
    let [ta, taaaa] = <[Transmit; 2]>::try_from(transmits(&mut c)).unwrap();
    let chain = || {
        vec![
            cname("edge1.partner.example", 300, "edge2.cdn.example"),
            cname("www.partner.example", 300, "edge1.partner.example"),
        ]
    };
    let mut with_a = chain();
    with_a.push(a("edge2.cdn.example", 100, [192, 0, 2, 80]));
    with_a.push(a("unrelated.example", 100, [192, 0, 2, 81]));
    c.handle_udp(addr(S1), &reply(&ta, with_a), t0);
    let nodata = response(
        &taaaa,
        ResponseCode::NoError,
        chain(),
        vec![soa("cdn.example", 60, 60)],
    );
    c.handle_udp(addr(S1), &nodata.to_vec().unwrap(), t0);
    let expected = Answer::Hosts(vec![IpAddr::from([192, 0, 2, 80])]);
    assert_eq!(answers(&mut c), vec![(1, expected.clone())]);
    assert_eq!(c.queries_in_flight(), 0);

    // Both names now come from the cache (the alias, then the target's records).
    assert_eq!(
        c.lookup(Question::Host("www.partner.example".into()), 2, t0 + secs(59)),
        Some(expected.clone())
    );
    assert_eq!(
        c.lookup(Question::Host("edge2.cdn.example".into()), 3, t0 + secs(59)),
        Some(expected)
    );
    assert!(transmits(&mut c).is_empty());
}

#[test]
fn cname_to_elsewhere_needs_a_second_query() {
    let t0 = Instant::now();
    let mut c = client(&[S1]);
    c.lookup(Question::Srv(SRV_NAME.into()), 1, t0);
    let t = one_transmit(&mut c);
    let alias = "_sip._tls.hosted.example";
    c.handle_udp(addr(S1), &reply(&t, vec![cname(SRV_NAME, 300, alias)]), t0);
    assert!(answers(&mut c).is_empty());
    let second = one_transmit(&mut c);
    assert_eq!(request(&second).query().unwrap().name(), &name(alias));
    assert_eq!(qtype(&second), RecordType::SRV);
    c.handle_udp(
        addr(S1),
        &reply(&second, vec![srv(alias, 300, 5, 5, "sipfed.hosted.example")]),
        t0,
    );
    let expected = Answer::Srv(vec![srv_rec(5, 5, "sipfed.hosted.example")]);
    assert_eq!(answers(&mut c), vec![(1, expected.clone())]);
    assert_eq!(
        c.lookup(Question::Srv(SRV_NAME.into()), 2, t0 + secs(1)),
        Some(expected)
    );
}

#[test]
fn ttl_expiry_sends_a_new_query() {
    let t0 = Instant::now();
    let mut c = client(&[S1]);
    c.lookup(Question::Srv(SRV_NAME.into()), 1, t0);
    let t = one_transmit(&mut c);
    // The RRset lives as long as its shortest TTL.
    let records = vec![
        srv(SRV_NAME, 120, 1, 1, "a.partner.example"),
        srv(SRV_NAME, 60, 2, 1, "b.partner.example"),
    ];
    c.handle_udp(addr(S1), &reply(&t, records), t0);
    answers(&mut c);
    assert!(c
        .lookup(Question::Srv(SRV_NAME.into()), 2, t0 + secs(59))
        .is_some());
    assert_eq!(c.lookup(Question::Srv(SRV_NAME.into()), 3, t0 + secs(60)), None);
    assert_eq!(one_transmit(&mut c).server, addr(S1));

    // TTL 0: answered, never cached.
    c.lookup(Question::Srv("_z._tcp.zero.example".into()), 4, t0);
    let t = one_transmit(&mut c);
    c.handle_udp(
        addr(S1),
        &reply(&t, vec![srv("_z._tcp.zero.example", 0, 1, 1, "z.zero.example")]),
        t0,
    );
    assert_eq!(answers(&mut c).len(), 1);
    assert_eq!(
        c.lookup(Question::Srv("_z._tcp.zero.example".into()), 5, t0),
        None
    );
}

#[test]
fn the_cache_is_bounded_and_shared() {
    let t0 = Instant::now();
    let cache = SharedCache::new(2);
    let mut c = client_with(&[S1], cache.clone());
    for (i, ttl) in [(1u8, 300), (2, 100), (3, 200)] {
        let q = format!("_s._tcp.d{i}.example");
        c.lookup(Question::Srv(q.clone()), u64::from(i), t0);
        let t = one_transmit(&mut c);
        c.handle_udp(addr(S1), &reply(&t, vec![srv(&q, ttl, 1, 1, "t.example")]), t0);
    }
    assert_eq!(answers(&mut c).len(), 3);
    assert_eq!(cache.len(), 2);
    // d2 expired soonest and made room for d3. Another worker's client sees the same cache.
    let mut other = client_with(&[S1], cache.clone());
    assert!(other
        .lookup(Question::Srv("_s._tcp.d1.example".into()), 9, t0)
        .is_some());
    assert!(other
        .lookup(Question::Srv("_s._tcp.d3.example".into()), 9, t0)
        .is_some());
    assert_eq!(
        other.lookup(Question::Srv("_s._tcp.d2.example".into()), 9, t0),
        None
    );
    cache.clear();
    assert!(cache.is_empty());
}

#[test]
fn concurrent_lookups_share_one_query() {
    let t0 = Instant::now();
    let mut c = client(&[S1]);
    assert_eq!(c.lookup(Question::Srv(SRV_NAME.into()), 1, t0), None);
    assert_eq!(
        c.lookup(Question::Srv(format!("{}.", SRV_NAME.to_uppercase())), 2, t0),
        None
    );
    let t = one_transmit(&mut c);
    assert_eq!(c.queries_in_flight(), 1);
    c.handle_udp(
        addr(S1),
        &reply(&t, vec![srv(SRV_NAME, 60, 1, 1, "sip.partner.example")]),
        t0,
    );
    let answer = Answer::Srv(vec![srv_rec(1, 1, "sip.partner.example")]);
    assert_eq!(answers(&mut c), vec![(1, answer.clone()), (2, answer)]);
}

#[test]
fn one_answer_puts_a_bounded_number_of_records_in_the_cache() {
    let t0 = Instant::now();
    let mut c = client(&[S1]);
    assert_eq!(c.lookup(Question::Srv(SRV_NAME.into()), 1, t0), None);
    let t = one_transmit(&mut c);
    let many: Vec<Record> = (0..500u16)
        .map(|i| srv(SRV_NAME, 300, 500 - i, 0, &format!("sip{i}.partner.example")))
        .collect();
    c.handle_udp(addr(S1), &reply(&t, many), t0 + secs(1));
    let Some((1, Answer::Srv(kept))) = answers(&mut c).pop() else {
        panic!("no SRV answer")
    };
    assert_eq!(kept.len(), super::wire::MAX_SRV_RECORDS);
    assert_eq!(
        kept.first().map(|r| r.priority),
        Some(1),
        "the most preferred are kept"
    );
}
