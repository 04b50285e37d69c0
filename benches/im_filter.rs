//! The IM URL filter, one pass (a first-octet index over the prefixes, no lower-cased copy) against
//! the reference it replaced (every prefix against every word of a lower-cased copy), side by side
//! in one run on Lync's default prefixes (and the proxy's octet path, `check_bytes`): a ~300-byte IM with no link (every word checked), and the
//! same with a link at the end. Run: `cargo bench -p sipedge-benches --bench im_filter`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use federation_policy::im_filter::reference_first_match;
use federation_policy::ImFilter;

const IM: &str = "Hi Bob, this is a load-test instant message from the sipedge bench. It carries about \
three hundred octets of ordinary text, the way a Lync or Skype for Business client would send it to a \
federated partner: a few sentences, some punctuation, no links at all, so every word of it goes \
through the URL filter before the edge forwards it to the partner's edge.";

fn bench(c: &mut Criterion) {
    let filter = ImFilter::default();
    let with_link = format!("{IM} See https://example.com/x");
    for (name, text) in [("no_link", IM.to_owned()), ("link_at_end", with_link)] {
        assert_eq!(
            filter.first_match_for_bench(&text),
            reference_first_match(filter.prefixes(), &text)
        );
        let mut g = c.benchmark_group(format!("im_filter_{name}"));
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function("reference", |b| {
            b.iter(|| black_box(reference_first_match(filter.prefixes(), black_box(&text))))
        });
        g.bench_function("one_pass", |b| {
            b.iter(|| black_box(filter.first_match_for_bench(black_box(&text))))
        });
        // The proxy's path: the body's octets, no lossy UTF-8 copy.
        g.bench_function("octets", |b| {
            b.iter(|| black_box(filter.check_bytes(black_box(text.as_bytes()))))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
