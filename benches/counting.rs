//! What counting costs per transaction (issue 9): the proxy core, sans-IO, driven through a whole
//! MESSAGE transaction — the front end's request in, the forwarded request out, the shell's
//! `Delivered`, the partner's 200 in, the 200 out to the front end — with the core's counters on
//! and off, side by side in one run (ratios; this machine is noisy). The linger timer is run off
//! every 1,000 transactions so the tables stay the size a live edge has.
//! Run: `cargo bench -p sipedge-benches --bench counting`.
//!
//! Wall-clock time on this shared 2-core machine moves by more than counting costs, so the figure the
//! README quotes is instructions: `COUNTING=on|off` makes the bench binary run 20,000 transactions
//! (after 2,000 to warm up) and exit, for `valgrind --tool=callgrind` (deterministic counts):
//! `COUNTING=on valgrind --tool=callgrind --callgrind-out-file=/tmp/on.out target/release/deps/counting-*`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use edge_core::proxy::io::{ConnId, Destination, Effect, Input, PeerInfo, Side};
use edge_core::proxy::{Proxy, ProxySettings};
use federation_policy::{DomainName, Fqdn, PolicyBuilder};

const FE: ConnId = ConnId(1);
const PARTNER: ConnId = ConnId(100);

fn proxy(counting: bool) -> Proxy {
    let d = |s: &str| DomainName::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    let f = |s: &str| Fqdn::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    let mut b = PolicyBuilder::new();
    b.edge_fqdn("edge.corp.example")
        .our_domain(d("corp.example"))
        .allow(d("partner.example"), Some(f("edge.partner.example")), None)
        .known_server(f("fe1.corp.example"), "6");
    let policy = Arc::new(b.build().unwrap_or_else(|e| panic!("{e:?}")));
    let settings = ProxySettings::new(
        "edge.corp.example",
        "edge-int.corp.example:5061",
        "edge.corp.example:5061",
        f("pool.corp.example"),
    );
    let mut p = Proxy::new(settings, policy, 0);
    p.seed(1);
    p.set_counting(counting);
    let addr: SocketAddr = "127.0.0.1:40000".parse().unwrap_or_else(|e| panic!("{e}"));
    let peer = |side, name: &str, dialled: Option<Fqdn>| PeerInfo {
        side,
        remote: addr,
        identities: vec![name.to_owned()],
        dialled,
    };
    let now = Instant::now();
    let mut out = Vec::new();
    p.handle(
        Input::ConnUp {
            conn: FE,
            peer: peer(Side::Internal, "fe1.corp.example", None),
        },
        now,
        &mut out,
    );
    p.handle(
        Input::ConnUp {
            conn: PARTNER,
            peer: peer(
                Side::External,
                "edge.partner.example",
                Some(f("edge.partner.example")),
            ),
        },
        now,
        &mut out,
    );
    p
}

fn request(i: u64) -> Vec<u8> {
    let body = "x".repeat(300);
    format!(
        "MESSAGE sip:bob@partner.example SIP/2.0\r\nVia: SIP/2.0/TLS fe1.corp.example:5061;branch=z9hG4bKb{i}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@corp.example>;tag=a{i}\r\nTo: <sip:bob@partner.example>\r\nCall-ID: c{i}@fe1.corp.example\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The partner's 200 to the forwarded request: its Via lines, From, To with a tag, Call-ID, CSeq.
fn answer(fwd: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(fwd);
    let mut s = String::from("SIP/2.0 200 OK\r\n");
    for line in text.split("\r\n").take_while(|l| !l.is_empty()) {
        let keep = ["Via:", "From:", "Call-ID:", "CSeq:"];
        if keep.iter().any(|k| line.starts_with(k)) {
            s.push_str(line);
            s.push_str("\r\n");
        } else if line.starts_with("To:") {
            s.push_str(line);
            s.push_str(";tag=b\r\n");
        }
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s.into_bytes()
}

/// One whole transaction through `p`; returns the bytes written back to the front end.
fn transaction(p: &mut Proxy, i: u64, now: Instant, out: &mut Vec<Effect>) -> usize {
    let req = request(i);
    out.clear();
    p.handle(
        Input::Message {
            conn: FE,
            bytes: &req,
        },
        now,
        out,
    );
    let Some((fwd, token)) = out.iter().find_map(|e| match e {
        Effect::Send {
            dest: Destination::Hop(_),
            bytes,
            token: Some(t),
        } => Some((bytes.clone(), *t)),
        _ => None,
    }) else {
        panic!("not forwarded: {out:?}")
    };
    p.handle(Input::Delivered { token, conn: PARTNER }, now, out);
    let resp = answer(&fwd);
    out.clear();
    p.handle(
        Input::Message {
            conn: PARTNER,
            bytes: &resp,
        },
        now,
        out,
    );
    out.iter()
        .map(|e| match e {
            Effect::Send { bytes, .. } => bytes.len(),
            _ => 0,
        })
        .sum()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("proxy_transaction");
    g.throughput(Throughput::Elements(1));
    for (name, counting) in [("counting_on", true), ("counting_off", false)] {
        let mut p = proxy(counting);
        let mut out = Vec::with_capacity(16);
        let mut now = Instant::now();
        let mut i = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                if i % 1000 == 0 {
                    // Let finished transactions linger out, as time passing would.
                    now += Duration::from_secs(40);
                    let mut t = Vec::new();
                    p.handle_timeout(now, &mut t);
                }
                black_box(transaction(&mut p, i, now, &mut out))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);

/// Transactions counted under `COUNTING=on|off` (after as many to warm up as a tenth of them).
const INSTRUCTION_RUN: u64 = 20_000;

fn main() {
    if let Ok(mode) = std::env::var("COUNTING") {
        let mut p = proxy(mode == "on");
        let mut out = Vec::with_capacity(16);
        let mut now = Instant::now();
        for i in 1..=INSTRUCTION_RUN + INSTRUCTION_RUN / 10 {
            if i % 1000 == 0 {
                now += Duration::from_secs(40);
                let mut t = Vec::new();
                p.handle_timeout(now, &mut t);
            }
            black_box(transaction(&mut p, i, now, &mut out));
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
