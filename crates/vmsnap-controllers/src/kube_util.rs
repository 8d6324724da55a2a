//! Small helpers over the kube client: status merge patches computed from old and new status,
//! finalizer JSON patches with KubeVirt's `test` + `replace`, KubeVirt subresource calls, time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

/// Now, as a Kubernetes time.
pub fn now() -> Time {
    Time(Timestamp::now())
}

/// The merge patch that turns `old` into `new` (keys dropped in `new` become `null`). `None` when equal.
pub fn merge_patch_between(old: &Value, new: &Value) -> Option<Value> {
    if old == new {
        return None;
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = Map::new();
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) => {
                        if let Some(p) = merge_patch_between(ov, nv) {
                            patch.insert(k.clone(), p);
                        }
                    }
                    None => {
                        patch.insert(k.clone(), nv.clone());
                    }
                }
            }
            for k in o.keys() {
                if !n.contains_key(k) {
                    patch.insert(k.clone(), Value::Null);
                }
            }
            Some(Value::Object(patch))
        }
        _ => Some(new.clone()),
    }
}

/// The merge patch for the `/status` subresource that turns `obj`'s status `old` into `new`, `None`
/// when they are equal. The patch carries `obj`'s `resourceVersion`, so a reconcile that ran on a
/// stale copy (the cache had not yet seen our previous write) gets a 409 Conflict instead of writing
/// its stale view, like KubeVirt's `UpdateStatus`; see [`is_conflict`].
pub fn status_patch<K: Resource, S: Serialize>(obj: &K, old: Option<&S>, new: &S) -> Option<Value> {
    let old_v = old.map(|s| serde_json::to_value(s).expect("status serializes")).unwrap_or(Value::Null);
    let new_v = serde_json::to_value(new).expect("status serializes");
    let diff = merge_patch_between(&old_v, &new_v)?;
    Some(match obj.resource_version() {
        Some(rv) => json!({"metadata": {"resourceVersion": rv}, "status": diff}),
        None => json!({ "status": diff }),
    })
}

/// Writes `obj`'s status with [`status_patch`] from `old` to `new`: the written object, or `None`
/// when nothing changed (no request is made).
pub async fn patch_status<K, S>(
    api: &Api<K>,
    obj: &K,
    old: Option<&S>,
    new: &S,
) -> Result<Option<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let Some(patch) = status_patch(obj, old, new) else { return Ok(None) };
    let name = obj.name_any();
    tracing::debug!(%name, %patch, "status patch");
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(Some)
}

/// Adds `finalizer` with KubeVirt's JSON patch (`test` the old list, `replace` with the new one).
pub async fn add_finalizer<K>(api: &Api<K>, obj: &K, finalizer: &str) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let old = obj.finalizers().to_vec();
    if old.iter().any(|f| f == finalizer) {
        return Ok(());
    }
    let mut new = old.clone();
    new.push(finalizer.to_owned());
    replace_finalizers(api, &obj.name_any(), &old, &new).await
}

/// Removes `finalizer` with KubeVirt's JSON patch. An object that is gone meanwhile (another
/// reconcile removed the last finalizer, and the server the object) has none left: done.
pub async fn remove_finalizer<K>(api: &Api<K>, obj: &K, finalizer: &str) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let old = obj.finalizers().to_vec();
    if !old.iter().any(|f| f == finalizer) {
        return Ok(());
    }
    let new: Vec<String> = old.iter().filter(|f| *f != finalizer).cloned().collect();
    match replace_finalizers(api, &obj.name_any(), &old, &new).await {
        Err(error) if vmsnap_contracts::controller::is_not_found(&error) => Ok(()),
        done => done,
    }
}

async fn replace_finalizers<K>(
    api: &Api<K>,
    name: &str,
    old: &[String],
    new: &[String],
) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    // KubeVirt's objects always carry some finalizer, so it can `replace`; from none, `add`.
    let ops = if old.is_empty() {
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": new}
        ])
    } else {
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": old},
            {"op": "replace", "path": "/metadata/finalizers", "value": new}
        ])
    };
    let patch: json_patch::Patch = serde_json::from_value(ops).expect("a valid JSON patch");
    if let Err(e) = api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch)).await {
        if !vmsnap_contracts::controller::is_not_found(&e) {
            let current = api.get_opt(name).await.ok().flatten().map(|o| o.finalizers().to_vec());
            tracing::warn!(%name, ?old, ?new, ?current, error = %e, "finalizer patch failed");
        }
        return Err(e);
    }
    Ok(())
}

/// Calls a KubeVirt subresource: `PUT /apis/subresources.kubevirt.io/v1/namespaces/{ns}/{plural}/{name}/{action}`.
pub async fn kubevirt_subresource(
    client: &Client,
    namespace: &str,
    plural: &str,
    name: &str,
    action: &str,
    body: Option<Value>,
) -> Result<(), kube::Error> {
    let uri = format!("/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/{plural}/{name}/{action}");
    let bytes = body.map(|b| serde_json::to_vec(&b).expect("JSON serializes")).unwrap_or_default();
    let request = http::Request::put(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(bytes)
        .expect("a valid request");
    client.request_text(request).await?;
    Ok(())
}

/// The message of a kube API error, for status fields and events.
pub fn error_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patches_carry_changes_and_nulls_for_removed_fields() {
        let old = json!({"phase": "InProgress", "error": {"message": "x"}, "conditions": [1]});
        let new = json!({"phase": "Succeeded", "conditions": [1]});
        assert_eq!(merge_patch_between(&old, &new), Some(json!({"phase": "Succeeded", "error": null})));
        assert_eq!(merge_patch_between(&new, &new), None);
        assert_eq!(merge_patch_between(&Value::Null, &new), Some(new.clone()));
    }
}
