//! Built-in Kubernetes kinds served by the embedded API server, with the columns `kubectl get` shows
//! for them on a real cluster.
//!
//! A kind's group, version, names and scope come from its k8s-openapi type, so this file holds only
//! what the type does not say: short names and columns.

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::core::v1::{Event, Namespace, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::events::v1::Event as EventsV1Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use schemars::JsonSchema;
use serde_json::{Value, json};

use crate::registry::{CellSource, PrinterColumn, ResourceType, Scope, age_column, builtin_schema};

/// The registry's [`Scope`] of a k8s-openapi scope marker.
trait ScopeOf {
    const SCOPE: Scope;
}

impl ScopeOf for NamespaceResourceScope {
    const SCOPE: Scope = Scope::Namespaced;
}

impl ScopeOf for ClusterResourceScope {
    const SCOPE: Scope = Scope::Cluster;
}

/// A column of `type_` whose cell is read at a JSONPath.
fn col(name: &str, type_: &str, json_path: &str) -> PrinterColumn {
    column(name, type_, CellSource::JsonPath(json_path.into()))
}

/// A `string` column whose cell is read at a JSONPath.
fn text(name: &str, json_path: &str) -> PrinterColumn {
    col(name, "string", json_path)
}

/// A column whose cell is computed, as the real API server's table printers do.
fn computed(name: &str, type_: &str, cell: fn(&Value) -> Value) -> PrinterColumn {
    column(name, type_, CellSource::Computed(cell))
}

fn column(name: &str, type_: &str, source: CellSource) -> PrinterColumn {
    PrinterColumn {
        name: name.into(),
        type_: type_.into(),
        format: String::new(),
        description: String::new(),
        priority: 0,
        source,
    }
}

/// A built-in kind described by its k8s-openapi type `K`. As on a real API server, a kind has a
/// `/status` subresource exactly when its type has a `status` field.
fn builtin<K>(short_names: &[&str], columns: Vec<PrinterColumn>) -> ResourceType
where
    K: k8s_openapi::Resource + JsonSchema,
    K::Scope: ScopeOf,
{
    with_schema::<K>(short_names, columns, builtin_schema::<K>())
}

fn with_schema<K>(short_names: &[&str], columns: Vec<PrinterColumn>, schema: Value) -> ResourceType
where
    K: k8s_openapi::Resource,
    K::Scope: ScopeOf,
{
    ResourceType {
        group: K::GROUP,
        versions: vec![K::VERSION],
        kind: K::KIND.into(),
        plural: K::URL_PATH_SEGMENT.into(),
        singular: K::KIND.to_lowercase(),
        scope: K::Scope::SCOPE,
        short_names: short_names.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        columns,
        has_status: schema["properties"].get("status").is_some(),
        builtin: true,
        schema,
        crd: None,
    }
}

/// Abbreviates access modes the way kubectl does (`RWO,ROX`).
pub fn access_modes(modes: &Value) -> Value {
    let short: Vec<&str> = modes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect();
    json!(short.join(","))
}

/// `namespace/name` of a PersistentVolume's claim, as kubectl shows it.
fn claim(pv: &Value) -> Value {
    let r = &pv["spec"]["claimRef"];
    match (r["namespace"].as_str(), r["name"].as_str()) {
        (Some(ns), Some(n)) => json!(format!("{ns}/{n}")),
        _ => json!(""),
    }
}

/// When a core/v1 Event was last seen: `lastTimestamp`, else `eventTime`.
fn last_seen(event: &Value) -> Value {
    event
        .get("lastTimestamp")
        .filter(|v| !v.is_null())
        .or_else(|| event.get("eventTime"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// `kind/name` of the object a core/v1 Event is about.
fn involved_object(event: &Value) -> Value {
    let r = &event["involvedObject"];
    json!(format!(
        "{}/{}",
        r["kind"].as_str().unwrap_or_default().to_lowercase(),
        r["name"].as_str().unwrap_or_default()
    ))
}

pub(crate) fn builtin_types() -> Vec<ResourceType> {
    let volume_mode = PrinterColumn { priority: 1, ..text("VolumeMode", ".spec.volumeMode") };
    vec![
        builtin::<Namespace>(&["ns"], vec![text("Status", ".status.phase"), age_column()]),
        builtin::<PersistentVolumeClaim>(
            &["pvc"],
            vec![
                text("Status", ".status.phase"),
                text("Volume", ".spec.volumeName"),
                text("Capacity", ".status.capacity.storage"),
                computed("Access Modes", "string", |o| access_modes(&o["status"]["accessModes"])),
                text("StorageClass", ".spec.storageClassName"),
                text("VolumeAttributesClass", ".spec.volumeAttributesClassName"),
                age_column(),
                volume_mode,
            ],
        ),
        builtin::<PersistentVolume>(
            &["pv"],
            vec![
                text("Capacity", ".spec.capacity.storage"),
                computed("Access Modes", "string", |o| access_modes(&o["spec"]["accessModes"])),
                text("Reclaim Policy", ".spec.persistentVolumeReclaimPolicy"),
                text("Status", ".status.phase"),
                computed("Claim", "string", claim),
                text("StorageClass", ".spec.storageClassName"),
                text("Reason", ".status.reason"),
                age_column(),
            ],
        ),
        builtin::<Event>(
            &["ev"],
            vec![
                computed("Last Seen", "date", last_seen),
                text("Type", ".type"),
                text("Reason", ".reason"),
                computed("Object", "string", involved_object),
                text("Message", ".message"),
            ],
        ),
        builtin::<EventsV1Event>(
            &["ev"],
            vec![text("Type", ".type"), text("Reason", ".reason"), text("Note", ".note"), age_column()],
        ),
        builtin::<StorageClass>(
            &["sc"],
            vec![
                text("Provisioner", ".provisioner"),
                text("ReclaimPolicy", ".reclaimPolicy"),
                text("VolumeBindingMode", ".volumeBindingMode"),
                text("AllowVolumeExpansion", ".allowVolumeExpansion"),
                age_column(),
            ],
        ),
        builtin::<Lease>(&[], vec![text("Holder", ".spec.holderIdentity"), age_column()]),
        builtin::<ServiceAccount>(&["sa"], vec![age_column()]),
        builtin::<ConfigMap>(&["cm"], vec![age_column()]),
        builtin::<Secret>(&[], vec![text("Type", ".type"), age_column()]),
        builtin::<Service>(
            &["svc"],
            vec![text("Type", ".spec.type"), text("Cluster-IP", ".spec.clusterIP"), age_column()],
        ),
        builtin::<Deployment>(&["deploy"], vec![col("Replicas", "integer", ".spec.replicas"), age_column()]),
        builtin::<ControllerRevision>(&[], vec![age_column()]),
        builtin::<ClusterRole>(&[], vec![age_column()]),
        builtin::<ClusterRoleBinding>(&[], vec![text("Role", ".roleRef.name"), age_column()]),
        builtin::<Role>(&[], vec![age_column()]),
        builtin::<RoleBinding>(&[], vec![text("Role", ".roleRef.name"), age_column()]),
        builtin::<ValidatingWebhookConfiguration>(
            &[],
            vec![
                computed("Webhooks", "string", |o| json!(o["webhooks"].as_array().map_or(0, Vec::len))),
                age_column(),
            ],
        ),
        with_schema::<CustomResourceDefinition>(
            &["crd", "crds"],
            vec![col("Created At", "date", ".metadata.creationTimestamp")],
            // The CRD's own schema type (JSONSchemaProps) is recursive; only the envelope is checked.
            json!({"type": "object", "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }}),
        ),
    ]
}
