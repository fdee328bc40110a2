//! A replica receiving a pack: `Repositories::accept` with a valid signed snapshot and
//! the fuzz input as the pack (see `guts_fuzz::pack_ingest` for the input's layout).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    guts_fuzz::pack_ingest(guts_fuzz::scratch_repos(), data);
});
