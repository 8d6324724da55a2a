//! Raw requests through a `kube` client, for tests that check status codes and `Status` bodies.
#![allow(dead_code)] // Each test binary uses part of this module.

use http::{Method, Request};
use kube::Client;
use serde_json::Value;

/// Sends `body` with `content_type` and returns the status code and the parsed body (`Null` when
/// it is not JSON).
pub async fn send(
    client: &Client,
    method: Method,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, Value) {
    send_bytes(client, method, path, &[("content-type", content_type)], body.as_bytes().to_vec()).await
}

/// Like [`send`], with any headers and a body of raw bytes.
pub async fn send_bytes(
    client: &Client,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = client.send(req.body(body.into()).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// GETs `path` and returns the status code and body.
pub async fn get(client: &Client, path: &str) -> (u16, Value) {
    send(client, Method::GET, path, "application/json", "").await
}

/// POSTs a JSON object to a collection and returns the status code and body.
pub async fn post(client: &Client, path: &str, body: &Value) -> (u16, Value) {
    send(client, Method::POST, path, "application/json", &body.to_string()).await
}

/// A request over plain HTTP (the loopback listener also answers it) with `curl`, which neither
/// retries nor normalizes the path: `(code, body)`. `token` adds the bearer token.
pub async fn curl(method: &str, url: &str, token: Option<&str>, extra: &[&str]) -> (u16, Value) {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-s", "--path-as-is", "-X", method, "-w", "\n%{http_code}"]).args(extra);
    if let Some(token) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let out = cmd.arg(url).output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
}
