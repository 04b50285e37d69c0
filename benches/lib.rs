//! Shared fixtures for the benchmarks (the messages every parser is fed).
