//! Discovery documents (`/api`, `/api/v1`, `/apis`, `/apis/{g}`, `/apis/{g}/{v}`) and `/version`.

use serde_json::{Value, json};
use vmsnap_api::registry::{ResourceType, registry};

/// The Kubernetes version this server reports (within k8s-openapi's range and kubectl's skew).
pub const KUBE_MINOR: &str = "33";

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0+vmsnap-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "vmsnap",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": "linux/amd64"
    })
}

/// `/api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    })
}

fn group_doc(group: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
    json!({ "name": group, "versions": vs, "preferredVersion": vs[0] })
}

/// `/apis`.
pub fn group_list() -> Value {
    let mut groups: Vec<Value> = registry().groups().iter().map(|(g, vs)| group_doc(g, vs)).collect();
    groups.push(group_doc(vmsnap_api::kubevirt::SUBRESOURCES_GROUP, &["v1"]));
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// `/apis/{group}`.
pub fn group(group: &str) -> Option<Value> {
    if group == vmsnap_api::kubevirt::SUBRESOURCES_GROUP {
        let mut doc = group_doc(group, &["v1"]);
        doc["kind"] = json!("APIGroup");
        doc["apiVersion"] = json!("v1");
        return Some(doc);
    }
    let (g, vs) = registry().groups().into_iter().find(|(g, _)| *g == group)?;
    let mut doc = group_doc(g, &vs);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

const VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

fn resource_entry(rt: &ResourceType) -> Vec<Value> {
    let mut main = json!({
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced(),
        "kind": rt.kind,
        "verbs": VERBS,
    });
    if !rt.short_names.is_empty() {
        main["shortNames"] = json!(rt.short_names);
    }
    if !rt.categories.is_empty() {
        main["categories"] = json!(rt.categories);
    }
    let mut out = vec![main];
    if rt.has_status {
        out.push(json!({
            "name": format!("{}/status", rt.plural),
            "singularName": "",
            "namespaced": rt.namespaced(),
            "kind": rt.kind,
            "verbs": ["get", "patch", "update"],
        }));
    }
    out
}

/// Subresources served under `subresources.kubevirt.io/v1`.
pub const KUBEVIRT_SUBRESOURCES: &[(&str, &str)] = &[
    ("virtualmachineinstances", "freeze"),
    ("virtualmachineinstances", "unfreeze"),
    ("virtualmachineinstances", "pause"),
    ("virtualmachineinstances", "unpause"),
    ("virtualmachineinstances", "addvolume"),
    ("virtualmachineinstances", "removevolume"),
    ("virtualmachineinstances", "guestexec"),
    ("virtualmachines", "start"),
    ("virtualmachines", "stop"),
    ("virtualmachines", "restart"),
    ("virtualmachines", "addvolume"),
    ("virtualmachines", "removevolume"),
];

/// `/api/v1` or `/apis/{group}/{version}`.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let group_version = if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
    let resources: Vec<Value> = if group == vmsnap_api::kubevirt::SUBRESOURCES_GROUP && version == "v1" {
        KUBEVIRT_SUBRESOURCES
            .iter()
            .map(|(r, s)| json!({"name": format!("{r}/{s}"), "singularName": "", "namespaced": true, "kind": "", "verbs": ["update"]}))
            .collect()
    } else {
        let types: Vec<&ResourceType> =
            registry().all().iter().filter(|t| t.group == group && t.versions.contains(&version)).collect();
        if types.is_empty() {
            return None;
        }
        types.into_iter().flat_map(resource_entry).collect()
    };
    Some(
        json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources }),
    )
}
