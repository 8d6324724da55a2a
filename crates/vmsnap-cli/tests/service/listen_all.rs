//! `vmsnap serve --listen 0.0.0.0:PORT` (or `[::]`) is reachable at every address of the host: its
//! certificate names them all (as `hostname -I` lists them) and each `--tls-san`, TLS clients
//! verify it against the CA of the kubeconfig, the kubeconfig and the printed URLs never name
//! `0.0.0.0`, and a later start with other names gets a new certificate from the same CA.
//! Connections go to 127.0.0.1 only: curl's `--connect-to` checks the certificate for another name.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use crate::support::*;

/// The host's addresses as `hostname -I` lists them (no loopback, no IPv6 link-local).
fn host_addresses() -> Vec<IpAddr> {
    let out = Command::new("hostname").arg("-I").output().expect("hostname runs");
    assert!(out.status.success(), "hostname -I: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(|a| a.parse().unwrap()).collect()
}

/// The CA of a kubeconfig, written to `dir/ca.crt`.
fn kubeconfig_ca(kubeconfig: &Path, dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let data = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data: "))
        .expect("the kubeconfig has a CA");
    let out = Command::new("base64").arg("-d").stdin(std::process::Stdio::piped()).output_with(data);
    let path = dir.join("ca.crt");
    std::fs::write(&path, out).unwrap();
    path
}

trait OutputWith {
    fn output_with(&mut self, stdin: &str) -> Vec<u8>;
}

impl OutputWith for Command {
    fn output_with(&mut self, stdin: &str) -> Vec<u8> {
        use std::io::Write;
        let mut child = self.stdout(std::process::Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        out.stdout
    }
}

/// curl's exit code for `https://NAME:PORT/healthz`, connecting to 127.0.0.1 and verifying the
/// certificate for NAME against `ca` (0: verified; 60: the certificate does not name it).
fn curl_as(name: &str, port: u16, ca: &Path) -> (i32, String) {
    let host = if name.contains(':') { format!("[{name}]") } else { name.to_owned() };
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .arg("--connect-to")
        .arg(format!("{host}:{port}:127.0.0.1:{port}"))
        .arg(format!("https://{host}:{port}/healthz"))
        .output()
        .expect("curl runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The subject alternative names of the certificate served on 127.0.0.1:PORT, as openssl prints
/// them (`DNS:name`, `IP Address:address`), addresses in Rust's notation.
fn served_names(port: u16) -> Vec<String> {
    let connect = format!("127.0.0.1:{port}");
    let pem = Command::new("openssl")
        .args(["s_client", "-connect", &connect])
        .stdin(std::process::Stdio::piped())
        .output_with("");
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName"])
        .stdin(std::process::Stdio::piped())
        .output_with(&String::from_utf8_lossy(&pem));
    let text = String::from_utf8_lossy(&text).into_owned();
    let list = text.lines().nth(1).unwrap_or_else(|| panic!("no subjectAltName: {text}"));
    list.split(", ")
        .map(|san| match san.trim().split_once(':') {
            Some(("DNS", name)) => name.to_owned(),
            Some(("IP Address", ip)) => ip.parse::<IpAddr>().unwrap().to_string(),
            _ => panic!("unexpected name {san:?} in {text}"),
        })
        .collect()
}

#[test]
fn a_server_on_every_address_has_a_certificate_for_each_of_them() {
    let dir = TestDir::new("vl");
    let data = dir.path().join("data");
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let mut serve = Serve::start(
        &data,
        &listen,
        None,
        &["--accel", "tcg", "--tls-san", "vmsnap.example.test", "--tls-san", "198.51.100.7"],
    );
    let ca = kubeconfig_ca(&serve.kubeconfig(), dir.path());
    let log = serve.log();

    let kubeconfig = std::fs::read_to_string(serve.kubeconfig()).unwrap();
    assert!(kubeconfig.contains(&format!("server: https://127.0.0.1:{port}\n")), "{kubeconfig}");
    assert!(!log.contains("https://0.0.0.0"), "a URL names 0.0.0.0:\n{log}");
    assert!(log.contains("exposed on every network interface"), "no warning:\n{log}");
    let ipv4: Vec<IpAddr> = host_addresses().into_iter().filter(IpAddr::is_ipv4).collect();
    assert!(!ipv4.is_empty(), "this host has no IPv4 address besides loopback");
    for ip in &ipv4 {
        assert!(log.contains(&format!("https://{ip}:{port}/")), "{ip} is not printed:\n{log}");
    }

    let names = served_names(port);
    let mut expected: Vec<String> = ipv4.iter().map(IpAddr::to_string).collect();
    expected.extend(["127.0.0.1", "localhost", "vmsnap.example.test", "198.51.100.7"].map(String::from));
    for name in &expected {
        assert!(names.contains(name), "the certificate does not name {name}: {names:?}");
        let (code, stderr) = curl_as(name, port, &ca);
        assert_eq!(code, 0, "{name}: {stderr}");
    }
    let (code, stderr) = curl_as("not-named.example.test", port, &ca);
    assert_eq!(code, 60, "a name not in the certificate must not verify: {stderr}");
    kubectl_works(&serve);
    let (soft, hard) = serve.open_files_limits();
    assert_eq!(soft, hard, "vmsnap serve started with a soft limit of 1024 open files and did not raise it");
    assert_ne!(hard, "1024", "the hard limit is 1024 here: the test cannot tell whether vmsnap raised it");

    // On loopback again, without --tls-san: a new certificate, from the same CA.
    serve.stop();
    let ca_before = std::fs::read(data.join("tls/ca.crt")).unwrap();
    let port = free_port();
    let mut serve = Serve::start(&data, &format!("127.0.0.1:{port}"), None, &["--accel", "tcg"]);
    assert_eq!(std::fs::read(data.join("tls/ca.crt")).unwrap(), ca_before, "the CA changed");
    assert_eq!(curl_as("127.0.0.1", port, &ca).0, 0, "the old kubeconfig's CA no longer verifies");
    let (code, _) = curl_as("vmsnap.example.test", port, &ca);
    assert_eq!(code, 60, "the certificate still names a --tls-san that is gone: {:?}", served_names(port));
    assert!(!serve.log().contains("exposed on every network interface"), "{}", serve.log());
    kubectl_works(&serve);
    serve.stop();
}

#[test]
fn a_server_on_every_ipv6_address_names_the_ipv6_ones_too() {
    let dir = TestDir::new("vl6");
    let data = dir.path().join("data");
    let port = free_port();
    let serve = Serve::start(&data, &format!("[::]:{port}"), None, &["--accel", "tcg"]);
    let ca = kubeconfig_ca(&serve.kubeconfig(), dir.path());
    let kubeconfig = std::fs::read_to_string(serve.kubeconfig()).unwrap();
    assert!(kubeconfig.contains(&format!("server: https://[::1]:{port}\n")), "{kubeconfig}");
    let names = served_names(port);
    for ip in host_addresses() {
        let shown = ip.to_string();
        assert!(names.contains(&shown), "the certificate does not name {ip}: {names:?}");
        assert_eq!(curl_as(&shown, port, &ca).0, 0, "{ip}");
    }
}

/// kubectl with the kubeconfig as written lists namespaces (the kubeconfig's URL and CA agree).
#[track_caller]
fn kubectl_works(serve: &Serve) {
    let out = serve.kubectl(&["get", "namespace", "default", "-o", "name"]);
    assert_eq!(out.ok().trim(), "namespace/default");
}
