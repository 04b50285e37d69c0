//! The DNS cache question of issue 5: one cache shared by all workers behind a `parking_lot`
//! RwLock, or one per worker with no lock? Same cache type, same 1,000 SRV entries, in one run:
//! a lookup through the shared lock vs an unlocked per-worker cache, on one thread and with every
//! core reading the shared cache at once (the edge's real pattern: hits, no writes).
//! Run: `cargo bench -p sipedge-benches --bench dns_cache`.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edge_core::dns::{Cache, Cached, RrType, SharedCache};
use federation_policy::SrvRecord;

const ENTRIES: usize = 1000;

fn name(i: usize) -> String {
    format!("_sipfederationtls._tcp.partner{i}.example")
}

fn fill(cache: &mut Cache, expires: Instant) {
    for i in 0..ENTRIES {
        let srv = vec![SrvRecord {
            priority: 0,
            weight: 0,
            port: 5061,
            target: format!("sip.partner{i}.example"),
        }];
        cache.insert(&name(i), RrType::Srv, Cached::Srv(srv), expires);
    }
}

fn bench(c: &mut Criterion) {
    let now = Instant::now();
    let expires = now + Duration::from_secs(3600);
    let names: Vec<String> = (0..ENTRIES).map(name).collect();
    let mut local = Cache::new(10_000);
    fill(&mut local, expires);
    let shared = SharedCache::new(10_000);
    fill(&mut shared.write(), expires);

    let mut g = c.benchmark_group("dns_cache_hit");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("per_worker_unlocked", |b| {
        b.iter(|| {
            i = (i + 1) % ENTRIES;
            black_box(local.lookup(black_box(&names[i]), RrType::Srv, now).is_some())
        })
    });
    g.bench_function("shared_rwlock_1_thread", |b| {
        b.iter(|| {
            i = (i + 1) % ENTRIES;
            black_box(
                shared
                    .read()
                    .lookup(black_box(&names[i]), RrType::Srv, now)
                    .is_some(),
            )
        })
    });
    // Every other core hammers the same cache with read locks meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (1..std::thread::available_parallelism().map_or(2, usize::from))
        .map(|_| {
            let (cache, stop, names) = (shared.clone(), Arc::clone(&stop), names.clone());
            std::thread::spawn(move || {
                let mut j = 0;
                while !stop.load(Ordering::Relaxed) {
                    j = (j + 7) % ENTRIES;
                    black_box(cache.read().lookup(&names[j], RrType::Srv, now).is_some());
                }
            })
        })
        .collect();
    g.bench_function("shared_rwlock_all_cores_reading", |b| {
        b.iter(|| {
            i = (i + 1) % ENTRIES;
            black_box(
                shared
                    .read()
                    .lookup(black_box(&names[i]), RrType::Srv, now)
                    .is_some(),
            )
        })
    });
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let _ = r.join();
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
