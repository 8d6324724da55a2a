#![no_main]
//! Schema validation of any JSON body against every served kind never panics.
use libfuzzer_sys::fuzz_target;
use vmsnap_apiserver::pure::validation;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let meta = vmsnap_api_schema_meta();
    for t in vmsnap_apiserver::registry_kinds() {
        let mut b = body.clone();
        let _ = validation::validate(&mut b, &t.schema, &meta);
    }
});

fn vmsnap_api_schema_meta() -> serde_json::Value {
    vmsnap_apiserver::registry_kinds().iter().find(|t| t.kind == "Namespace").map(|t| t.schema["properties"]["metadata"].clone()).unwrap_or_default()
}
