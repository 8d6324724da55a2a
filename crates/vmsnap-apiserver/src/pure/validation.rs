//! Validation of request bodies against a kind's OpenAPI schema, the way the API server treats
//! custom resources: unknown fields are pruned (and reported, so `fieldValidation=Strict` can refuse
//! them), defaults are applied, and type, enum and required errors are collected with field paths.

use serde_json::{Map, Value};

/// One validation problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, `FieldValueTypeInvalid`.
    pub reason: &'static str,
    /// Field path such as `spec.source.kind`.
    pub field: String,
    /// Message, as the API server words it.
    pub message: String,
}

/// What validation found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Paths of unknown fields (already pruned from the object).
    pub unknown_fields: Vec<String>,
    /// Errors.
    pub causes: Vec<Cause>,
    /// Paths of built-in `Quantity` fields whose text is not a quantity (what Go's typed
    /// decoding of a built-in kind refuses before any validation).
    pub bad_quantities: Vec<String>,
}

fn is_builtin_quantity(schema: &Value) -> bool {
    schema
        .get("description")
        .and_then(Value::as_str)
        .is_some_and(|d| d.starts_with("Quantity is a fixed-point representation of a number"))
}

/// Whether `text` matches `pattern` (Go RE2 and Rust regex agree on what schemas use); a
/// pattern that does not compile matches everything, as a schema error is not the client's.
fn matches_pattern(pattern: &str, text: &str) -> bool {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    static COMPILED: LazyLock<Mutex<HashMap<String, Option<regex::Regex>>>> = LazyLock::new(Default::default);
    let mut compiled = COMPILED.lock().expect("pattern cache lock");
    let regex = compiled.entry(pattern.to_owned()).or_insert_with(|| regex::Regex::new(pattern).ok());
    regex.as_ref().is_none_or(|r| r.is_match(text))
}

fn check_string(value: &Value, schema: &Value, path: &str, report: &mut Report) {
    let Some(text) = value.as_str() else { return };
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
        && !matches_pattern(pattern, text)
    {
        report.causes.push(Cause {
            reason: "FieldValueInvalid",
            field: path.to_owned(),
            message: format!("Invalid value: {text:?}: {path} in body should match '{pattern}'"),
        });
    }
    if is_builtin_quantity(schema) && vmsnap_api::quantity::parse(text).is_err() {
        report.bad_quantities.push(path.to_owned());
    }
}

/// Validates `value` against `schema`, pruning unknown fields and applying defaults in place.
/// `metadata_schema` replaces the schema of the top-level `metadata` (CRD schemas leave it open).
pub fn validate(value: &mut Value, schema: &Value, metadata_schema: &Value) -> Report {
    let mut report = Report::default();
    if let (Some(obj), Some(props)) =
        (value.as_object_mut(), schema.get("properties").and_then(Value::as_object))
    {
        check_required(obj, schema, "", &mut report);
        let keys: Vec<String> = obj.keys().cloned().collect();
        for key in keys {
            let sub_schema = if key == "metadata" { Some(metadata_schema) } else { props.get(&key) };
            if sub_schema.is_none() && (key == "apiVersion" || key == "kind") {
                continue;
            }
            match sub_schema {
                Some(s) => walk(obj.get_mut(&key).expect("key exists"), s, &key, &mut report),
                None => {
                    obj.remove(&key);
                    report.unknown_fields.push(key);
                }
            }
        }
        apply_defaults(obj, props);
    }
    report.unknown_fields.sort();
    report
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(expected: &str, v: &Value) -> bool {
    match expected {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        _ => true,
    }
}

fn walk(value: &mut Value, schema: &Value, path: &str, report: &mut Report) {
    if value.is_null() || schema.as_bool() == Some(true) {
        return;
    }
    if schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            report.causes.push(type_error(path, "string", value));
        }
        check_string(value, schema, path, report);
        return;
    }
    if let Some(any_of) = schema.get("anyOf").and_then(Value::as_array) {
        let ok = any_of
            .iter()
            .any(|s| s.get("type").and_then(Value::as_str).is_none_or(|t| type_matches(t, value)));
        if !ok {
            report.causes.push(type_error(path, "string", value));
        }
        return;
    }
    if let Some(expected) = schema.get("type").and_then(Value::as_str)
        && !type_matches(expected, value)
    {
        report.causes.push(type_error(path, expected, value));
        return;
    }
    check_string(value, schema, path, report);
    if let (Some(options), Some(s)) = (schema.get("enum").and_then(Value::as_array), value.as_str())
        && !options.iter().any(|o| o.as_str() == Some(s))
    {
        let supported: Vec<String> =
            options.iter().filter_map(Value::as_str).map(|o| format!("{o:?}")).collect();
        report.causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: path.to_owned(),
            message: format!("Unsupported value: {s:?}: supported values: {}", supported.join(", ")),
        });
    }
    match value {
        Value::Object(obj) => walk_object(obj, schema, path, report),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item, item_schema, &format!("{path}[{i}]"), report);
                }
            }
        }
        _ => {}
    }
}

fn walk_object(obj: &mut Map<String, Value>, schema: &Value, path: &str, report: &mut Report) {
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true);
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    check_required(obj, schema, path, report);
    let keys: Vec<String> = obj.keys().cloned().collect();
    for key in keys {
        let child_path = join(path, &key);
        if let Some(s) = props.and_then(|p| p.get(&key)) {
            walk(obj.get_mut(&key).expect("key exists"), s, &child_path, report);
        } else if let Some(s) = additional.filter(|a| a.is_object()) {
            walk(obj.get_mut(&key).expect("key exists"), s, &child_path, report);
        } else if preserve
            || additional.and_then(Value::as_bool) == Some(true)
            || (props.is_none() && additional.is_none())
        {
            // Free-form: kept as given.
        } else {
            obj.remove(&key);
            report.unknown_fields.push(child_path);
        }
    }
    if let Some(props) = props {
        apply_defaults(obj, props);
    }
}

fn check_required(obj: &Map<String, Value>, schema: &Value, path: &str, report: &mut Report) {
    for req in
        schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
    {
        if !obj.contains_key(req) {
            report.causes.push(Cause {
                reason: "FieldValueRequired",
                field: join(path, req),
                message: "Required value".into(),
            });
        }
    }
}

fn apply_defaults(obj: &mut Map<String, Value>, props: &Map<String, Value>) {
    for (key, s) in props {
        if let Some(default) = s.get("default")
            && !obj.contains_key(key)
            && !default.is_null()
        {
            obj.insert(key.clone(), default.clone());
        }
    }
}

fn type_error(path: &str, expected: &str, got: &Value) -> Cause {
    Cause {
        reason: "FieldValueTypeInvalid",
        field: path.to_owned(),
        message: format!(
            "Invalid value: {:?}: {path} in body must be of type {expected}: {:?}",
            type_name(got),
            type_name(got)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vmsnap_api::registry::registry;

    fn meta_schema() -> Value {
        registry().by_kind("v1", "Namespace").unwrap().schema["properties"]["metadata"].clone()
    }

    fn snapshot_schema() -> Value {
        registry().by_kind("snapshot.kubevirt.io/v1beta1", "VirtualMachineSnapshot").unwrap().schema.clone()
    }

    #[test]
    fn a_valid_snapshot_passes_untouched() {
        let mut v = json!({
            "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot",
            "metadata": {"name": "s", "labels": {"a": "b"}},
            "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"}}
        });
        let before = v.clone();
        let report = validate(&mut v, &snapshot_schema(), &meta_schema());
        assert_eq!(report, Report::default());
        assert_eq!(v, before);
    }

    #[test]
    fn unknown_fields_are_pruned_and_reported_with_their_path() {
        let mut v = json!({
            "metadata": {"name": "s", "bogus": 1},
            "spec": {"source": {"kind": "VirtualMachine", "name": "vm", "typo": "x"}, "extra": true}
        });
        let report = validate(&mut v, &snapshot_schema(), &meta_schema());
        assert_eq!(report.unknown_fields, vec!["metadata.bogus", "spec.extra", "spec.source.typo"]);
        assert!(v["spec"].get("extra").is_none());
    }

    #[test]
    fn missing_required_fields_and_wrong_types_are_causes() {
        let mut v = json!({"metadata": {"name": "s"}, "spec": {"source": "vm"}});
        let report = validate(&mut v, &snapshot_schema(), &meta_schema());
        assert_eq!(report.causes.len(), 1);
        assert_eq!(report.causes[0].field, "spec.source");
        assert!(report.causes[0].message.contains("must be of type object"));
        let mut v = json!({"metadata": {"name": "s"}});
        let report = validate(&mut v, &snapshot_schema(), &meta_schema());
        assert_eq!(report.causes[0].field, "spec");
        assert_eq!(report.causes[0].message, "Required value");
    }

    #[test]
    fn defaults_and_enums_of_the_restore_schema() {
        let schema = registry()
            .by_kind("snapshot.kubevirt.io/v1beta1", "VirtualMachineRestore")
            .unwrap()
            .schema
            .clone();
        let mut v = json!({"metadata": {"name": "r"}, "spec": {"target": {"kind": "VirtualMachine", "name": "vm"}, "virtualMachineSnapshotName": "s"}});
        assert_eq!(validate(&mut v, &schema, &meta_schema()), Report::default());
        assert_eq!(v["spec"]["targetReadinessPolicy"], "WaitGracePeriod");
        let mut bad = v.clone();
        bad["spec"]["targetReadinessPolicy"] = json!("Sometimes");
        let report = validate(&mut bad, &schema, &meta_schema());
        assert!(report.causes[0].message.starts_with("Unsupported value: \"Sometimes\""));
    }

    #[test]
    fn free_form_fields_keep_what_they_are_given() {
        let schema = registry().by_kind("kubevirt.io/v1", "VirtualMachine").unwrap().schema.clone();
        let mut v = json!({"metadata": {"name": "vm"}, "spec": {"template": {"spec": {"domain": {
            "features": {"acpi": {}, "smm": {"enabled": true}}, "devices": {}
        }}}}});
        let report = validate(&mut v, &schema, &meta_schema());
        assert_eq!(report, Report::default());
        assert_eq!(v["spec"]["template"]["spec"]["domain"]["features"]["smm"]["enabled"], true);
    }
}
