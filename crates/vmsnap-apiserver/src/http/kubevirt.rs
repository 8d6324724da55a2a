//! `subresources.kubevirt.io/v1`: routes VM and VMI actions to the node agent, after the checks
//! KubeVirt's virt-api makes itself.

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use vmsnap_api::refusal::{Refusal, RefusalCause};
use vmsnap_api::registry::registry;

use super::{AppState, body};
use vmsnap_contracts::subresources::{UnknownAction, VmAction, VmiAction};

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
    if action == "guestexec" {
        let request: vmsnap_api::kubevirt::GuestExecRequest = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid guestexec request: {e}")))?;
        let handler = state.subresources.read().expect("subresource handler lock").clone();
        let Some(handler) = handler else {
            return Err(ApiError::unavailable("no node agent is running to handle VM subresources"));
        };
        let result = handler.guest_exec(ns, name, request).await?;
        return Ok(body::json(StatusCode::OK, &serde_json::to_value(result).expect("serializes")));
    }
    let body: Value =
        if bytes.iter().all(u8::is_ascii_whitespace) { json!({}) } else { body::parse(headers, bytes)? };
    let handler = state.subresources.read().expect("subresource handler lock").clone();
    let Some(handler) = handler else {
        return Err(ApiError::unavailable("no node agent is running to handle VM subresources"));
    };
    let unknown = |_: UnknownAction| ApiError::no_such_path();
    if path.plural == "virtualmachineinstances" {
        let action: VmiAction = action.parse().map_err(unknown)?;
        if action == VmiAction::Unpause {
            let vm_rt =
                registry().by_kind("kubevirt.io/v1", "VirtualMachine").expect("VirtualMachine is registered");
            if let Some(vm) = state.core.get_stored(vm_rt, Some(ns), name).await?
                && let Some(snapshot) = vm.pointer("/status/snapshotInProgress").and_then(Value::as_str)
            {
                // virt-api's message; the cause names the snapshot for clients.
                let mut refused = ApiError::conflict_message("VM snapshot is in progress");
                let cause = RefusalCause::blocked_by(Refusal::UnpauseDuringSnapshot, snapshot);
                refused.details = Some(json!({"causes": [cause.to_json()]}));
                return Err(refused);
            }
        }
        handler.vmi(ns, name, action, body).await?;
    } else {
        let action: VmAction = action.parse().map_err(unknown)?;
        handler.vm(ns, name, action, body).await?;
    }
    Ok(body::json(StatusCode::ACCEPTED, &json!({})))
}

/// `GET .../virtualmachineinstances/{name}/console`: a WebSocket bridged to the VMI's serial console.
pub async fn console(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path((ns, name)): axum::extract::Path<(String, String)>,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let handler = state.subresources.read().expect("subresource handler lock").clone();
    let Some(handler) = handler else {
        return ApiError::unavailable("no node agent is running to handle VM subresources").into_response();
    };
    let path = match handler.console_socket(&ns, &name).await {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let stream = match tokio::net::UnixStream::connect(&path).await {
        Ok(s) => s,
        Err(e) => {
            return ApiError::unavailable(format!("cannot open the serial console of {ns}/{name}: {e}"))
                .into_response();
        }
    };
    ws.on_upgrade(move |socket| bridge(socket, stream))
}

async fn bridge(socket: axum::extract::ws::WebSocket, stream: tokio::net::UnixStream) {
    use axum::extract::ws::Message;
    use futures::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut ws_tx, mut ws_rx) = socket.split();
    let (mut rd, mut wr) = stream.into_split();
    let to_ws = async move {
        let mut buf = vec![0u8; 4096];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if ws_tx.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let to_console = async move {
        while let Some(Ok(msg)) = ws_rx.next().await {
            let data = match msg {
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            if wr.write_all(&data).await.is_err() {
                break;
            }
        }
    };
    tokio::select! { _ = to_ws => {}, _ = to_console => {} }
}
