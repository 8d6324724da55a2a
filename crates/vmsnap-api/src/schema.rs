//! Schema helpers for fields whose OpenAPI shape schemars cannot infer the way Kubernetes expects.
//!
//! Kubernetes requires structural schemas: every free-form object says
//! `x-kubernetes-preserve-unknown-fields`, and quantities are int-or-string.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A free-form object whose fields are kept as given (`x-kubernetes-preserve-unknown-fields`).
pub fn preserve_unknown_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

/// A free-form list of free-form objects.
pub fn preserve_unknown_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
    })
}

/// Object metadata nested inside a spec (templates, stored copies): kept as given.
pub fn nested_metadata(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "object", "nullable": true, "x-kubernetes-preserve-unknown-fields": true })
}

/// A resource quantity such as `1Gi` or `2`.
pub fn quantity(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [{ "type": "integer" }, { "type": "string" }],
        "x-kubernetes-int-or-string": true
    })
}

/// A duration: a Go duration string (`5m0s`) or a number of seconds (`20`).
pub fn duration_or_seconds(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [{ "type": "integer" }, { "type": "string" }],
        "x-kubernetes-int-or-string": true
    })
}

/// A map of resource names to quantities (`requests: {storage: 1Gi}`).
pub fn quantity_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": {
            "anyOf": [{ "type": "integer" }, { "type": "string" }],
            "x-kubernetes-int-or-string": true
        }
    })
}

/// A PersistentVolumeClaimSpec, as CDI and the snapshot API embed it.
pub fn pvc_spec(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<k8s_openapi::api::core::v1::PersistentVolumeClaimSpec>()
}

/// An RFC 3339 timestamp, nullable.
pub fn timestamp(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "format": "date-time", "nullable": true })
}
