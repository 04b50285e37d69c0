#![no_main]
// The transaction core driven by a program of events (edge_core::proxy::fuzzing::core_target: one
// final per request, responses only on their connection, nothing left once every timer ran).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    edge_core::proxy::fuzzing::core_target(data);
});
