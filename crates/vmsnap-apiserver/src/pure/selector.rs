//! Label selectors (full syntax: `vmsnap_api::label_selector`, shared with the CLI) and field
//! selectors, parsed and matched against JSON objects.

use serde_json::Value;

/// A field selector could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

pub use vmsnap_api::label_selector::{
    Requirement, Selector as LabelSelector, SelectorError as LabelSelectorError, labels_of,
};

/// One field requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    /// Field path, e.g. `metadata.name`.
    pub field: String,
    /// `=`/`==` (true) or `!=` (false).
    pub equals: bool,
    /// The value.
    pub value: String,
}

/// A parsed field selector.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<FieldRequirement>);

/// Fields every kind can be selected on.
const COMMON_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];
/// Extra fields of core Events.
const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

impl FieldSelector {
    /// Parses `metadata.name=x,involvedObject.kind!=Pod`; `is_event` allows the Event fields.
    pub fn parse(text: &str, is_event: bool) -> Result<FieldSelector, SelectorError> {
        let mut reqs = Vec::new();
        for part in split_unescaped(text, ',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (field, equals, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, true, v)
            } else {
                return Err(SelectorError(format!("invalid selector: '{part}'; can't understand '{part}'")));
            };
            let field = field.trim();
            let supported = COMMON_FIELDS.contains(&field) || (is_event && EVENT_FIELDS.contains(&field));
            if !supported {
                return Err(SelectorError(format!("field label not supported: {field}")));
            }
            reqs.push(FieldRequirement { field: field.to_owned(), equals, value: unescape(value.trim()) });
        }
        Ok(FieldSelector(reqs))
    }

    /// Whether an object satisfies every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|r| {
            let actual = field_value(object, &r.field);
            (actual == r.value) == r.equals
        })
    }
}

fn field_value(object: &Value, field: &str) -> String {
    let pointer = match field {
        "source" => "/source/component".to_owned(),
        other => format!("/{}", other.replace('.', "/")),
    };
    match object.pointer(&pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn split_unescaped(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts
}

fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn equality_and_set_based_requirements() {
        let s = LabelSelector::parse("app=demo, tier in (web, db),!legacy,env!=prod").unwrap();
        assert!(s.matches(&labels(&[("app", "demo"), ("tier", "db")])));
        assert!(!s.matches(&labels(&[("app", "demo"), ("tier", "cache")])));
        assert!(!s.matches(&labels(&[("app", "demo"), ("tier", "db"), ("legacy", "1")])));
        assert!(!s.matches(&labels(&[("app", "demo"), ("tier", "db"), ("env", "prod")])));
    }

    #[test]
    fn exists_notin_and_double_equals() {
        let s = LabelSelector::parse("kubevirt.io/vm,app==x,zone notin (a,b)").unwrap();
        assert!(s.matches(&labels(&[("kubevirt.io/vm", ""), ("app", "x"), ("zone", "c")])));
        assert!(s.matches(&labels(&[("kubevirt.io/vm", ""), ("app", "x")])));
        assert!(!s.matches(&labels(&[("kubevirt.io/vm", ""), ("app", "x"), ("zone", "a")])));
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(LabelSelector::parse("").unwrap().matches_object(&json!({})));
    }

    #[test]
    fn malformed_label_selectors_are_errors() {
        assert!(LabelSelector::parse("a in (b").is_err());
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("a=b c").is_err());
        assert!(LabelSelector::parse("a)").is_err());
    }

    #[test]
    fn field_selectors_on_events() {
        let s =
            FieldSelector::parse("involvedObject.name=snap,involvedObject.kind=VirtualMachineSnapshot", true)
                .unwrap();
        let ev = json!({"involvedObject": {"name": "snap", "kind": "VirtualMachineSnapshot"}});
        assert!(s.matches(&ev));
        assert!(!s.matches(&json!({"involvedObject": {"name": "other"}})));
    }

    #[test]
    fn unsupported_fields_are_named() {
        let err = FieldSelector::parse("spec.x=1", false).unwrap_err();
        assert_eq!(err.0, "field label not supported: spec.x");
        assert!(FieldSelector::parse("reason=x", false).is_err());
    }

    #[test]
    fn name_selector_and_negation() {
        let s = FieldSelector::parse("metadata.name!=a", false).unwrap();
        assert!(s.matches(&json!({"metadata": {"name": "b"}})));
        assert!(!s.matches(&json!({"metadata": {"name": "a"}})));
    }
}
