//! Every message a peer can send us, decoded from the same bytes under its own limit.
//! Whatever decodes must re-encode to something that decodes to an equal message, and
//! verifying what it carries must not panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| guts_fuzz::wire_messages(data));
