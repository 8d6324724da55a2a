#![no_main]
//! Label and field selector parsing never panics, and a parsed selector can always be evaluated.
use libfuzzer_sys::fuzz_target;
use vmsnap_apiserver::pure::selector::{FieldSelector, LabelSelector};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(s) = LabelSelector::parse(text) {
        let _ = s.matches_object(&serde_json::json!({"metadata": {"labels": {"a": "b"}}}));
    }
    if let Ok(s) = FieldSelector::parse(text, true) {
        let _ = s.matches(&serde_json::json!({"metadata": {"name": "x"}}));
    }
});
