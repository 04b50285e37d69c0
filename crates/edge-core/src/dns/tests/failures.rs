//! Failure paths of the DNS client on a virtual clock: truncation and TCP, timeouts and rounds over
//! the servers, SERVFAIL/REFUSED and refused datagrams, spoofed or stray responses, CNAME bounds,
//! answers given at once, and the seeded ids. The harness is in `mod.rs`.

use super::*;

#[test]
fn truncated_udp_answer_is_asked_again_over_tcp() {
    let t0 = Instant::now();
    let mut c = client(&[S1, S2]);
    c.lookup(Question::Srv(SRV_NAME.into()), 1, t0);
    let udp = one_transmit(&mut c);
    let mut truncated = response(&udp, ResponseCode::NoError, vec![], vec![]);
    truncated.set_truncated(true);
    c.handle_udp(addr(S1), &truncated.to_vec().unwrap(), t0 + secs(1));
    assert!(answers(&mut c).is_empty());

    let tcp = one_transmit(&mut c);
    assert_eq!((tcp.server, tcp.transport), (addr(S1), Transport::Tcp));
    assert_eq!(request(&tcp).query(), request(&udp).query());
    assert_eq!(c.poll_timeout(), Some(t0 + secs(1) + DEFAULT_TIMEOUT));
    // A late copy over UDP is no longer accepted.
    c.handle_udp(
        addr(S1),
        &reply(&udp, vec![srv(SRV_NAME, 60, 1, 1, "x.partner.example")]),
        t0,
    );
    assert!(answers(&mut c).is_empty());

    let big: Vec<Record> = (0..40)
        .map(|i| srv(SRV_NAME, 60, 10, i, &format!("sip{i}.partner.example")))
        .collect();
    c.handle_tcp(tcp.query, &reply(&tcp, big), t0 + secs(2));
    match answers(&mut c).as_slice() {
        [(1, Answer::Srv(records))] => assert_eq!(records.len(), 40),
        other => panic!("{other:?}"),
    }
}

#[test]
fn tcp_failure_moves_to_the_next_server() {
    let t0 = Instant::now();
    let mut c = client(&[S1, S2]);
    c.lookup(Question::Srv(SRV_NAME.into()), 1, t0);
    let udp = one_transmit(&mut c);
    let mut truncated = response(&udp, ResponseCode::NoError, vec![], vec![]);
    truncated.set_truncated(true);
    c.handle_udp(addr(S1), &truncated.to_vec().unwrap(), t0);
    let tcp = one_transmit(&mut c);
    c.tcp_failed(tcp.query, t0 + secs(1));
    let next = one_transmit(&mut c);
    assert_eq!((next.server, next.transport), (addr(S2), Transport::Udp));
    c.handle_udp(
        addr(S2),
        &reply(&next, vec![srv(SRV_NAME, 60, 1, 1, "sip.partner.example")]),
        t0,
    );
    assert_eq!(
        answers(&mut c),
        vec![(1, Answer::Srv(vec![srv_rec(1, 1, "sip.partner.example")]))]
    );
}

#[test]
fn timeouts_go_round_the_servers_then_fail() {
    let t0 = Instant::now();
    let mut c = client(&[S1, S2]);
    c.lookup(Question::Srv(SRV_NAME.into()), 1, t0);
    let mut now = t0;
    let mut servers = vec![];
    let mut ids = vec![];
    let mut first: Option<Transmit> = None;
    loop {
        let sent = transmits(&mut c);
        let Some(t) = sent.first() else { break };
        servers.push(t.server);
        ids.push(request(t).id());
        first.get_or_insert_with(|| t.clone());
        assert!(answers(&mut c).is_empty());
        let deadline = c.poll_timeout().unwrap();
        assert_eq!(deadline, now + DEFAULT_TIMEOUT);
        c.handle_timeout(deadline - Duration::from_millis(1));
        assert!(transmits(&mut c).is_empty(), "not before the deadline");
        now = deadline;
        c.handle_timeout(now);
        // S1 is asked again (new id): its late answer to the first attempt is not taken.
        if servers.len() == 2 {
            let late = reply(first.as_ref().unwrap(), vec![]);
            c.handle_udp(addr(S1), &late, now);
            assert!(answers(&mut c).is_empty());
        }
    }
    assert_eq!(servers, vec![addr(S1), addr(S2), addr(S1), addr(S2)]);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "a new id per attempt");
    assert_eq!(
        answers(&mut c),
        vec![(1, Answer::Failed("timeout after 4 attempts".into()))]
    );
    assert_eq!(c.poll_timeout(), None);
    // Failures are not cached.
    assert_eq!(c.lookup(Question::Srv(SRV_NAME.into()), 2, now), None);
    // Counted: five SRV transmissions (four attempts, then the new lookup's first), one failure
    // of kind timeout, its latency the four timeouts.
    let st = c.stats();
    assert_eq!(st.queries, [5, 0, 0], "{st:?}");
    assert_eq!(st.failures[0], [1, 0, 0, 0, 0, 0], "{st:?}");
    assert_eq!(st.latency[0].count(), 1);
    assert_eq!(
        st.latency[0].sum_micros,
        u64::try_from((now - t0).as_micros()).unwrap()
    );
}

#[test]
fn cname_depth_is_bounded() {
    let t0 = Instant::now();
    let mut config = DnsConfig::new(vec![addr(S1)]);
    config.max_cname_depth = 2;
    let mut c = DnsClient::new(config, SharedCache::default(), 1);

    // Three CNAMEs in one answer.
    c.lookup(Question::Srv("_s._tcp.a.example".into()), 1, t0);
    let t = one_transmit(&mut c);
    let chain = vec![
        cname("_s._tcp.a.example", 60, "b.example"),
        cname("b.example", 60, "c.example"),
        cname("c.example", 60, "d.example"),
    ];
    c.handle_udp(addr(S1), &reply(&t, chain), t0);
    assert_eq!(
        answers(&mut c),
        vec![(1, Answer::Failed("CNAME chain longer than 2".into()))]
    );

    // A loop across queries: x → y, then y → x.
    c.lookup(Question::Srv("x.example".into()), 2, t0);
    let t = one_transmit(&mut c);
    c.handle_udp(
        addr(S1),
        &reply(&t, vec![cname("x.example", 60, "y.example")]),
        t0,
    );
    let t = one_transmit(&mut c);
    c.handle_udp(
        addr(S1),
        &reply(&t, vec![cname("y.example", 60, "x.example")]),
        t0,
    );
    assert_eq!(
        answers(&mut c),
        vec![(2, Answer::Failed("CNAME chain longer than 2".into()))]
    );
    assert!(transmits(&mut c).is_empty());
}

#[test]
fn spoofed_or_stray_responses_are_ignored() {
    let t0 = Instant::now();
    let mut c = client(&[S1, S2]);
    c.lookup(Question::Srv(SRV_NAME.into()), 1, t0);
    let t = one_transmit(&mut c);
    let good = vec![srv(SRV_NAME, 60, 1, 1, "sip.partner.example")];
    let forged = vec![srv(SRV_NAME, 60, 1, 1, "evil.attacker.example")];

    let mut wrong_id = response(&t, ResponseCode::NoError, forged.clone(), vec![]);
    wrong_id.set_id(request(&t).id().wrapping_add(1));
    c.handle_udp(addr(S1), &wrong_id.to_vec().unwrap(), t0);
    c.handle_udp(addr(S2), &reply(&t, forged.clone()), t0);
    c.handle_udp(addr("192.0.2.53:5353"), &reply(&t, forged.clone()), t0);
    let mut wrong_question = response(&t, ResponseCode::NoError, forged.clone(), vec![]);
    wrong_question.queries_mut().clear();
    wrong_question.add_query(hickory_proto::op::Query::query(
        name("_sipfederationtls._tcp.other.example"),
        RecordType::SRV,
    ));
    c.handle_udp(addr(S1), &wrong_question.to_vec().unwrap(), t0);
    let mut wrong_type = response(&t, ResponseCode::NoError, forged.clone(), vec![]);
    wrong_type.queries_mut().clear();
    wrong_type.add_query(hickory_proto::op::Query::query(name(SRV_NAME), RecordType::A));
    c.handle_udp(addr(S1), &wrong_type.to_vec().unwrap(), t0);
    let mut not_a_response = response(&t, ResponseCode::NoError, forged.clone(), vec![]);
    not_a_response.set_message_type(MessageType::Query);
    c.handle_udp(addr(S1), &not_a_response.to_vec().unwrap(), t0);
    c.handle_udp(addr(S1), b"\x00\x01garbage", t0);
    c.handle_udp(addr(S1), &[], t0);
    c.handle_tcp(t.query, &reply(&t, forged), t0); // the query is not over TCP
    assert!(answers(&mut c).is_empty());
    assert_eq!(c.queries_in_flight(), 1);

    // The server's answer, as a dual-stack socket reports its IPv4 source.
    c.handle_udp(addr("[::ffff:192.0.2.53]:53"), &reply(&t, good), t0);
    assert_eq!(
        answers(&mut c),
        vec![(1, Answer::Srv(vec![srv_rec(1, 1, "sip.partner.example")]))]
    );
}

#[test]
fn servfail_and_refused_move_to_the_next_server() {
    let t0 = Instant::now();
    let mut c = client(&[S1, S2]);
    c.lookup(Question::Srv(SRV_NAME.into()), 1, t0);
    let t = one_transmit(&mut c);
    c.handle_udp(addr(S1), &reply_code(&t, ResponseCode::ServFail, vec![]), t0);
    let t = one_transmit(&mut c);
    assert_eq!(t.server, addr(S2));
    c.handle_udp(
        addr(S2),
        &reply(&t, vec![srv(SRV_NAME, 60, 1, 1, "sip.partner.example")]),
        t0,
    );
    assert_eq!(
        answers(&mut c),
        vec![(1, Answer::Srv(vec![srv_rec(1, 1, "sip.partner.example")]))]
    );

    // Every server refuses: each is asked once, not once per round.
    c.lookup(Question::Srv("_sipfederationtls._tcp.b.example".into()), 2, t0);
    let t = one_transmit(&mut c);
    c.handle_udp(addr(S1), &reply_code(&t, ResponseCode::ServFail, vec![]), t0);
    let t = one_transmit(&mut c);
    c.handle_udp(addr(S2), &reply_code(&t, ResponseCode::Refused, vec![]), t0);
    assert!(transmits(&mut c).is_empty());
    let reason = format!("REFUSED from {S2} after 2 attempts");
    assert_eq!(answers(&mut c), vec![(2, Answer::Failed(reason))]);
}

/// ICMP port unreachable (the shell's connected UDP socket reports `ECONNREFUSED`): the next server
/// at once, that server not asked again, and the failure says refused, counted as `io_error`.
#[test]
fn a_refused_datagram_moves_to_the_next_server_at_once() {
    let t0 = Instant::now();
    let mut c = client(&[S1, S2]);
    c.lookup(Question::Srv(SRV_NAME.into()), 1, t0);
    let first = one_transmit(&mut c);
    assert_eq!(first.server, addr(S1));
    c.udp_refused(addr(S2), t0); // not the server asked: nothing moves
    assert!(transmits(&mut c).is_empty());
    // As a dual-stack socket would name it.
    c.udp_refused(addr("[::ffff:192.0.2.53]:53"), t0 + secs(1));
    let next = one_transmit(&mut c);
    assert_eq!((next.server, next.transport), (addr(S2), Transport::Udp));
    assert_eq!(c.poll_timeout(), Some(t0 + secs(1) + DEFAULT_TIMEOUT));
    // S2 times out; the second round skips S1, so the query ends there.
    c.handle_timeout(t0 + secs(1) + DEFAULT_TIMEOUT);
    let again = one_transmit(&mut c);
    assert_eq!(again.server, addr(S2));
    c.handle_timeout(t0 + secs(1) + DEFAULT_TIMEOUT * 2);
    assert!(transmits(&mut c).is_empty());
    assert_eq!(
        answers(&mut c),
        vec![(1, Answer::Failed("timeout after 3 attempts".into()))]
    );

    // The only server refuses: the lookup fails at once, saying so.
    let mut c = client(&[S1]);
    c.lookup(Question::Host("sip.partner.example".into()), 2, t0);
    assert_eq!(transmits(&mut c).len(), 2, "A and AAAA");
    c.udp_refused(addr(S1), t0);
    assert!(transmits(&mut c).is_empty());
    let reason = format!("connection refused by {S1}: no DNS server on that port after 1 attempt");
    assert_eq!(answers(&mut c), vec![(2, Answer::Failed(reason))]);
    assert_eq!(c.poll_timeout(), None);
    let st = c.stats();
    assert_eq!(
        st.failures[1],
        [0, 0, 0, 0, 1, 0],
        "io_error, not the rcode REFUSED: {st:?}"
    );
    assert_eq!(st.failures[2], [0, 0, 0, 0, 1, 0], "{st:?}");

    // A refusal does not reach a query that moved on to TCP.
    let mut c = client(&[S1, S2]);
    c.lookup(Question::Srv(SRV_NAME.into()), 3, t0);
    let udp = one_transmit(&mut c);
    let mut truncated = response(&udp, ResponseCode::NoError, vec![], vec![]);
    truncated.set_truncated(true);
    c.handle_udp(addr(S1), &truncated.to_vec().unwrap(), t0);
    let tcp = one_transmit(&mut c);
    c.udp_refused(addr(S1), t0);
    assert!(transmits(&mut c).is_empty());
    assert_eq!(c.queries_in_flight(), 1);
    assert_eq!(tcp.transport, Transport::Tcp);
}

#[test]
fn literals_bad_names_and_no_servers_answer_at_once() {
    let t0 = Instant::now();
    let mut c = client(&[S1]);
    let v6: IpAddr = "2001:db8::1".parse().unwrap();
    assert_eq!(
        c.lookup(Question::Host("2001:db8::1".into()), 1, t0),
        Some(Answer::Hosts(vec![v6]))
    );
    let long_label = format!("{}.example", "x".repeat(64));
    assert!(matches!(
        c.lookup(Question::Srv(long_label), 2, t0),
        Some(Answer::Failed(_))
    ));
    assert!(matches!(
        c.lookup(Question::Host(String::new()), 3, t0),
        Some(Answer::Failed(_))
    ));
    assert!(transmits(&mut c).is_empty());

    let mut none = DnsClient::new(DnsConfig::new(vec![]), SharedCache::default(), 3);
    let failed = Some(Answer::Failed("no DNS servers configured".into()));
    assert_eq!(none.lookup(Question::Host("h.example".into()), 4, t0), failed);
    assert!(transmits(&mut none).is_empty());
}

#[test]
fn seeds_drive_the_query_ids() {
    let t0 = Instant::now();
    let ids = |seed| {
        let mut c = DnsClient::new(DnsConfig::new(vec![addr(S1)]), SharedCache::default(), seed);
        (0..8)
            .map(|i| {
                c.lookup(Question::Srv(format!("_s._tcp.n{i}.example")), i, t0);
                request(&one_transmit(&mut c)).id()
            })
            .collect::<Vec<u16>>()
    };
    assert_eq!(ids(42), ids(42));
    assert_ne!(ids(42), ids(43));
    let mut distinct = ids(0);
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() >= 7, "{distinct:?}");
}
