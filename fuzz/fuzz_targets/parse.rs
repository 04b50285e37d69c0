//! Fuzz target `parse`: the checks live in `sip_codec::fuzzing::parse_target` so the seed corpus is also
//! replayed by the codec's unit tests on stable Rust.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sip_codec::fuzzing::parse_target(data));
