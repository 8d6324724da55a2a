//! OpenAPI v3: the root document and one document per group-version, with the real schemas of every
//! kind and the `patch` operations carrying `x-kubernetes-group-version-kind` and `fieldValidation`
//! (which is what makes `kubectl create` validate on the server instead of failing).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use vmsnap_api::registry::{ResourceType, registry};

use super::discovery::KUBE_MINOR;

struct Documents {
    /// Path key (`api/v1`, `apis/g/v`) -> (hash, document).
    by_path: BTreeMap<String, (String, Value)>,
}

static DOCS: LazyLock<Documents> = LazyLock::new(build);

fn schema_id(rt: &ResourceType, version: &str) -> String {
    if rt.group.is_empty() {
        return format!("io.k8s.api.core.v1.{}", rt.kind);
    }
    let mut parts: Vec<&str> = rt.group.split('.').collect();
    parts.reverse();
    format!("{}.{version}.{}", parts.join("."), rt.kind)
}

fn param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn operations(rt: &ResourceType, version: &str, id: &str) -> Value {
    let gvk = json!({"group": rt.group, "version": version, "kind": rt.kind});
    let body =
        json!({"content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{id}")}}}});
    let ok = json!({"200": body});
    json!({
        "get": {"operationId": format!("read{}", rt.kind), "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk, "responses": ok},
        "put": {"operationId": format!("replace{}", rt.kind), "x-kubernetes-action": "put", "x-kubernetes-group-version-kind": gvk,
            "requestBody": body, "responses": ok,
            "parameters": [param("dryRun", "When present, indicates that modifications should not be persisted."), param("fieldManager", "The name of the actor making the change."), param("fieldValidation", "Ignore, Warn or Strict.")]},
        "delete": {"operationId": format!("delete{}", rt.kind), "x-kubernetes-action": "delete", "x-kubernetes-group-version-kind": gvk, "responses": ok},
        "patch": {
            "operationId": format!("patch{}", rt.kind),
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk,
            "requestBody": {"content": {
                "application/json-patch+json": {"schema": {"type": "object"}},
                "application/merge-patch+json": {"schema": {"type": "object"}},
                "application/apply-patch+yaml": {"schema": {"type": "object"}}
            }},
            "responses": ok,
            "parameters": [
                param("dryRun", "When present, indicates that modifications should not be persisted."),
                param("fieldManager", "The name of the actor making the change."),
                param("fieldValidation", "Ignore, Warn or Strict: what to do with unknown or duplicate fields."),
                {"name": "force", "in": "query", "description": "Force is going to \"force\" Apply requests.", "schema": {"type": "boolean", "uniqueItems": true}}
            ]
        }
    })
}

fn document(group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for rt in registry().all().iter().filter(|t| t.group == group && t.versions.contains(&version)) {
        let id = schema_id(rt, version);
        let mut schema = rt.schema.clone();
        schema["x-kubernetes-group-version-kind"] =
            json!([{"group": rt.group, "version": version, "kind": rt.kind}]);
        schemas.insert(id.clone(), schema);
        let prefix = if group.is_empty() { "/api/v1".to_owned() } else { format!("/apis/{group}/{version}") };
        let item = if rt.namespaced() {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", rt.plural)
        } else {
            format!("{prefix}/{}/{{name}}", rt.plural)
        };
        paths.insert(item.clone(), operations(rt, version, &id));
        if rt.has_status {
            paths.insert(format!("{item}/status"), operations(rt, version, &id));
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{KUBE_MINOR}.0")},
        "paths": paths,
        "components": {"schemas": schemas}
    })
}

fn build() -> Documents {
    let mut by_path = BTreeMap::new();
    let mut gvs: Vec<(String, String)> = vec![(String::new(), "v1".into())];
    for (g, vs) in registry().groups() {
        for v in vs {
            gvs.push((g.to_owned(), v.to_owned()));
        }
    }
    for (g, v) in gvs {
        let doc = document(&g, &v);
        let hash = hex::encode(&Sha256::digest(doc.to_string().as_bytes())[..16]).to_uppercase();
        let path = if g.is_empty() { format!("api/{v}") } else { format!("apis/{g}/{v}") };
        by_path.insert(path, (hash, doc));
    }
    Documents { by_path }
}

/// `/openapi/v3`.
pub fn root() -> Value {
    let paths: serde_json::Map<String, Value> = DOCS
        .by_path
        .iter()
        .map(|(p, (hash, _))| {
            (p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}))
        })
        .collect();
    json!({ "paths": paths })
}

/// `/openapi/v3/{path}`.
pub fn group_version(path: &str) -> Option<&'static Value> {
    DOCS.by_path.get(path).map(|(_, doc)| doc)
}
