//! Built-in Kubernetes kinds served by the embedded API server, with the columns `kubectl get` shows
//! for them on a real cluster.

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::core::v1::{Event, Namespace, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::events::v1::Event as EventsV1Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{Value, json};

use crate::registry::{CellSource, PrinterColumn, ResourceType, Scope, age_column, builtin_schema};

fn col(name: &str, type_: &str, priority: i32, source: CellSource) -> PrinterColumn {
    PrinterColumn {
        name: name.into(),
        type_: type_.into(),
        format: String::new(),
        description: String::new(),
        priority,
        source,
    }
}

fn path(p: &str) -> CellSource {
    CellSource::JsonPath(p.into())
}

#[allow(clippy::too_many_arguments)] // A table of facts reads best as one call per kind.
fn builtin(
    group: &'static str,
    version: &'static str,
    kind: &str,
    plural: &str,
    scope: Scope,
    short_names: &[&str],
    has_status: bool,
    columns: Vec<PrinterColumn>,
    schema: Value,
) -> ResourceType {
    ResourceType {
        group,
        versions: vec![version],
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        scope,
        short_names: short_names.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        columns,
        has_status,
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

pub(crate) fn builtin_types() -> Vec<ResourceType> {
    vec![
        builtin(
            "",
            "v1",
            "Namespace",
            "namespaces",
            Scope::Cluster,
            &["ns"],
            true,
            vec![col("Status", "string", 0, path(".status.phase")), age_column()],
            builtin_schema::<Namespace>(),
        ),
        builtin(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            Scope::Namespaced,
            &["pvc"],
            true,
            vec![
                col("Status", "string", 0, path(".status.phase")),
                col("Volume", "string", 0, path(".spec.volumeName")),
                col("Capacity", "string", 0, path(".status.capacity.storage")),
                col(
                    "Access Modes",
                    "string",
                    0,
                    CellSource::Computed(|o| access_modes(&o["status"]["accessModes"])),
                ),
                col("StorageClass", "string", 0, path(".spec.storageClassName")),
                col("VolumeAttributesClass", "string", 0, path(".spec.volumeAttributesClassName")),
                age_column(),
                col("VolumeMode", "string", 1, path(".spec.volumeMode")),
            ],
            builtin_schema::<PersistentVolumeClaim>(),
        ),
        builtin(
            "",
            "v1",
            "PersistentVolume",
            "persistentvolumes",
            Scope::Cluster,
            &["pv"],
            true,
            vec![
                col("Capacity", "string", 0, path(".spec.capacity.storage")),
                col(
                    "Access Modes",
                    "string",
                    0,
                    CellSource::Computed(|o| access_modes(&o["spec"]["accessModes"])),
                ),
                col("Reclaim Policy", "string", 0, path(".spec.persistentVolumeReclaimPolicy")),
                col("Status", "string", 0, path(".status.phase")),
                col(
                    "Claim",
                    "string",
                    0,
                    CellSource::Computed(|o| {
                        let r = &o["spec"]["claimRef"];
                        match (r["namespace"].as_str(), r["name"].as_str()) {
                            (Some(ns), Some(n)) => json!(format!("{ns}/{n}")),
                            _ => json!(""),
                        }
                    }),
                ),
                col("StorageClass", "string", 0, path(".spec.storageClassName")),
                col("Reason", "string", 0, path(".status.reason")),
                age_column(),
            ],
            builtin_schema::<PersistentVolume>(),
        ),
        builtin(
            "",
            "v1",
            "Event",
            "events",
            Scope::Namespaced,
            &["ev"],
            false,
            vec![
                col(
                    "Last Seen",
                    "date",
                    0,
                    CellSource::Computed(|o| {
                        o.get("lastTimestamp")
                            .filter(|v| !v.is_null())
                            .or_else(|| o.get("eventTime"))
                            .cloned()
                            .unwrap_or(Value::Null)
                    }),
                ),
                col("Type", "string", 0, path(".type")),
                col("Reason", "string", 0, path(".reason")),
                col(
                    "Object",
                    "string",
                    0,
                    CellSource::Computed(|o| {
                        let r = &o["involvedObject"];
                        json!(format!(
                            "{}/{}",
                            r["kind"].as_str().unwrap_or_default().to_lowercase(),
                            r["name"].as_str().unwrap_or_default()
                        ))
                    }),
                ),
                col("Message", "string", 0, path(".message")),
            ],
            builtin_schema::<Event>(),
        ),
        builtin(
            "events.k8s.io",
            "v1",
            "Event",
            "events",
            Scope::Namespaced,
            &["ev"],
            false,
            vec![
                col("Type", "string", 0, path(".type")),
                col("Reason", "string", 0, path(".reason")),
                col("Note", "string", 0, path(".note")),
                age_column(),
            ],
            builtin_schema::<EventsV1Event>(),
        ),
        builtin(
            "storage.k8s.io",
            "v1",
            "StorageClass",
            "storageclasses",
            Scope::Cluster,
            &["sc"],
            false,
            vec![
                col("Provisioner", "string", 0, path(".provisioner")),
                col("ReclaimPolicy", "string", 0, path(".reclaimPolicy")),
                col("VolumeBindingMode", "string", 0, path(".volumeBindingMode")),
                col("AllowVolumeExpansion", "string", 0, path(".allowVolumeExpansion")),
                age_column(),
            ],
            builtin_schema::<StorageClass>(),
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            Scope::Namespaced,
            &[],
            false,
            vec![col("Holder", "string", 0, path(".spec.holderIdentity")), age_column()],
            builtin_schema::<Lease>(),
        ),
        builtin(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            Scope::Namespaced,
            &["sa"],
            false,
            vec![age_column()],
            builtin_schema::<ServiceAccount>(),
        ),
        builtin(
            "",
            "v1",
            "ConfigMap",
            "configmaps",
            Scope::Namespaced,
            &["cm"],
            false,
            vec![age_column()],
            builtin_schema::<ConfigMap>(),
        ),
        builtin(
            "",
            "v1",
            "Secret",
            "secrets",
            Scope::Namespaced,
            &[],
            false,
            vec![col("Type", "string", 0, path(".type")), age_column()],
            builtin_schema::<Secret>(),
        ),
        builtin(
            "",
            "v1",
            "Service",
            "services",
            Scope::Namespaced,
            &["svc"],
            true,
            vec![
                col("Type", "string", 0, path(".spec.type")),
                col("Cluster-IP", "string", 0, path(".spec.clusterIP")),
                age_column(),
            ],
            builtin_schema::<Service>(),
        ),
        builtin(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            Scope::Namespaced,
            &["deploy"],
            true,
            vec![col("Replicas", "integer", 0, path(".spec.replicas")), age_column()],
            builtin_schema::<Deployment>(),
        ),
        builtin(
            "apps",
            "v1",
            "ControllerRevision",
            "controllerrevisions",
            Scope::Namespaced,
            &[],
            false,
            vec![age_column()],
            builtin_schema::<ControllerRevision>(),
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            Scope::Cluster,
            &[],
            false,
            vec![age_column()],
            builtin_schema::<ClusterRole>(),
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            Scope::Cluster,
            &[],
            false,
            vec![col("Role", "string", 0, path(".roleRef.name")), age_column()],
            builtin_schema::<ClusterRoleBinding>(),
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "Role",
            "roles",
            Scope::Namespaced,
            &[],
            false,
            vec![age_column()],
            builtin_schema::<Role>(),
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            Scope::Namespaced,
            &[],
            false,
            vec![col("Role", "string", 0, path(".roleRef.name")), age_column()],
            builtin_schema::<RoleBinding>(),
        ),
        builtin(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            Scope::Cluster,
            &[],
            false,
            vec![
                col(
                    "Webhooks",
                    "string",
                    0,
                    CellSource::Computed(|o| json!(o["webhooks"].as_array().map_or(0, Vec::len))),
                ),
                age_column(),
            ],
            builtin_schema::<ValidatingWebhookConfiguration>(),
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            Scope::Cluster,
            &["crd", "crds"],
            true,
            vec![col("Created At", "date", 0, path(".metadata.creationTimestamp"))],
            // The CRD's own schema type (JSONSchemaProps) is recursive; only the envelope is checked.
            json!({"type": "object", "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }}),
        ),
    ]
}
