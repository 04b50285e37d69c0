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

#[path = "core_txn.rs"]
mod core_txn;

use std::hint::black_box;
use std::time::Instant;

use core_txn::{proxy, transaction};
use criterion::{criterion_group, Criterion, Throughput};

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
                core_txn::linger(&mut p, i, &mut now);
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
            core_txn::linger(&mut p, i, &mut now);
            black_box(transaction(&mut p, i, now, &mut out));
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
