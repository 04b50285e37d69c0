//! `sipedge-metrics` (directory `crates/metrics`): the only crate that knows Prometheus. Every metric
//! name with its HELP text, bounded label sets, the `/metrics`, `/healthz` and `/readyz` endpoint.
//!
//! Empty until the operations issue lands; the crate exists now so the workspace has its final shape.
