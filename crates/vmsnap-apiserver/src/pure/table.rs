//! `meta.k8s.io/v1` Tables built from a kind's printer columns, with dates rendered as ages.

use serde_json::{Value, json};
use vmsnap_api::registry::{CellSource, ResourceType};

use super::{jsonpath, time};

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// The column definitions of a kind: `Name`, then its printer columns.
pub fn column_definitions(rt: &ResourceType) -> Value {
    let mut cols = vec![json!({
        "name": "Name", "type": "string", "format": "name", "description": NAME_DESCRIPTION, "priority": 0
    })];
    for c in &rt.columns {
        cols.push(json!({
            "name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority
        }));
    }
    Value::Array(cols)
}

/// The cells of one row.
pub fn cells(rt: &ResourceType, object: &Value) -> Vec<Value> {
    let mut out = vec![object.pointer("/metadata/name").cloned().unwrap_or(json!(""))];
    for c in &rt.columns {
        let raw = match &c.source {
            CellSource::JsonPath(p) => jsonpath::eval_first(object, p),
            CellSource::Computed(f) => Some(f(object)).filter(|v| !v.is_null()),
        };
        out.push(render(&c.type_, raw));
    }
    out
}

fn render(type_: &str, raw: Option<Value>) -> Value {
    match (type_, raw) {
        (_, None) => Value::Null,
        ("date", Some(Value::String(s))) => Value::String(time::age(&s)),
        ("string", Some(Value::String(s))) => Value::String(s),
        ("string", Some(other)) => Value::String(match other {
            Value::Array(items) => items.iter().map(display).collect::<Vec<_>>().join(","),
            v => display(&v),
        }),
        (_, Some(v)) => v,
    }
}

fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Partial object metadata of an object (the `object` of a table row, and metadata-only responses).
pub fn partial_metadata(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or(json!({}))
    })
}

/// One table row.
pub fn row(rt: &ResourceType, object: &Value) -> Value {
    json!({ "cells": cells(rt, object), "object": partial_metadata(object) })
}

/// A whole table.
pub fn table(rt: &ResourceType, objects: &[Value], resource_version: &str) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": { "resourceVersion": resource_version },
        "columnDefinitions": column_definitions(rt),
        "rows": objects.iter().map(|o| row(rt, o)).collect::<Vec<_>>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmsnap_api::registry::registry;

    #[test]
    fn snapshot_rows_use_kubevirt_columns_and_ages() {
        let rt = registry().by_kind("snapshot.kubevirt.io/v1beta1", "VirtualMachineSnapshot").unwrap();
        let five_min_ago =
            k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(300);
        let obj = json!({
            "metadata": {"name": "snap"},
            "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"}},
            "status": {"phase": "Succeeded", "readyToUse": true, "creationTime": time::format_rfc3339(five_min_ago)}
        });
        let cells = cells(rt, &obj);
        assert_eq!(
            cells,
            vec![
                json!("snap"),
                json!("VirtualMachine"),
                json!("vm"),
                json!("Succeeded"),
                json!(true),
                json!("5m"),
                Value::Null
            ]
        );
    }

    #[test]
    fn pvc_access_modes_are_abbreviated() {
        let rt = registry().by_kind("v1", "PersistentVolumeClaim").unwrap();
        let obj = json!({"metadata": {"name": "p"}, "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"]}});
        assert_eq!(cells(rt, &obj)[4], json!("RWO"));
    }
}
