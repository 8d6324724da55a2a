//! Web console assets (built into the binary) and the HTTP routes that serve them.
//!
//! The console is a single-page application written as plain HTML, CSS and JavaScript modules with
//! no build step, so neither building nor running vmsnap needs Node.js. Its routes need no bearer
//! token: the page asks the user for the token and sends it on every call it makes to the
//! Kubernetes API of the same server, exactly as kubectl does.
//!
//! - `GET /` answers `index.html` (never cached, so a new binary is picked up at once);
//! - `GET /console/<version>/<path>` answers the other files. `<version>` is a hash of all of
//!   them, so a URL always names the same bytes and is cached as immutable.

pub mod assets;
pub mod proxy;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// What the page may load: only its own files and its own API. No inline scripts or styles.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's routes, to merge beside the API routes of the embedded server.
pub fn router() -> Router {
    Router::new().route("/", get(index)).route("/console/{version}/{*path}", get(asset))
}

async fn index() -> Response {
    let mut response = (StatusCode::OK, assets::index_html()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(assets::content_type("index.html")));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    secure(response)
}

async fn asset(Path((version, path)): Path<(String, String)>) -> Response {
    let Some(asset) = assets::find(&path) else {
        let mut response = (StatusCode::NOT_FOUND, format!("no console file {path}\n")).into_response();
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return secure(response);
    };
    // A page loaded from an older binary may ask for its version's files: answer today's bytes,
    // but do not let them be cached under the old name.
    let cache = if version == assets::version() { "public, max-age=31536000, immutable" } else { "no-cache" };
    let mut response = (StatusCode::OK, asset.body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(assets::content_type(asset.path)));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    secure(response)
}

/// Headers every console response carries.
fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests;
