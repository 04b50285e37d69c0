//! Rendering: a scrape's [`Family`]s become the `prometheus` crate's `MetricFamily` model inside a
//! [`Snapshot`] (a `prometheus::core::Collector`, so it can also be registered in a `Registry`), and
//! `TextEncoder` writes the text exposition (format 0.0.4): HELP and TYPE on every family, label and
//! HELP escaping, histogram `_bucket{le=...}`/`_sum`/`_count`. The encoder trusts its input, so the
//! contract is checked here first: a family with an invalid name, label name or empty HELP, or whose
//! name was already rendered, is left out whole; a sample with the wrong label count, the wrong kind, a
//! non-finite or negative-counter value, buckets that do not match the family's bounds or are not
//! cumulative, or a label set already seen in its family is left out. Either way it is counted, never a
//! panic. The HTTP side is in [`crate::http`].

use std::collections::{HashMap, HashSet};

use prometheus::core::Collector;
use prometheus::proto;
use prometheus::TextEncoder;

use crate::histogram::micros_to_seconds;
use crate::{Desc, Error, Family, Kind, Sample};

/// One scrape's families, validated and converted; `rejected` counts what was left out.
#[derive(Debug, Default)]
pub struct Snapshot {
    families: Vec<proto::MetricFamily>,
    names: HashSet<&'static str>,
    rejected: u64,
}

/// A rendered exposition and the samples it left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub rejected: u64,
}

/// Validates and renders `families` (see the module doc for what is left out).
pub fn render(families: &[Family]) -> Result<Rendered, Error> {
    let snapshot = Snapshot::new(families);
    Ok(Rendered {
        text: snapshot.encode()?,
        rejected: snapshot.rejected(),
    })
}

impl Snapshot {
    pub fn new(families: &[Family]) -> Snapshot {
        let mut s = Snapshot::default();
        for f in families {
            s.push(f);
        }
        s
    }

    /// Adds one more family, validated like the others.
    pub fn push(&mut self, family: &Family) {
        if !valid_desc(&family.desc) || !self.names.insert(family.desc.name) {
            self.reject(family.samples.len());
            return;
        }
        let mut seen: HashSet<&[String]> = HashSet::with_capacity(family.samples.len());
        let mut metrics = Vec::with_capacity(family.samples.len());
        for sample in &family.samples {
            match metric(&family.desc, sample) {
                Some(m) if seen.insert(sample.labels()) => metrics.push(m),
                _ => self.reject(1),
            }
        }
        if metrics.is_empty() {
            // The text format has no empty family; an unlabeled family always has its sample.
            return;
        }
        let mut mf = proto::MetricFamily::default();
        mf.set_name(family.desc.name.to_owned());
        mf.set_help(family.desc.help.to_owned());
        mf.set_field_type(match family.desc.kind {
            Kind::Counter => proto::MetricType::COUNTER,
            Kind::Gauge => proto::MetricType::GAUGE,
            Kind::Histogram(_) => proto::MetricType::HISTOGRAM,
        });
        mf.set_metric(metrics);
        self.families.push(mf);
    }

    /// Samples left out so far.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// The text exposition of what [`Collector::collect`] yields.
    pub fn encode(&self) -> Result<String, Error> {
        let mut text = String::new();
        TextEncoder::new().encode_utf8(&self.collect(), &mut text)?;
        Ok(text)
    }

    fn reject(&mut self, samples: usize) {
        self.rejected = self
            .rejected
            .saturating_add(u64::try_from(samples).unwrap_or(u64::MAX));
    }
}

impl Collector for Snapshot {
    /// None: the families are known per scrape, so the snapshot is an unchecked collector (it checks
    /// its families itself, in [`Snapshot::push`]).
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        Vec::new()
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        self.families.clone()
    }
}

/// Name, HELP and label names as `prometheus::core::Desc` accepts them, plus what the text format
/// reserves: `__` label prefixes, and `le` and strictly increasing bounds for histograms.
fn valid_desc(desc: &Desc) -> bool {
    let labels: Vec<String> = desc.labels.iter().map(|l| l.name.to_owned()).collect();
    let accepted =
        prometheus::core::Desc::new(desc.name.to_owned(), desc.help.to_owned(), labels, HashMap::new())
            .is_ok();
    let reserved = desc.labels.iter().any(|l| l.name.starts_with("__"));
    let histogram_ok = match desc.kind {
        Kind::Histogram(bounds) => {
            !desc.labels.iter().any(|l| l.name == "le")
                && bounds.windows(2).all(|w| matches!(w, [a, b] if a < b))
        }
        Kind::Counter | Kind::Gauge => true,
    };
    accepted && !reserved && histogram_ok
}

/// The proto metric of one sample, or `None` when it breaks its family's contract.
fn metric(desc: &Desc, sample: &Sample) -> Option<proto::Metric> {
    let values = sample.labels();
    if values.len() != desc.labels.len() {
        return None;
    }
    let pairs = desc
        .labels
        .iter()
        .zip(values)
        .map(|(label, value)| {
            let mut p = proto::LabelPair::default();
            p.set_name(label.name.to_owned());
            p.set_value(value.clone());
            p
        })
        .collect();
    let mut m = proto::Metric::from_label(pairs);
    match (desc.kind, sample) {
        (Kind::Counter, Sample::Value { value, .. }) if value.is_finite() && *value >= 0.0 => {
            let mut c = proto::Counter::default();
            c.set_value(*value);
            m.set_counter(c);
        }
        (Kind::Gauge, Sample::Value { value, .. }) if value.is_finite() => {
            let mut g = proto::Gauge::default();
            g.set_value(*value);
            m.set_gauge(g);
        }
        (
            Kind::Histogram(bounds),
            Sample::Histogram {
                cumulative,
                sum,
                count,
                ..
            },
        ) => {
            let monotone = cumulative.windows(2).all(|w| matches!(w, [a, b] if a <= b));
            let within = cumulative.last().is_none_or(|last| last <= count);
            if cumulative.len() != bounds.len() || !monotone || !within || !sum.is_finite() {
                return None;
            }
            let buckets = bounds
                .iter()
                .zip(cumulative)
                .map(|(bound, n)| {
                    let mut b = proto::Bucket::default();
                    b.set_upper_bound(micros_to_seconds(*bound));
                    b.set_cumulative_count(*n);
                    b
                })
                .collect();
            let mut h = proto::Histogram::default();
            h.set_bucket(buckets);
            h.set_sample_sum(*sum);
            h.set_sample_count(*count);
            m.set_histogram(h);
        }
        _ => return None,
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{self, max_series};
    use crate::{Label, Values};

    const REASON: Label = Label {
        name: "reason",
        values: Values::Fixed(&["a", "b"]),
    };
    const C: Desc = Desc::counter("t_events_total", "Events.", &[REASON]);
    const G: Desc = Desc::gauge("t_level", "Level.", &[]);
    static B: [u64; 3] = [1_000, 10_000, 1_000_000];
    const H: Desc = Desc::histogram("t_wait_seconds", "Wait.", &B, &[REASON]);

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let out = render(&[C.family().value(["a"], 3.0), G.family().value::<&str>([], -2.5)]).unwrap();
        assert_eq!(out.rejected, 0);
        assert_eq!(
            lines(&out.text),
            [
                "# HELP t_events_total Events.",
                "# TYPE t_events_total counter",
                "t_events_total{reason=\"a\"} 3",
                "# HELP t_level Level.",
                "# TYPE t_level gauge",
                "t_level -2.5",
            ]
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        const ODD: Desc = Desc::counter("t_odd_total", "Back\\slash and\nnewline.", &[REASON]);
        let out = render(&[ODD.family().value(["q\"uote \\ new\nline"], 1.0)]).unwrap();
        assert!(
            out.text
                .contains("# HELP t_odd_total Back\\\\slash and\\nnewline.\n"),
            "{}",
            out.text
        );
        assert!(
            out.text
                .contains("t_odd_total{reason=\"q\\\"uote \\\\ new\\nline\"} 1\n"),
            "{}",
            out.text
        );
    }

    #[test]
    fn histograms_have_monotone_buckets_in_seconds_then_sum_and_count() {
        // Observations of 0, 5, 5, 500 and 5,000 ms over bounds of 1 ms, 10 ms and 1 s.
        let h = Sample::Histogram {
            labels: vec!["b".into()],
            cumulative: vec![1, 3, 4],
            sum: 5.51,
            count: 5,
        };
        let out = render(&[H.family().sample(h)]).unwrap();
        assert_eq!(
            lines(&out.text)[2..],
            [
                "t_wait_seconds_bucket{reason=\"b\",le=\"0.001\"} 1",
                "t_wait_seconds_bucket{reason=\"b\",le=\"0.01\"} 3",
                "t_wait_seconds_bucket{reason=\"b\",le=\"1\"} 4",
                "t_wait_seconds_bucket{reason=\"b\",le=\"+Inf\"} 5",
                "t_wait_seconds_sum{reason=\"b\"} 5.51",
                "t_wait_seconds_count{reason=\"b\"} 5",
            ]
        );
        assert!(out.text.contains("# TYPE t_wait_seconds histogram\n"));
    }

    #[test]
    fn bad_samples_are_skipped_and_counted_and_the_good_ones_kept() {
        let hist = |cumulative: Vec<u64>, sum: f64, count: u64| Sample::Histogram {
            labels: vec!["a".into()],
            cumulative,
            sum,
            count,
        };
        let families = [
            C.family()
                .value(["a"], 1.0)
                .value(["a", "extra"], 1.0) // label count
                .value::<&str>([], 1.0) // label count
                .value(["b"], -1.0) // negative counter
                .value(["b"], f64::NAN) // not finite
                .value(["a"], 2.0) // same series twice
                .sample(hist(vec![1, 1, 1], 0.0, 1)), // kind
            G.family().value::<&str>([], f64::INFINITY), // not finite: the family has no sample left
            H.family()
                .sample(hist(vec![1, 2, 3], 1.0, 3))
                .sample(Sample::Histogram {
                    labels: vec!["b".into()],
                    cumulative: vec![2, 1, 3],
                    sum: 1.0,
                    count: 3,
                }) // not cumulative
                .sample(hist(vec![1, 2], 1.0, 3)) // bucket count
                .sample(hist(vec![1, 2, 3], 1.0, 2)) // count below the last bucket
                .sample(hist(vec![1, 2, 3], f64::NAN, 3)) // sum
                .value(["b"], 1.0), // kind
        ];
        let out = render(&families).unwrap();
        assert_eq!(out.rejected, 12, "{}", out.text);
        assert!(out.text.contains("t_events_total{reason=\"a\"} 1\n"));
        assert!(!out.text.contains("t_events_total{reason=\"a\"} 2"));
        assert!(
            !out.text.contains("t_level"),
            "an empty family is left out: {}",
            out.text
        );
        assert!(out.text.contains("t_wait_seconds_count{reason=\"a\"} 3\n"));
        assert!(!out.text.contains("reason=\"b\""), "{}", out.text);
        assert!(!out.text.contains("extra") && !out.text.contains("NaN") && !out.text.contains("inf"));
    }

    #[test]
    fn invalid_or_repeated_families_are_left_out_whole() {
        const BAD_NAME: Desc = Desc::counter("t-dash_total", "Bad name.", &[]);
        const NO_HELP: Desc = Desc::counter("t_nohelp_total", "", &[]);
        const BAD_LABEL: Desc = Desc::counter(
            "t_bad_label_total",
            "Bad label.",
            &[Label {
                name: "__x",
                values: Values::Determined,
            }],
        );
        const LE: Desc = Desc::histogram(
            "t_le_seconds",
            "le.",
            &B,
            &[Label {
                name: "le",
                values: Values::Determined,
            }],
        );
        static UNSORTED: [u64; 2] = [10, 5];
        const UNSORTED_H: Desc = Desc::histogram("t_unsorted_seconds", "Unsorted.", &UNSORTED, &[]);
        let one = |d: Desc| d.family().value::<&str>([], 1.0);
        let out = render(&[
            one(BAD_NAME),
            one(NO_HELP),
            BAD_LABEL.family().value(["x"], 1.0),
            LE.family().sample(Sample::Histogram {
                labels: vec!["1".into()],
                cumulative: vec![0; 3],
                sum: 0.0,
                count: 0,
            }),
            UNSORTED_H.family().sample(Sample::Histogram {
                labels: vec![],
                cumulative: vec![0; 2],
                sum: 0.0,
                count: 0,
            }),
            C.family().value(["a"], 1.0),
            C.family().value(["b"], 1.0), // the same family again
        ])
        .unwrap();
        assert_eq!(out.rejected, 6);
        assert_eq!(
            lines(&out.text),
            [
                "# HELP t_events_total Events.",
                "# TYPE t_events_total counter",
                "t_events_total{reason=\"a\"} 1"
            ]
        );
    }

    #[test]
    fn the_snapshot_is_a_collector_a_registry_accepts() {
        let snapshot = Snapshot::new(&[C.family().value(["a"], 1.0), G.family().value::<&str>([], 1.0)]);
        let registry = prometheus::Registry::new();
        registry.register(Box::new(snapshot)).unwrap();
        let gathered = registry.gather();
        let names: Vec<_> = gathered.iter().map(|f| f.name().to_owned()).collect();
        assert_eq!(names, ["t_events_total", "t_level"]);
    }

    #[test]
    fn every_possible_series_renders_clean_and_max_series_counts_them() {
        for (workers, partners, certificates) in [(1, 0, 1), (3, 5, 2)] {
            let families = names::every_series(workers, partners, certificates);
            assert_eq!(families.len(), names::ALL.len());
            let out = render(&families).unwrap();
            assert_eq!(out.rejected, 0);
            let series = out.text.lines().filter(|l| !l.starts_with('#')).count();
            assert_eq!(series, max_series(workers, partners, certificates));
            let headers = out
                .text
                .lines()
                .filter(|l| l.starts_with("# HELP sipedge_"))
                .count();
            assert_eq!(headers, names::ALL.len());
        }
    }
}
