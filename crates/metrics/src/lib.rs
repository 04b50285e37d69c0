//! `sipedge-metrics` (directory `crates/metrics`): the only crate that knows Prometheus (STYLE.md §11).
//! It owns the snapshot model a scrape is made of ([`Family`], [`Sample`], the [`Source`] the binary
//! implements), every metric name with its HELP text and bounded label sets ([`names`]) and histogram
//! bounds ([`histogram`]), the rendering of a snapshot into the text exposition through the
//! `prometheus` crate ([`Snapshot`], [`render()`]) and the bounded `/metrics`, `/healthz`, `/readyz`
//! endpoint on a thread of its own ([`serve`]), which also answers the edge's own paths such as
//! `/probe/push` ([`Source::probe`]).
//!
//! The flow: the protocol crates (edge-core, federation-policy) count into plain per-worker counters and
//! know nothing of this crate; at scrape time the binary (`crates/sipedge`) sums them into a
//! `Vec<Family>` built from the [`names`] descriptors and returns it from [`Source::families`]; this
//! crate validates it, renders it and serves it. This crate does not depend on edge-core or the binary.

pub mod histogram;
pub mod http;

pub mod names;
pub mod render;

pub use http::{serve, serve_with, Exporter, Limits};

pub use render::{render, Rendered, Snapshot};

/// What a family measures, as the exposition's `# TYPE` line says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (a restart resets it); the name ends in `_total`.
    Counter,
    /// Goes up and down, or is a fact (`_info`, timestamps, generations).
    Gauge,
    /// A distribution over fixed bucket upper bounds, in microseconds, rendered in seconds (every
    /// histogram of the edge is a duration). The `+Inf` bucket is implied.
    Histogram(&'static [u64]),
}

/// The values one label can take: what makes the edge's series count bounded by construction
/// ([`names::max_series`] multiplies these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// A fixed set, listed in [`names`].
    Fixed(&'static [&'static str]),
    /// The worker index, `0` to `workers - 1`.
    Worker,
    /// A configured partner's name (allowed domain or hosted provider), or [`names::OTHER`].
    Partner,
    /// A configured certificate's role (`internal`, `external`).
    Certificate,
    /// Fixed by the other labels of the series, one value each: a certificate's subject, the build's
    /// version and commit.
    Determined,
}

/// One label of a family: its name and the values it can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    pub name: &'static str,
    pub values: Values,
}

/// A metric family's contract: name, HELP text, type and label names (in exposition order). Every one
/// the edge exports is a constant in [`names`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desc {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub labels: &'static [Label],
}

impl Desc {
    pub const fn counter(name: &'static str, help: &'static str, labels: &'static [Label]) -> Desc {
        Desc {
            name,
            help,
            kind: Kind::Counter,
            labels,
        }
    }

    pub const fn gauge(name: &'static str, help: &'static str, labels: &'static [Label]) -> Desc {
        Desc {
            name,
            help,
            kind: Kind::Gauge,
            labels,
        }
    }

    pub const fn histogram(
        name: &'static str,
        help: &'static str,
        bounds_micros: &'static [u64],
        labels: &'static [Label],
    ) -> Desc {
        Desc {
            name,
            help,
            kind: Kind::Histogram(bounds_micros),
            labels,
        }
    }

    /// An empty family of this descriptor, for the samples of one scrape.
    pub fn family(&self) -> Family {
        Family {
            desc: *self,
            samples: Vec::new(),
        }
    }
}

/// One family of one scrape: its descriptor and the samples the binary summed.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub desc: Desc,
    pub samples: Vec<Sample>,
}

impl Family {
    /// Adds a counter or gauge sample; label values in the order of `desc.labels`.
    pub fn value<S: Into<String>>(mut self, labels: impl IntoIterator<Item = S>, value: f64) -> Family {
        let labels = labels.into_iter().map(Into::into).collect();
        self.samples.push(Sample::Value { labels, value });
        self
    }

    /// Adds a sample of any kind.
    pub fn sample(mut self, sample: Sample) -> Family {
        self.samples.push(sample);
        self
    }
}

/// One series of a family. Label values are in the order of the family's label names; a sample whose
/// count differs, whose kind differs from the family's, or whose numbers break the format is skipped
/// at render time and counted in [`names::SAMPLES_REJECTED`].
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    /// A counter or gauge value (finite; a counter's is not negative).
    Value { labels: Vec<String>, value: f64 },
    /// A histogram: `cumulative[i]` observations were at most the family's `i`-th bound (one count
    /// per bound, non-decreasing); `count` is every observation (the `+Inf` bucket), `sum` their
    /// total in seconds.
    Histogram {
        labels: Vec<String>,
        cumulative: Vec<u64>,
        sum: f64,
        count: u64,
    },
}

impl Sample {
    pub fn labels(&self) -> &[String] {
        match self {
            Sample::Value { labels, .. } | Sample::Histogram { labels, .. } => labels,
        }
    }
}

/// `/healthz`: the process and every worker loop are alive (a worker that stopped turning fails it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub ok: bool,
    /// Why not, for the 503 body (e.g. `worker 1 has not turned for 12 s`); may be empty when ok.
    pub detail: String,
}

/// `/readyz`: listeners up, configuration loaded, not draining.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    /// Why not, for the 503 body (e.g. `draining`); may be empty when ready.
    pub detail: String,
}

/// An answer of the edge's own for a path the endpoint does not serve itself (e.g. `/probe/push`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// What [`Source::probe`] gives for a path it serves.
#[derive(Debug)]
pub enum Probe {
    /// The answer now (e.g. from a cache).
    Ready(Reply),
    /// The answer comes on `reply` (from a thread of the edge's); the endpoint keeps serving other
    /// requests meanwhile and answers 504 if nothing came within `wait`, 500 if the sender is dropped.
    Pending {
        reply: std::sync::mpsc::Receiver<Reply>,
        wait: std::time::Duration,
    },
}

/// What the endpoint asks the edge for, on its own thread (never on a SIP worker), once per request.
pub trait Source: Send + Sync + 'static {
    /// This scrape's snapshot: every family the edge exports, summed over workers.
    fn families(&self) -> Vec<Family>;
    fn health(&self) -> Health;
    fn readiness(&self) -> Readiness;
    /// A `GET` (or a `HEAD`, answered alike without the body) of a path other than `/metrics`,
    /// `/healthz` and `/readyz`: `None` (the default) is 404. Must not block: slow work goes to another thread and comes back as [`Probe::Pending`].
    fn probe(&self, _path: &str) -> Option<Probe> {
        None
    }
    /// Called on the endpoint's thread after each answer is built (its temporaries freed): the
    /// edge gives the thread's free allocator pages back to the system here — a scrape builds
    /// every family and would otherwise keep megabytes between scrapes.
    fn after_response(&self) {}
}

/// The crate's one error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The text encoder refused the families (it should not: they are validated first).
    #[error("rendering the metrics exposition: {0}")]
    Encode(#[from] prometheus::Error),
}
