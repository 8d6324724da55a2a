//! `subresources.kubevirt.io/v1`: routes VM and VMI actions to the node agent, after the checks
//! KubeVirt's virt-api makes itself.

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use vmsnap_api::registry::registry;

use super::{AppState, body};
use crate::error::ApiError;
use crate::pure::path::ResourcePath;

/// Handles `PUT /apis/subresources.kubevirt.io/v1/namespaces/{ns}/{virtualmachines|virtualmachineinstances}/{name}/{action}`.
pub async fn handle(
    state: &AppState,
    method: &Method,
    path: &ResourcePath,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<Response, ApiError> {
    let (Some(ns), Some(name), Some(action)) =
        (path.namespace.as_deref(), path.name.as_deref(), path.subresource.as_deref())
    else {
        return Err(ApiError::no_such_path());
    };
    let known =
        super::discovery::KUBEVIRT_SUBRESOURCES.iter().any(|(r, s)| *r == path.plural && *s == action);
    if path.version != "v1" || !known {
        return Err(ApiError::no_such_path());
    }
    if method != Method::PUT {
        return Err(ApiError::method_not_allowed(format!("{action} only supports PUT")));
    }
    let body: Value =
        if bytes.iter().all(u8::is_ascii_whitespace) { json!({}) } else { body::parse(headers, bytes)? };
    let handler = state.subresources.read().expect("subresource handler lock").clone();
    let Some(handler) = handler else {
        return Err(ApiError::unavailable("no node agent is running to handle VM subresources"));
    };
    if path.plural == "virtualmachineinstances" {
        if action == "unpause" {
            let vm_rt =
                registry().by_kind("kubevirt.io/v1", "VirtualMachine").expect("VirtualMachine is registered");
            if let Some(vm) = state.core.get_stored(vm_rt, Some(ns), name).await?
                && vm.pointer("/status/snapshotInProgress").is_some_and(|v| !v.is_null())
            {
                return Err(ApiError::conflict_message("VM snapshot is in progress"));
            }
        }
        handler.vmi(ns, name, action, body).await?;
    } else {
        handler.vm(ns, name, action, body).await?;
    }
    Ok(body::json(StatusCode::ACCEPTED, &json!({})))
}
