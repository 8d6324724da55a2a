//! Request bodies (JSON or YAML) and responses (JSON, Status errors, Warning headers).

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::ApiError;
use crate::pure::protobuf::ProtobufError;

/// Parses a request body as JSON, or as YAML when the content type says so (JSON is YAML too),
/// or as Kubernetes' protobuf encoding. A body nested deeper than the store keeps is refused here,
/// before anything is done with it.
pub fn parse(headers: &HeaderMap, bytes: &[u8]) -> Result<Value, ApiError> {
    let value = decode(headers, bytes)?;
    let depth = vmsnap_store::nesting_depth(&value);
    if depth > vmsnap_store::MAX_NESTING {
        return Err(ApiError::bad_request(format!(
            "the request body is nested {depth} levels deep; at most {} are allowed",
            vmsnap_store::MAX_NESTING
        )));
    }
    Ok(value)
}

fn decode(headers: &HeaderMap, bytes: &[u8]) -> Result<Value, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    if ct.contains("yaml") {
        return serde_norway::from_slice::<Value>(bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")));
    }
    let media = ct.split(';').next().unwrap_or("").trim();
    let known = media.is_empty() || media == "*/*" || media.ends_with("json") || media.contains("protobuf");
    if !known {
        return Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {media:?})"
        )));
    }
    if ct.contains("protobuf") {
        return crate::pure::protobuf::decode(bytes).map_err(|e| match e {
            ProtobufError::Malformed(_) => ApiError::bad_request(e.to_string()),
            ProtobufError::UnsupportedKind { .. } => ApiError::unsupported_media_type(e.to_string()),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!("the body of the request could not be decoded as JSON: {e}"))
    })
}

/// The largest request body kube-apiserver reads (`MaxRequestBodyBytes`, 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Reads a request body of at most [`MAX_BODY_BYTES`]; a larger one (by its `Content-Length`,
/// or once that many bytes have arrived) is a 413 `Status`, as kube-apiserver answers it.
pub async fn read_limited(headers: &HeaderMap, body: Body) -> Result<bytes::Bytes, ApiError> {
    use futures::StreamExt;
    let too_large = || ApiError::request_entity_too_large(format!("limit is {MAX_BODY_BYTES}"));
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        drain(stream).await;
        return Err(too_large());
    }
    let mut read = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("the request body could not be read: {e}")))?;
        if read.len() + chunk.len() > MAX_BODY_BYTES {
            drain(stream).await;
            return Err(too_large());
        }
        read.extend_from_slice(&chunk);
    }
    Ok(read.freeze())
}

/// Reads and discards what is left of a refused body, up to a bound: a client still sending when
/// the answer comes would otherwise see its connection reset instead of the 413.
async fn drain(mut stream: axum::body::BodyDataStream) {
    use futures::StreamExt;
    const DRAIN_BYTES: usize = 16 * 1024 * 1024;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut discarded = 0;
        while discarded < DRAIN_BYTES
            && let Some(Ok(chunk)) = stream.next().await
        {
            discarded += chunk.len();
        }
    })
    .await;
}

/// A JSON response.
pub fn json(status: StatusCode, value: &Value) -> Response {
    json_with_type(status, value, "application/json")
}

/// A JSON response with a specific content type (tables).
pub fn json_with_type(status: StatusCode, value: &Value, content_type: &'static str) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A list response whose items are already serialized: `envelope` (kind, apiVersion, metadata)
/// with `"items": [...]` appended, without parsing or copying the items into one JSON value.
pub fn json_list(envelope: &Value, items: &[Vec<u8>]) -> Response {
    let mut body = serde_json::to_vec(envelope).unwrap_or_default();
    body.pop(); // the envelope's closing brace
    body.reserve(items.iter().map(|i| i.len() + 1).sum::<usize>() + 12);
    body.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Adds `Warning: 299 - "..."` headers.
pub fn with_warnings(mut r: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = json(status, &self.to_status());
        // As kube-apiserver does for a Status with a retry delay; clients honour it.
        if let Some(seconds) =
            self.details.as_ref().and_then(|d| d.get("retryAfterSeconds")).and_then(Value::as_u64)
        {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
