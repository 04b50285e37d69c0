//! Heap allocations per forwarded transaction in the proxy core (issue 19): the same whole MESSAGE
//! transaction as the `counting` bench (`core_txn.rs`), with the global allocator wrapped by
//! `stats_alloc` (a counting wrapper around the system allocator, so no `unsafe` of ours), and the
//! count taken around each call into the core only — the bench's own messages are built outside.
//! Prints allocations, reallocations and bytes per transaction, by step, averaged over 10,000
//! transactions after 2,000 to warm up. Each transaction ends as a loop turn of the shell does, with
//! the core's due timers (a finished non-INVITE goes then); every 1,000 the clock jumps 40 s, so
//! whatever lingers goes too.
//! Run: `cargo bench -p sipedge-benches --bench allocs`.
//!
//! What the shell adds per message (the read into the connection's buffer, rustls's record
//! buffers) is not counted here: this is the core's share, the part the core's design decides.
//! As the shell does, each sent message's buffer is given back to the core once "written"
//! (`Proxy::recycle`).

#[path = "core_txn.rs"]
mod core_txn;

use std::alloc::System;
use std::time::Instant;

use edge_core::proxy::io::{Destination, Effect, Input};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const WARMUP: u64 = 2_000;
const MEASURED: u64 = 10_000;

/// Allocations, reallocations and bytes allocated, summed over the measured transactions.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    allocations: usize,
    reallocations: usize,
    bytes: usize,
}

impl Tally {
    fn add(&mut self, s: stats_alloc::Stats) {
        self.allocations += s.allocations;
        self.reallocations += s.reallocations;
        self.bytes += s.bytes_allocated;
    }
}

/// What the shell does once a message is written: the buffer goes back to the core.
fn give_back(p: &mut edge_core::proxy::Proxy, out: &mut Vec<Effect>) {
    for e in out.drain(..) {
        if let Effect::Send { bytes, .. } = e {
            p.recycle(bytes);
        }
    }
}

fn main() {
    let mut p = core_txn::proxy(true);
    let mut out: Vec<Effect> = Vec::with_capacity(16);
    let mut now = Instant::now();
    let steps = [
        "request in, forwarded",
        "Delivered",
        "200 in, relayed",
        "end of turn (timers)",
    ];
    let mut tally = [Tally::default(); 4];
    let mut timers: Vec<Effect> = Vec::with_capacity(16);
    for i in 1..=WARMUP + MEASURED {
        core_txn::linger(&mut p, i, &mut now);
        let req = core_txn::request(i);
        out.clear();
        let r = Region::new(GLOBAL);
        p.handle(
            Input::Message {
                conn: core_txn::FE,
                bytes: &req,
            },
            now,
            &mut out,
        );
        let request_in = r.change();
        let (fwd, token) = core_txn::forwarded(&out);
        give_back(&mut p, &mut out);
        let r = Region::new(GLOBAL);
        p.handle(
            Input::Delivered {
                token,
                conn: core_txn::PARTNER,
            },
            now,
            &mut out,
        );
        let delivered = r.change();
        let resp = core_txn::answer(&fwd);
        out.clear();
        let r = Region::new(GLOBAL);
        p.handle(
            Input::Message {
                conn: core_txn::PARTNER,
                bytes: &resp,
            },
            now,
            &mut out,
        );
        let response_in = r.change();
        // The end of the shell's loop turn: due timers run (a non-INVITE is forgotten here, its
        // stored request back in the core's spare buffers).
        let r = Region::new(GLOBAL);
        p.handle_timeout(now, &mut timers);
        let end_of_turn = r.change();
        assert!(
            out.iter()
                .any(|e| matches!(e, Effect::Send { dest: Destination::Conn(c), .. } if *c == core_txn::FE)),
            "the 200 was not relayed: {out:?}"
        );
        give_back(&mut p, &mut out);
        if i > WARMUP {
            tally[0].add(request_in);
            tally[1].add(delivered);
            tally[2].add(response_in);
            tally[3].add(end_of_turn);
        }
    }
    let n = MEASURED as f64;
    println!("proxy core, one forwarded MESSAGE transaction (averages over {MEASURED}):");
    println!(
        "{:<24} {:>12} {:>15} {:>10}",
        "step", "allocations", "reallocations", "bytes"
    );
    let mut total = Tally::default();
    for (name, t) in steps.iter().zip(tally) {
        println!(
            "{name:<24} {:>12.2} {:>15.2} {:>10.0}",
            t.allocations as f64 / n,
            t.reallocations as f64 / n,
            t.bytes as f64 / n
        );
        total.allocations += t.allocations;
        total.reallocations += t.reallocations;
        total.bytes += t.bytes;
    }
    println!(
        "{:<24} {:>12.2} {:>15.2} {:>10.0}",
        "transaction",
        total.allocations as f64 / n,
        total.reallocations as f64 / n,
        total.bytes as f64 / n
    );
}
