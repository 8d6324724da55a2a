//! A deterministic stand-in for the fuzzers (which need nightly): thousands of generated inputs
//! through every request parser, checking that none panics.

use serde_json::{Value, json};
use vmsnap_apiserver::pure::{
    accept, duplicates, metadata, names::NameRule, patch, path, protobuf, selector, validation,
};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn text(&mut self, alphabet: &[u8], max: usize) -> String {
        let len = (self.next() as usize) % max;
        (0..len).map(|_| alphabet[(self.next() as usize) % alphabet.len()] as char).collect()
    }

    fn json(&mut self, depth: u32) -> Value {
        match self.next() % if depth == 0 { 4 } else { 7 } {
            0 => Value::Null,
            1 => json!(self.next().is_multiple_of(3)),
            2 => json!(self.next() % 1000),
            3 => json!(self.text(b"abc/-~0", 6)),
            4 | 5 => {
                let mut m = serde_json::Map::new();
                for _ in 0..self.next() % 4 {
                    let keys = [
                        "metadata",
                        "spec",
                        "status",
                        "op",
                        "path",
                        "value",
                        "finalizers",
                        "$patch",
                        "name",
                        "labels",
                    ];
                    m.insert(keys[(self.next() as usize) % keys.len()].into(), self.json(depth - 1));
                }
                Value::Object(m)
            }
            _ => Value::Array((0..self.next() % 3).map(|_| self.json(depth - 1)).collect()),
        }
    }
}

#[test]
fn selectors_paths_and_accept_headers_never_panic() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for _ in 0..5000 {
        let s = rng.text(b"ab=!,() in notin\\.-/", 40);
        if let Ok(sel) = selector::LabelSelector::parse(&s) {
            let _ = sel.matches_object(&json!({"metadata": {"labels": {"a": "b"}}}));
        }
        let _ = selector::FieldSelector::parse(&s, true);
        let p = rng.text(b"/apis/namespacesv1xy", 60);
        let _ = path::parse(&p);
        let _ = accept::representation(&rng.text(b"application/json;as=Table,g=v", 60));
    }
}

#[test]
fn patches_never_panic() {
    let mut rng = XorShift(0xDEAD_BEEF_CAFE_F00D);
    for _ in 0..3000 {
        let doc = rng.json(3);
        let p = rng.json(3);
        let _ = patch::merge(&doc, &p);
        let _ = patch::json(&doc, &p);
        let _ = patch::strategic(&doc, &p);
        let _ = patch::apply(&doc, &p, Some(&rng.json(2)));
    }
}

#[test]
fn validation_never_panics_on_any_kind() {
    let mut rng = XorShift(0x0123_4567_89AB_CDEF);
    let kinds = vmsnap_apiserver::registry_kinds();
    let meta = kinds.iter().find(|t| t.kind == "Namespace").unwrap().schema["properties"]["metadata"].clone();
    for _ in 0..300 {
        let body = rng.json(4);
        for t in kinds {
            let mut b = body.clone();
            let _ = validation::validate(&mut b, &t.schema, &meta);
        }
    }
}

#[test]
fn protobuf_bodies_never_panic() {
    let mut rng = XorShift(0x5151_7A7A_0101_FEED);
    for _ in 0..20_000 {
        let len = (rng.next() % 64) as usize;
        let mut bytes: Vec<u8> = if rng.next().is_multiple_of(2) { b"k8s\0".to_vec() } else { Vec::new() };
        // Small field numbers and wire types, so that the decoder descends into messages.
        bytes.extend(
            (0..len).map(|_| [0x0a, 0x12, 0x1a, 0x08, 0x02, 0x01, 0x80, 0xff][(rng.next() % 8) as usize]),
        );
        let _ = protobuf::decode(&bytes);
    }
}

#[test]
fn body_checks_never_panic() {
    let mut rng = XorShift(0xC0FF_EE00_1234_5678);
    for _ in 0..5000 {
        let text = rng.text(b"{}[]\",:\"abc/.-_ \\u0061", 60);
        let _ = duplicates::duplicate_fields(text.as_bytes());
        for rule in [NameRule::Subdomain, NameRule::Label, NameRule::Dns1035Label, NameRule::PathSegment] {
            let _ = rule.check(&text);
            let _ = rule.check_prefix(&text);
        }
        let _ = metadata::qualified_name_errors(&text);
        let _ = metadata::label_value_errors(&text);
        let doc = rng.json(3);
        let _ =
            metadata::validate(&serde_json::json!({"metadata": {"labels": doc.clone(), "annotations": doc}}));
    }
}
