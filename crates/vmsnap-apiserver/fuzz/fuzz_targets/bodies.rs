#![no_main]
//! The checks run on every JSON request body before it is used (duplicate keys, labels and
//! annotations, object names) never panic, whatever the bytes.
use libfuzzer_sys::fuzz_target;
use vmsnap_apiserver::pure::{duplicates, metadata, names::NameRule};

fuzz_target!(|data: &[u8]| {
    let _ = duplicates::duplicate_fields(data);
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = metadata::validate(&value);
    }
    let text = String::from_utf8_lossy(data);
    for rule in [NameRule::Subdomain, NameRule::Label, NameRule::Dns1035Label, NameRule::PathSegment] {
        let _ = rule.check(&text);
        let _ = rule.check_prefix(&text);
    }
    let _ = metadata::qualified_name_errors(&text);
    let _ = metadata::label_value_errors(&text);
});
