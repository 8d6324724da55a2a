//! Watch: newline-delimited JSON events over a chunked response, with selector transitions,
//! bookmarks, `sendInitialEvents`, resumption from a revision and in-stream 410 Expired.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use vmsnap_api::registry::ResourceType;
use vmsnap_store::{EventType, WatchError};

use super::AppState;
use super::resources::{Query, TABLE_TYPE};
use crate::core::objects::{storage_resource, to_version};
use crate::core::{ListOptions, Selection};
use crate::error::ApiError;
use crate::pure::accept::{Representation, representation};
use crate::pure::table;

const BOOKMARK_EVERY: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

struct Encoder {
    rt: &'static ResourceType,
    version: String,
    representation: Representation,
    columns_sent: bool,
}

impl Encoder {
    fn object(&mut self, stored: &Value) -> Value {
        let obj = to_version(self.rt, &self.version, stored.clone());
        match self.representation {
            Representation::Object => obj,
            Representation::Metadata => table::partial_metadata(&obj),
            Representation::Table => {
                let rv =
                    obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("").to_owned();
                let mut t = table::table(self.rt, std::slice::from_ref(&obj), &rv);
                if self.columns_sent {
                    t["columnDefinitions"] = json!([]);
                }
                self.columns_sent = true;
                t
            }
        }
    }

    fn event(&mut self, kind: &str, stored: &Value) -> Bytes {
        line(&json!({"type": kind, "object": self.object(stored)}))
    }

    fn bookmark(&self, revision: u64, initial_events_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let kind = if self.representation == Representation::Metadata {
            "PartialObjectMetadata"
        } else {
            self.rt.kind.as_str()
        };
        let api_version = if self.representation == Representation::Metadata {
            "meta.k8s.io/v1".to_owned()
        } else {
            self.rt.api_version(&self.version)
        };
        line(
            &json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": meta}}),
        )
    }
}

fn line(v: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(v).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// An integer query parameter, refused as kube-apiserver's parameter codec refuses it.
pub fn int_parameter(query: &Query, name: &str) -> Result<Option<i64>, ApiError> {
    match query.get(name).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(text) => text.parse::<i64>().map(Some).map_err(|_| {
            ApiError::bad_request(format!("strconv.ParseInt: parsing {text:?}: invalid syntax"))
        }),
    }
}

/// `resourceVersion` of a list or watch: `None` when unset or `0` (any revision).
pub fn resource_version_parameter(query: &Query) -> Result<Option<u64>, ApiError> {
    match query.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => Ok(None),
        Some(rv) => rv.parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "resourceVersion: Invalid value: {rv:?}: strconv.ParseUint: parsing {rv:?}: invalid syntax"
            ))
        }),
    }
}

/// Starts a watch response.
pub async fn handle(
    state: &AppState,
    rt: &'static ResourceType,
    version: &str,
    ns: Option<&str>,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let selection = Selection::parse(
        rt,
        query.get("labelSelector").map(String::as_str),
        query.get("fieldSelector").map(String::as_str),
    )?;
    let bookmarks = query.get("allowWatchBookmarks").is_some_and(|v| v == "true" || v == "1");
    let send_initial = query.get("sendInitialEvents").map(|v| v == "true" || v == "1");
    let timeout = match int_parameter(query, "timeoutSeconds")? {
        Some(seconds) if seconds > 0 => Duration::from_secs(seconds as u64),
        _ => DEFAULT_TIMEOUT,
    };
    let requested = resource_version_parameter(query)?;
    if let Some(rv) = requested {
        state.core.wait_for_revision(rv).await?;
    }
    let representation =
        representation(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or(""));
    let mut encoder = Encoder { rt, version: version.to_owned(), representation, columns_sent: false };

    let core = state.core.clone();
    let (initial, start) = match (requested, send_initial) {
        (Some(rv), None | Some(false)) => (None, rv),
        _ => {
            let options = ListOptions { selection: selection.clone(), ..ListOptions::default() };
            let list = core.list(rt, rt.storage_version(), ns, &options).await?;
            (Some(list.items), list.revision)
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let ns = ns.map(str::to_owned);
    let initial_end_bookmark = send_initial == Some(true) && bookmarks;
    tokio::spawn(async move {
        if let Some(items) = initial {
            for item in &items {
                if tx.send(encoder.event("ADDED", item)).await.is_err() {
                    return;
                }
            }
            if initial_end_bookmark && tx.send(encoder.bookmark(start, true)).await.is_err() {
                return;
            }
        }
        let mut watch = core.store().watch(&storage_resource(rt), ns.as_deref(), start);
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(encoder.bookmark(watch.progress(), false)).await.is_err() {
                        return;
                    }
                }
                next = watch.next() => {
                    let event = match next {
                        Ok(e) => e,
                        Err(WatchError::Expired { requested, oldest }) => {
                            let status = ApiError::expired(format!("too old resource version: {requested} ({oldest})")).to_status();
                            let _ = tx.send(line(&json!({"type": "ERROR", "object": status}))).await;
                            return;
                        }
                        Err(WatchError::Store(msg)) => {
                            let status = ApiError::internal(msg).to_status();
                            let _ = tx.send(line(&json!({"type": "ERROR", "object": status}))).await;
                            return;
                        }
                    };
                    let now = selection.matches(&event.object);
                    let before = event.previous.as_ref().is_some_and(|p| selection.matches(p));
                    let kind = match event.event_type {
                        EventType::Added if now => "ADDED",
                        EventType::Modified if now && before => "MODIFIED",
                        EventType::Modified if now => "ADDED",
                        EventType::Modified if before => "DELETED",
                        EventType::Deleted if before || now => "DELETED",
                        _ => continue,
                    };
                    if tx.send(encoder.event(kind, &event.object)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let stream = ReceiverStream::new(rx).map(Ok::<_, Infallible>);
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = StatusCode::OK;
    let ct = if representation == Representation::Table { TABLE_TYPE } else { "application/json" };
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    Ok(response)
}
