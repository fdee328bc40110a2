//! A snapshot as a GetRefs answer (or the stored snapshot file) carries it, and the
//! identifiers a peer or a user can hand us as text.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| guts_fuzz::signed_refs(data));
