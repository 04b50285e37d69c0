//! `federation-policy`: the edge's routing and admission decisions as a pure, sans-IO crate —
//! a policy snapshot built from configuration and `decide_*` functions returning verdicts with reasons.
//!
//! Empty until issue 3 lands the policy; the crate exists now so the workspace has its final shape.
#![forbid(unsafe_code)]
