//! A replica receiving a pack built from fuzzed objects, so that mutations reach the
//! checks after indexing (see `guts_fuzz::pack_objects` for the input's layout).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    guts_fuzz::pack_objects(guts_fuzz::scratch_repos(), data);
});
