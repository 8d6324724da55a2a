#![no_main]
//! URL path and Accept header parsing never panic.
use libfuzzer_sys::fuzz_target;
use vmsnap_apiserver::pure::{accept, path};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = path::parse(text);
    let _ = accept::representation(text);
});
