//! The sync protocol's framing (4-byte big-endian length, then a wire message) through
//! the node's own request-response codec, as a request and as a response.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| guts_fuzz::frames(data));
