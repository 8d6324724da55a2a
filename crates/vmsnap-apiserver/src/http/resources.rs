//! The verbs on resource paths: get, list, watch, create, update, patch, delete, deletecollection,
//! and routing of the KubeVirt subresources.

use std::collections::HashMap;

use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use vmsnap_api::registry::{ResourceType, registry};

use super::body;
use super::{AppState, watch};
use crate::core::{
    DeleteOptions, FieldValidation, ListOptions, ListResult, Propagation, Selection, WriteOptions,
};
use crate::error::ApiError;
use crate::pure::accept::{Representation, representation};
use crate::pure::patch::PatchType;
use crate::pure::path::ResourcePath;
use crate::pure::table;

pub type Query = HashMap<String, String>;

fn flag(q: &Query, key: &str) -> bool {
    q.get(key).is_some_and(|v| v == "true" || v == "1")
}

/// The write's options from its query, and the fields its body set twice (JSON bodies; YAML
/// ones are refused by the YAML parser on a duplicate key).
fn write_options(q: &Query, headers: &HeaderMap, bytes: &[u8]) -> Result<WriteOptions, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let validation = FieldValidation::parse(q.get("fieldValidation").map(String::as_str))?;
    let duplicate_fields = if validation == FieldValidation::Ignore {
        Vec::new()
    } else if ct.contains("yaml") {
        yaml_duplicate_key(bytes).into_iter().collect()
    } else {
        crate::pure::duplicates::duplicate_fields(bytes)
    };
    Ok(WriteOptions {
        field_manager: q.get("fieldManager").cloned(),
        validation,
        dry_run: q.get("dryRun").is_some_and(|v| v == "All"),
        force: flag(q, "force"),
        duplicate_fields,
    })
}

fn accept(headers: &HeaderMap) -> Representation {
    representation(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or(""))
}

/// Renders one object in the representation the client asked for.
fn render_object(rt: &ResourceType, headers: &HeaderMap, status: StatusCode, obj: &Value) -> Response {
    match accept(headers) {
        Representation::Table => {
            let rv = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("");
            body::json_with_type(status, &table::table(rt, std::slice::from_ref(obj), rv), TABLE_TYPE)
        }
        Representation::Metadata => body::json(status, &table::partial_metadata(obj)),
        Representation::Object => body::json(status, obj),
    }
}

pub const TABLE_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// Handles a request on a resource path.
pub async fn handle(
    state: &AppState,
    method: &Method,
    path: ResourcePath,
    query: &Query,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<Response, ApiError> {
    if path.group == vmsnap_api::kubevirt::SUBRESOURCES_GROUP {
        return super::kubevirt::handle(state, method, &path, headers, bytes).await;
    }
    let rt =
        registry().by_plural(&path.group, &path.version, &path.plural).ok_or_else(ApiError::no_such_path)?;
    if rt.namespaced() != path.namespace.is_some() && path.name.is_some() {
        return Err(ApiError::no_such_path());
    }
    if !rt.namespaced() && path.namespace.is_some() {
        return Err(ApiError::no_such_path());
    }
    let sub = path.subresource.as_deref();
    match sub {
        None => {}
        Some("status") if rt.has_status => {}
        Some("finalize") if rt.plural == "namespaces" => {}
        Some(_) => return Err(ApiError::no_such_path()),
    }
    let ns = path.namespace.as_deref();
    let version = path.version.as_str();
    let core = &state.core;
    match (method.clone(), path.name.as_deref()) {
        (Method::GET, None) if flag(query, "watch") => {
            watch::handle(state, rt, version, ns, query, headers).await
        }
        (Method::GET, None) => {
            let options = list_options(rt, query)?;
            if let Some(rv) = watch::resource_version_parameter(query)? {
                core.wait_for_revision(rv).await?;
            }
            Ok(match accept(headers) {
                Representation::Object => {
                    let list = core.list_json(rt, version, ns, &options).await?;
                    let envelope = json!({
                        "kind": format!("{}List", rt.kind),
                        "apiVersion": rt.api_version(version),
                        "metadata": list_metadata(&list),
                    });
                    body::json_list(&envelope, &list.items)
                }
                Representation::Table => {
                    let list = core.list(rt, version, ns, &options).await?;
                    let mut t = table::table(rt, &list.items, &list.revision.to_string());
                    t["metadata"] = list_metadata(&list);
                    body::json_with_type(StatusCode::OK, &t, TABLE_TYPE)
                }
                Representation::Metadata => {
                    let list = core.list(rt, version, ns, &options).await?;
                    body::json(
                        StatusCode::OK,
                        &json!({
                            "kind": "PartialObjectMetadataList",
                            "apiVersion": "meta.k8s.io/v1",
                            "metadata": list_metadata(&list),
                            "items": list.items.iter().map(table::partial_metadata).collect::<Vec<_>>()
                        }),
                    )
                }
            })
        }
        (Method::GET, Some(name)) => {
            let obj = core.get(rt, version, ns, name).await?;
            Ok(render_object(rt, headers, StatusCode::OK, &obj))
        }
        (Method::POST, None) => {
            let obj = body::parse(headers, bytes)?;
            let result = core.create(rt, version, ns, obj, &write_options(query, headers, bytes)?).await?;
            Ok(body::with_warnings(
                render_object(rt, headers, StatusCode::CREATED, &result.object),
                &result.warnings,
            ))
        }
        (Method::PUT, Some(name)) => {
            let obj = body::parse(headers, bytes)?;
            let sub = if sub == Some("finalize") { None } else { sub };
            let result =
                core.update(rt, version, ns, name, obj, sub, &write_options(query, headers, bytes)?).await?;
            Ok(body::with_warnings(
                render_object(rt, headers, StatusCode::OK, &result.object),
                &result.warnings,
            ))
        }
        (Method::PATCH, Some(name)) => {
            let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let patch_type = PatchType::from_content_type(ct).ok_or_else(|| {
                ApiError::unsupported_media_type(format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {ct:?})"
                ))
            })?;
            let patch = body::parse(headers, bytes)?;
            // kube-apiserver's maxJSONPatchOperations.
            const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;
            if let Some(ops) = patch.as_array().filter(|_| patch_type == PatchType::Json)
                && ops.len() > MAX_JSON_PATCH_OPERATIONS
            {
                return Err(ApiError::request_entity_too_large(format!(
                    "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
                    ops.len()
                )));
            }
            let result = core
                .patch(rt, version, ns, name, patch_type, patch, sub, &write_options(query, headers, bytes)?)
                .await?;
            let status = if result.created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(body::with_warnings(render_object(rt, headers, status, &result.object), &result.warnings))
        }
        (Method::DELETE, Some(name)) => {
            let opts = delete_options(query, headers, bytes)?;
            let obj = core.delete(rt, version, ns, name, &opts).await?;
            Ok(render_object(rt, headers, StatusCode::OK, &obj))
        }
        (Method::DELETE, None) => {
            let opts = delete_options(query, headers, bytes)?;
            let selection = Selection::parse(
                rt,
                query.get("labelSelector").map(String::as_str),
                query.get("fieldSelector").map(String::as_str),
            )?;
            let ListResult { items, revision, .. } =
                core.list(rt, version, ns, &ListOptions { selection, ..ListOptions::default() }).await?;
            let mut deleted = Vec::new();
            for item in items {
                let name =
                    item.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
                let item_ns = item.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_owned);
                match core.delete(rt, version, item_ns.as_deref(), &name, &opts).await {
                    Ok(obj) => deleted.push(obj),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(body::json(
                StatusCode::OK,
                &json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(version), "metadata": {"resourceVersion": revision.to_string()}, "items": deleted}),
            ))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        ))),
    }
}

/// The first key a YAML body sets twice: the YAML mapping parser refuses it (the JSON view of the
/// body keeps the last value).
fn yaml_duplicate_key(bytes: &[u8]) -> Option<String> {
    let error = serde_norway::from_slice::<serde_norway::Value>(bytes).err()?.to_string();
    let rest = error.split_once("duplicate entry with key ")?.1;
    let key = rest.split(" at line").next().unwrap_or(rest);
    Some(key.trim_matches('"').to_owned())
}

/// A list's `metadata`: its `resourceVersion`, and `continue` when more pages follow.
fn list_metadata<T>(list: &ListResult<T>) -> Value {
    let mut metadata = json!({"resourceVersion": list.revision.to_string()});
    if let Some(token) = &list.continue_token {
        metadata["continue"] = json!(token);
    }
    metadata
}

/// `labelSelector`, `fieldSelector`, `limit` and `continue`.
fn list_options(rt: &ResourceType, query: &Query) -> Result<ListOptions, ApiError> {
    let selection = Selection::parse(
        rt,
        query.get("labelSelector").map(String::as_str),
        query.get("fieldSelector").map(String::as_str),
    )?;
    // A negative limit means no limit, as in kube-apiserver.
    let limit = watch::int_parameter(query, "limit")?.and_then(|n| usize::try_from(n).ok());
    let continue_token = query.get("continue").filter(|token| !token.is_empty()).cloned();
    Ok(ListOptions { selection, limit, continue_token })
}

fn delete_options(query: &Query, headers: &HeaderMap, bytes: &[u8]) -> Result<DeleteOptions, ApiError> {
    let body: Value =
        if bytes.iter().all(u8::is_ascii_whitespace) { json!({}) } else { body::parse(headers, bytes)? };
    let policy = body
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or_else(|| query.get("propagationPolicy").map(String::as_str));
    let orphan_legacy = body.get("orphanDependents").and_then(Value::as_bool);
    let propagation = match (policy, orphan_legacy) {
        (Some("Background"), _) => Some(Propagation::Background),
        (Some("Foreground"), _) => Some(Propagation::Foreground),
        (Some("Orphan"), _) | (None, Some(true)) => Some(Propagation::Orphan),
        (None, _) => None,
        (Some(other), _) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy {other:?} is invalid: must be one of Background, Foreground or Orphan"
            )));
        }
    };
    let dry_run = body.get("dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|v| v == "All"))
        || query.get("dryRun").is_some_and(|v| v == "All");
    Ok(DeleteOptions {
        propagation,
        uid: body.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_owned),
        resource_version: body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_owned),
        dry_run,
    })
}
