//! The HTTP layer: authentication, routing, discovery, OpenAPI, and the resource verbs.

mod body;
pub mod discovery;
mod kubevirt;
pub mod openapi;
mod resources;
mod watch;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

use crate::core::Core;
use crate::error::ApiError;
use vmsnap_contracts::subresources::VmSubresources;

/// One request, as recorded for RBAC tests: method, path and query, and the client's
/// `X-Vmsnap-Component` header.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query string.
    pub query: String,
    /// The `X-Vmsnap-Component` header, if the client sent one.
    pub component: Option<String>,
}

/// A source of Prometheus exposition text for `/metrics`.
pub type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// The object service.
    pub core: Arc<Core>,
    /// The bearer token clients must present.
    pub token: Arc<String>,
    /// `host:port` reported in `/api`.
    pub server_address: Arc<String>,
    /// The node agent's subresource handler, once registered.
    pub subresources: Arc<RwLock<Option<Arc<dyn VmSubresources>>>>,
    /// Extra text appended to `/metrics` (Prometheus exposition format), provided by other components.
    pub metrics: Arc<RwLock<Vec<MetricsSource>>>,
    /// When set, every request is appended here (tests that check RBAC rules).
    pub recorded: Arc<std::sync::Mutex<Option<Vec<RecordedRequest>>>>,
}

/// The API router: everything under `/api`, `/apis`, `/openapi`, plus `/version`, health and metrics.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api", any(handle))
        .route("/api/{*rest}", any(handle))
        .route("/apis", any(handle))
        .route("/apis/{*rest}", any(handle))
        .route(
            "/apis/subresources.kubevirt.io/v1/namespaces/{ns}/virtualmachineinstances/{name}/console",
            axum::routing::get(kubevirt::console),
        )
        .route("/openapi/{*rest}", any(handle))
        .route("/version", any(handle))
        .route("/healthz", any(handle))
        .route("/livez", any(handle))
        .route("/readyz", any(handle))
        .route("/metrics", any(handle))
        // Paths that serve nothing still go through authentication first, as in kube-apiserver:
        // an anonymous `//api/...` or `/version/../api/...` is 401, not 404.
        .fallback(no_such_path)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

const ANONYMOUS_PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/version"];

async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(log) = state.recorded.lock().expect("request log lock").as_mut() {
        log.push(RecordedRequest {
            method: request.method().to_string(),
            path: request.uri().path().to_owned(),
            query: request.uri().query().unwrap_or("").to_owned(),
            component: request
                .headers()
                .get("x-vmsnap-component")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        });
    }
    if ANONYMOUS_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if presented.is_some_and(|t| constant_time_eq(t.as_bytes(), state.token.as_bytes())) {
        next.run(request).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

async fn no_such_path() -> Response {
    ApiError::no_such_path().into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn handle(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let path = uri.path().to_owned();
    let started = std::time::Instant::now();
    let response = match body::read_limited(&headers, body).await {
        Ok(bytes) => dispatch(&state, &method, &path, &query, &headers, &bytes).await,
        Err(e) => Err(e),
    };
    tracing::debug!(
        target: "vmsnap_apiserver::requests",
        %method,
        %path,
        query = uri.query().unwrap_or_default(),
        status = response.as_ref().map_or_else(|e| e.code, |r| r.status().as_u16()),
        micros = started.elapsed().as_micros() as u64,
        "request",
    );
    match response {
        Ok(r) => r,
        Err(e) => {
            if e.code >= 500 {
                tracing::error!(%method, %path, error = %e, "request failed");
            } else {
                tracing::debug!(%method, %path, error = %e, "request refused");
            }
            e.into_response()
        }
    }
}

async fn dispatch(
    state: &AppState,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<Response, ApiError> {
    let path = path.trim_end_matches('/');
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    let is_get = method == Method::GET;
    match segs.as_slice() {
        ["version"] if is_get => Ok(body::json(StatusCode::OK, &discovery::version())),
        ["healthz"] | ["livez"] | ["readyz"] if is_get => Ok((StatusCode::OK, "ok").into_response()),
        ["metrics"] if is_get => {
            let mut text = String::new();
            for source in state.metrics.read().expect("metrics lock").iter() {
                text.push_str(&source());
            }
            Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
        }
        ["api"] if is_get => Ok(body::json(StatusCode::OK, &discovery::core_versions(&state.server_address))),
        ["apis"] if is_get => Ok(body::json(StatusCode::OK, &discovery::group_list())),
        ["api", v] if is_get => discovery::resource_list("", v)
            .map(|d| body::json(StatusCode::OK, &d))
            .ok_or_else(ApiError::no_such_path),
        ["apis", g] if is_get => {
            discovery::group(g).map(|d| body::json(StatusCode::OK, &d)).ok_or_else(ApiError::no_such_path)
        }
        ["apis", g, v] if is_get => discovery::resource_list(g, v)
            .map(|d| body::json(StatusCode::OK, &d))
            .ok_or_else(ApiError::no_such_path),
        ["openapi", "v3"] if is_get => Ok(body::json(StatusCode::OK, &openapi::root())),
        ["openapi", "v3", rest @ ..] if is_get => openapi::group_version(&rest.join("/"))
            .map(|d| body::json(StatusCode::OK, d))
            .ok_or_else(ApiError::no_such_path),
        _ => match crate::pure::path::parse(path) {
            Some(p) => resources::handle(state, method, p, query, headers, bytes).await,
            None => Err(ApiError::no_such_path()),
        },
    }
}
