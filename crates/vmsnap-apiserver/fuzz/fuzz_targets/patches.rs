#![no_main]
//! Every patch type either applies or returns an error; none panics, whatever the document and patch.
use libfuzzer_sys::fuzz_target;
use vmsnap_apiserver::pure::patch;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (doc, p) = text.split_once('\n').unwrap_or((r#"{"metadata":{"name":"x"}}"#, &text));
    let (Ok(doc), Ok(p)) = (serde_json::from_str(doc), serde_json::from_str(p)) else { return };
    let _ = patch::merge(&doc, &p);
    let _ = patch::json(&doc, &p);
    let _ = patch::strategic(&doc, &p);
    let _ = patch::apply(&doc, &p, Some(&doc));
});
