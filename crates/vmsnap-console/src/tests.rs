//! The routes, headers and the completeness of the embedded files.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::assets::{self, ASSETS};

async fn get(path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = crate::router().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn header(headers: &axum::http::HeaderMap, name: header::HeaderName) -> &str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

#[tokio::test]
async fn the_page_is_served_at_the_root_uncached_with_a_strict_policy() {
    let (status, headers, body) = get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, header::CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(header(&headers, header::CACHE_CONTROL), "no-cache");
    assert!(header(&headers, header::CONTENT_SECURITY_POLICY).contains("script-src 'self'"));
    assert_eq!(header(&headers, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert!(body.contains(&format!("{}/js/app.js", assets::base())), "the page loads the versioned app");
    assert!(!body.contains("{{BASE}}"), "every placeholder is filled in");
}

#[tokio::test]
async fn assets_of_the_current_version_are_immutable_with_their_content_type() {
    let base = assets::base();
    for (path, content_type) in [
        ("js/api.js", "text/javascript; charset=utf-8"),
        ("styles.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let (status, headers, body) = get(&format!("{base}/{path}")).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(header(&headers, header::CONTENT_TYPE), content_type, "{path}");
        assert_eq!(header(&headers, header::CACHE_CONTROL), "public, max-age=31536000, immutable", "{path}");
        assert_eq!(body.as_bytes(), assets::find(path).unwrap().body, "{path}");
    }
}

#[tokio::test]
async fn assets_asked_for_under_another_version_are_served_but_not_cached() {
    let (status, headers, _) = get("/console/0000000000000000/js/app.js").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, header::CACHE_CONTROL), "no-cache");
}

#[tokio::test]
async fn an_unknown_asset_is_a_404_that_is_not_cached() {
    let (status, headers, _) = get(&format!("{}/js/nope.js", assets::base())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(header(&headers, header::CACHE_CONTROL), "no-store");
}

#[test]
fn every_file_in_the_assets_folder_is_embedded() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let mut on_disk = BTreeSet::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                on_disk.insert(path.strip_prefix(&root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    on_disk.remove("index.html");
    let embedded: BTreeSet<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
    assert_eq!(on_disk, embedded);
}

/// The relative module paths a JavaScript file imports (`from './x.js'`, `import('./x.js')`).
fn imports(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for marker in ["from '", "import('"] {
        for (at, _) in source.match_indices(marker) {
            let rest = &source[at + marker.len()..];
            if let Some(end) = rest.find('\'') {
                found.push(rest[..end].to_owned());
            }
        }
    }
    found
}

fn resolve(from: &str, relative: &str) -> String {
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop();
    for seg in relative.split('/') {
        match seg {
            "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

#[test]
fn every_module_import_names_an_embedded_file() {
    let mut checked = 0;
    for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
        let source = std::str::from_utf8(asset.body).unwrap();
        for import in imports(source) {
            assert!(import.starts_with('.'), "{} imports {import}: only relative imports work", asset.path);
            let target = resolve(asset.path, &import);
            assert!(
                assets::find(&target).is_some(),
                "{} imports {import}, which is not embedded",
                asset.path
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "the import graph was read ({checked} imports)");
}

#[test]
fn every_module_is_reachable_from_the_app() {
    let mut seen = BTreeSet::from(["js/app.js".to_owned()]);
    let mut todo = vec!["js/app.js".to_owned()];
    while let Some(path) = todo.pop() {
        let source = std::str::from_utf8(assets::find(&path).unwrap().body).unwrap();
        for import in imports(source) {
            let target = resolve(&path, &import);
            if seen.insert(target.clone()) {
                todo.push(target);
            }
        }
    }
    let modules: BTreeSet<String> =
        ASSETS.iter().filter(|a| a.path.ends_with(".js")).map(|a| a.path.to_owned()).collect();
    assert_eq!(seen, modules, "no module is dead weight");
}

#[test]
fn the_page_has_no_inline_script_or_style_that_the_policy_would_block() {
    let page = assets::index_html();
    assert!(!page.contains("<script>") && !page.contains("style="), "inline code is blocked by the CSP");
    assert!(page.contains("type=\"module\""));
}
