#![no_main]
//! Any bytes sent as `application/vnd.kubernetes.protobuf` decode to an object or an error; none
//! panics or recurses without bound.
use libfuzzer_sys::fuzz_target;
use vmsnap_apiserver::pure::protobuf;

fuzz_target!(|data: &[u8]| {
    let _ = protobuf::decode(data);
    // Most inputs lack the magic prefix: give the decoder's inner parsers a turn too.
    let mut prefixed = b"k8s\0".to_vec();
    prefixed.extend_from_slice(data);
    let _ = protobuf::decode(&prefixed);
});
