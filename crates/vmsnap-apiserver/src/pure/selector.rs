//! Label selectors (full syntax) and field selectors, parsed and matched against JSON objects.

use std::collections::BTreeMap;

use serde_json::Value;

/// A selector could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

/// One label requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// `key` (exists).
    Exists(String),
    /// `!key`.
    NotExists(String),
    /// `key=value`, `key==value`, `key in (a,b)`.
    In(String, Vec<String>),
    /// `key!=value`, `key notin (a,b)`.
    NotIn(String, Vec<String>),
}

/// A parsed label selector: all requirements must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Requirement>);

impl LabelSelector {
    /// Parses `app=demo,tier in (a,b),!legacy`.
    pub fn parse(text: &str) -> Result<LabelSelector, SelectorError> {
        let mut reqs = Vec::new();
        for part in split_top_level(text)? {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            reqs.push(parse_requirement(part)?);
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether the labels satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
        })
    }

    /// Whether an object's `metadata.labels` satisfy the selector.
    pub fn matches_object(&self, object: &Value) -> bool {
        if self.0.is_empty() {
            return true;
        }
        self.matches(&labels_of(object))
    }
}

/// The labels of an object.
pub fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default()
}

fn split_top_level(text: &str) -> Result<Vec<&str>, SelectorError> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(SelectorError(format!(
                        "unable to parse requirement: unexpected ')' in {text:?}"
                    )));
                }
            }
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(SelectorError(format!("unable to parse requirement: unclosed '(' in {text:?}")));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn parse_requirement(part: &str) -> Result<Requirement, SelectorError> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::NotExists(check_key(key.trim())?));
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Requirement::NotIn(check_key(k.trim())?, vec![check_value(v.trim())?]));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::In(check_key(k.trim())?, vec![check_value(v.trim())?]));
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let key = check_key(words[0])?;
        let rest = words[1].trim_start();
        let (op, set) = if let Some(s) = rest.strip_prefix("notin") {
            ("notin", s)
        } else if let Some(s) = rest.strip_prefix("in") {
            ("in", s)
        } else {
            return Err(SelectorError(format!(
                "unable to parse requirement: found '{rest}', expected: in, notin, =, ==, !="
            )));
        };
        let set = set.trim();
        let inner = set.strip_prefix('(').and_then(|s| s.strip_suffix(')')).ok_or_else(|| {
            SelectorError(format!(
                "unable to parse requirement: expected '(' and ')' around the values of {key}"
            ))
        })?;
        let values = inner.split(',').map(|v| check_value(v.trim())).collect::<Result<Vec<_>, _>>()?;
        return Ok(if op == "in" { Requirement::In(key, values) } else { Requirement::NotIn(key, values) });
    }
    Ok(Requirement::Exists(check_key(part)?))
}

fn check_key(key: &str) -> Result<String, SelectorError> {
    let ok = !key.is_empty()
        && key.len() <= 317
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(key.to_owned())
    } else {
        Err(SelectorError(format!("unable to parse requirement: invalid label key {key:?}")))
    }
}

fn check_value(value: &str) -> Result<String, SelectorError> {
    let ok =
        value.len() <= 63 && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(SelectorError(format!("unable to parse requirement: invalid label value {value:?}")))
    }
}

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
