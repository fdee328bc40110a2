//! Tree entry names and `.gitmodules` contents through the store's copy of git's fsck
//! rules (`guts_storage::check_entry_name`, `check_gitmodules`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| guts_fuzz::entry_rules(data));
