//! `vmsnap console-server` in front of another cluster's API server (here an embedded one over TLS):
//! the console's files are served locally, API calls pass through with the browser's token, and
//! watches stream.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vmsnap_console::proxy::{Upstream, router};
use vmsnap_testing::TestServer;

/// Starts the console server for `cluster`; returns its address.
async fn console_for(cluster: &TestServer) -> std::net::SocketAddr {
    let upstream = Arc::new(Upstream::from_kubeconfig(&cluster.kubeconfig()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(upstream)).await });
    addr
}

/// Sends a raw HTTP/1.1 request and returns the connection, the request written.
async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: console\r\n{auth}Accept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

async fn response(stream: TcpStream) -> String {
    let mut text = String::new();
    let mut stream = stream;
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut text)).await.unwrap().unwrap();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_and_the_clusters_api_are_served_from_one_origin() {
    let cluster = TestServer::start().await.unwrap();
    let console = console_for(&cluster).await;
    let token = cluster.api.token.clone();

    let page = response(send(console, "GET", "/", None, "").await).await;
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("<html"), "{page}");

    let namespaces = response(send(console, "GET", "/api/v1/namespaces", Some(&token), "").await).await;
    assert!(namespaces.starts_with("HTTP/1.1 200") && namespaces.contains("\"default\""), "{namespaces}");
    let refused = response(send(console, "GET", "/api/v1/namespaces", Some("wrong"), "").await).await;
    assert!(refused.starts_with("HTTP/1.1 401"), "the cluster judges the browser's token: {refused}");

    // A watch streams through: an object created meanwhile arrives as an ADDED event.
    let mut watch = send(console, "GET", "/api/v1/namespaces?watch=true", Some(&token), "").await;
    let created = r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "through-the-console"}}"#;
    let answer = response(send(console, "POST", "/api/v1/namespaces", Some(&token), created).await).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = watch.read(&mut buf).await.unwrap();
            assert!(n > 0, "the watch ended");
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            if text.contains("\"ADDED\"") && text.contains("through-the-console") {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "no ADDED event through the console: {}", String::from_utf8_lossy(&seen));
}

#[tokio::test]
async fn an_unreachable_cluster_is_a_502_status_that_names_it() {
    let cluster = TestServer::start().await.unwrap();
    let kubeconfig = std::fs::read_to_string(cluster.kubeconfig()).unwrap();
    let port = cluster.api.addr.port();
    drop(cluster);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, kubeconfig).unwrap();
    let upstream = Arc::new(Upstream::from_kubeconfig(&path).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let console = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(upstream)).await });
    let answer = response(send(console, "GET", "/api/v1/namespaces", Some("t"), "").await).await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(
        answer.contains(&format!("cannot reach the cluster's API server at https://127.0.0.1:{port}")),
        "{answer}"
    );
}
