//! Connections that never finish a request are closed, and their number is bounded, so clients
//! that open connections and send nothing cannot exhaust the file descriptors of the server and
//! stop the API from answering (before: 1,100 such connections did, under the usual soft limit of
//! 1,024 open files).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use vmsnap_apiserver::{ApiServer, ApiServerConfig, ConnectionLimits};

async fn start(dir: &std::path::Path, limits: ConnectionLimits) -> ApiServer {
    let config = ApiServerConfig {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        store: Default::default(),
        seed: Vec::new(),
        extra_routes: None,
        certificate_names: Vec::new(),
    };
    ApiServer::start_with_limits(config, limits).await.unwrap()
}

/// Reads until the server closes the connection; how long that took.
fn time_until_closed(mut stream: std::net::TcpStream) -> Duration {
    let started = Instant::now();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return started.elapsed(),
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn connections_that_never_finish_their_headers_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ConnectionLimits {
        handshake_timeout: Duration::from_secs(1),
        header_timeout: Duration::from_secs(1),
        ..ConnectionLimits::default()
    };
    let server = start(dir.path(), limits).await;
    let addr = server.addr;
    let closed = tokio::task::spawn_blocking(move || {
        // Nothing at all: not even the byte that tells TLS from plain HTTP.
        let silent = std::net::TcpStream::connect(addr).unwrap();
        // Half the headers of a request, then nothing.
        let mut partial = std::net::TcpStream::connect(addr).unwrap();
        partial.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
        let silent = std::thread::spawn(move || time_until_closed(silent));
        (silent.join().unwrap(), time_until_closed(partial))
    })
    .await
    .unwrap();
    assert!(closed.0 < Duration::from_secs(5), "silent connection closed after {:?}", closed.0);
    assert!(closed.1 < Duration::from_secs(5), "partial headers closed after {:?}", closed.1);
}

const HOLD_CONNECTIONS: &str = r#"
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
host, port = sys.argv[1].rsplit(":", 1)
held = []
for _ in range(int(sys.argv[2])):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect((host, int(port)))
    except OSError:
        break
    held.append(s)
print(len(held), flush=True)
sys.stdin.read()
"#;

#[tokio::test]
async fn the_api_answers_while_1100_connections_sit_idle_under_a_1024_file_limit() {
    // The soft limit most systems start processes with; this test binary holds only this test's
    // sockets, so the limit is that of the server it starts.
    let pid = std::process::id().to_string();
    let set = std::process::Command::new("prlimit").args(["--pid", &pid, "--nofile=1024:"]).status().unwrap();
    assert!(set.success());
    assert_eq!(vmsnap_apiserver::open_file_limit().unwrap(), 1024);
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), ConnectionLimits::default()).await;

    // Another process opens the idle connections (its own file limit raised to its hard limit).
    let mut holder = tokio::process::Command::new("python3")
        .args(["-c", HOLD_CONNECTIONS, &server.addr.to_string(), "1100"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut count = String::new();
    {
        use tokio::io::AsyncBufReadExt;
        let stdout = holder.stdout.take().unwrap();
        tokio::io::BufReader::new(stdout).read_line(&mut count).await.unwrap();
    }
    assert_eq!(count.trim(), "1100", "every idle connection was opened");

    let client = vmsnap_testing::client_for(&server.kubeconfig_path).await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client);
    let listed = tokio::time::timeout(Duration::from_secs(5), namespaces.list(&Default::default())).await;
    let listed = listed.expect("the API answers within 5 s, before any handshake timeout").unwrap();
    assert!(listed.items.iter().any(|n| n.metadata.name.as_deref() == Some("default")));
    holder.kill().await.unwrap();
}
