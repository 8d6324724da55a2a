//! Where a DataVolume's `http` source is read from: an `http://` URL on a
//! loopback address (downloaded with progress and an idle timeout), or a
//! `file://` URL under one of the configured import roots.
//!
//! The embedded driver never reaches beyond the machine: other hosts and
//! `https` are refused with a message saying so.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

/// Where to read a source from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Download over HTTP/1.1.
    Http {
        /// The URL, for messages.
        url: String,
        /// The loopback address to connect to.
        addr: SocketAddr,
        /// The `Host` header.
        host: String,
        /// The request target (`/path?query`).
        target: String,
    },
    /// Import this local file.
    File(PathBuf),
}

/// A source cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is malformed or not supported.
    #[error("cannot import {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// Connecting failed or timed out.
    #[error("could not connect to {addr} for {url}")]
    Connect {
        /// The URL.
        url: String,
        /// The address.
        addr: SocketAddr,
        /// The error (a timeout is `TimedOut`).
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("the HTTP request for {url} failed")]
    Http {
        /// The URL.
        url: String,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// The server answered with an error status.
    #[error("{url} answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status line.
        status: String,
    },
    /// The server went silent.
    #[error("{url} sent nothing for {idle:?}; giving up")]
    Idle {
        /// The URL.
        url: String,
        /// The idle timeout.
        idle: Duration,
    },
    /// The body ended before `Content-Length` bytes arrived.
    #[error("{url} ended after {received} of {expected} bytes")]
    Truncated {
        /// The URL.
        url: String,
        /// Bytes received.
        received: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// Writing the download failed.
    #[error("could not write the download to {}", path.display())]
    Write {
        /// The scratch file.
        path: PathBuf,
        /// The file-system error.
        #[source]
        source: std::io::Error,
    },
    /// The import was stopped (its PVC is being deleted).
    #[error("the import was stopped")]
    Cancelled,
}

/// Parses a DataVolume `http.url`.
pub fn parse(url: &str, file_roots: &[PathBuf]) -> Result<Source, FetchError> {
    let fail = |reason: String| Err(FetchError::Url { url: url.to_owned(), reason });
    if let Some(path) = url.strip_prefix("file://") {
        return parse_file(url, path, file_roots);
    }
    if url.starts_with("https://") {
        return fail("https is not supported by the embedded importer; serve the image over http on 127.0.0.1, or use a file:// URL".into());
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return fail("only http:// (on a loopback address) and file:// URLs are supported".into());
    };
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(split);
    let target = target.split('#').next().unwrap_or_default();
    let target =
        if target.is_empty() || target.starts_with('?') { format!("/{target}") } else { target.to_owned() };
    if authority.contains('@') {
        return fail("credentials in the URL are not supported".into());
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, "")) => (host, 80),
            Some((host, port)) => match port.strip_prefix(':').and_then(|p| p.parse::<u16>().ok()) {
                Some(port) => (host, port),
                None => return fail(format!("the port in {authority:?} is not a number")),
            },
            None => return fail(format!("the host {authority:?} is missing its closing bracket")),
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) => match port.parse::<u16>() {
                Ok(port) => (host, port),
                Err(_) => return fail(format!("the port in {authority:?} is not a number")),
            },
            None => (authority, 80),
        },
    };
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        match host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                return fail(format!(
                    "the host {host:?} is not an IP address; the embedded importer reads only from loopback addresses"
                ));
            }
        }
    };
    if !ip.is_loopback() {
        return fail(format!(
            "{ip} is not a loopback address; the embedded importer reads only from this machine (127.0.0.0/8, ::1)"
        ));
    }
    Ok(Source::Http {
        url: url.to_owned(),
        addr: SocketAddr::new(ip, port),
        host: authority.to_owned(),
        target,
    })
}

fn parse_file(url: &str, path: &str, roots: &[PathBuf]) -> Result<Source, FetchError> {
    let fail = |reason: String| Err(FetchError::Url { url: url.to_owned(), reason });
    let decoded = match percent_decode(path) {
        Some(decoded) => PathBuf::from(decoded),
        None => return fail("it has an invalid %-escape".into()),
    };
    if !decoded.is_absolute() {
        return fail("a file:// URL needs an absolute path (file:///dir/image.qcow2)".into());
    }
    if roots.is_empty() {
        return fail("file:// imports are disabled; the server's file_import_roots names the directories they may read".into());
    }
    let resolved = match decoded.canonicalize() {
        Ok(resolved) => resolved,
        Err(error) => return fail(format!("{} cannot be read: {error}", decoded.display())),
    };
    let allowed =
        roots.iter().filter_map(|root| root.canonicalize().ok()).any(|root| resolved.starts_with(root));
    if !allowed {
        let roots: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        return fail(format!(
            "{} is outside the directories file:// imports may read ({})",
            resolved.display(),
            roots.join(", ")
        ));
    }
    Ok(Source::File(resolved))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Timeouts of a download.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// To connect and to get the response head.
    pub connect: Duration,
    /// Between two pieces of the body.
    pub idle: Duration,
}

/// Downloads `url` from `addr` into `dest`, reporting (bytes so far, total if
/// known) after each piece and stopping when `cancel` is set.
pub async fn download(
    source: &Source,
    dest: &Path,
    timeouts: Timeouts,
    progress: impl Fn(u64, Option<u64>),
    cancel: &AtomicBool,
) -> Result<u64, FetchError> {
    let Source::Http { url, addr, host, target } = source else {
        return Err(FetchError::Url { url: format!("{source:?}"), reason: "not an http source".into() });
    };
    let timed_out = || {
        std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer within {:?}", timeouts.connect))
    };
    let connect_error = |source| FetchError::Connect { url: url.clone(), addr: *addr, source };
    let stream = tokio::time::timeout(timeouts.connect, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| connect_error(timed_out()))?
        .map_err(connect_error)?;
    let http_error = |source| FetchError::Http { url: url.clone(), source };
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(http_error)?;
    let driver = tokio::spawn(connection);
    let _stop_driver = AbortOnDrop(driver);
    let request = hyper::Request::get(target.as_str())
        .header(hyper::header::HOST, host.as_str())
        .header(hyper::header::USER_AGENT, "vmsnap-storage")
        .body(Empty::<Bytes>::new())
        .map_err(|error| FetchError::Url { url: url.clone(), reason: error.to_string() })?;
    let response = tokio::time::timeout(timeouts.connect, sender.send_request(request))
        .await
        .map_err(|_| connect_error(timed_out()))?
        .map_err(http_error)?;
    if !response.status().is_success() {
        return Err(FetchError::Status { url: url.clone(), status: response.status().to_string() });
    }
    let total = response
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let write_error = |source| FetchError::Write { path: dest.to_owned(), source };
    let mut file = tokio::fs::File::create(dest).await.map_err(write_error)?;
    let mut body = response.into_body();
    let mut received = 0u64;
    progress(0, total);
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(FetchError::Cancelled);
        }
        let frame = tokio::time::timeout(timeouts.idle, body.frame())
            .await
            .map_err(|_| FetchError::Idle { url: url.clone(), idle: timeouts.idle })?;
        let Some(frame) = frame else { break };
        if let Ok(data) = frame.map_err(http_error)?.into_data() {
            file.write_all(&data).await.map_err(write_error)?;
            received += data.len() as u64;
            progress(received, total);
        }
    }
    file.flush().await.map_err(write_error)?;
    if let Some(expected) = total
        && received != expected
    {
        return Err(FetchError::Truncated { url: url.clone(), received, expected });
    }
    Ok(received)
}

struct AbortOnDrop(tokio::task::JoinHandle<Result<(), hyper::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(url: &str) -> (SocketAddr, String, String) {
        match parse(url, &[]).unwrap() {
            Source::Http { addr, host, target, .. } => (addr, host, target),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn loopback_http_urls_parse_into_address_host_and_target() {
        assert_eq!(
            http("http://127.0.0.1:8080/images/disk.qcow2"),
            ("127.0.0.1:8080".parse().unwrap(), "127.0.0.1:8080".into(), "/images/disk.qcow2".into())
        );
        assert_eq!(http("http://localhost/disk.img?x=1#frag").2, "/disk.img?x=1");
        assert_eq!(http("http://[::1]:81").0, "[::1]:81".parse().unwrap());
        assert_eq!(http("http://127.0.0.2").2, "/");
    }

    #[test]
    fn other_hosts_and_schemes_are_refused_with_the_reason() {
        for (url, expected) in [
            ("http://10.0.0.1/disk.img", "not a loopback address"),
            ("http://example.com/disk.img", "not an IP address"),
            ("https://127.0.0.1/disk.img", "https is not supported"),
            ("ftp://127.0.0.1/disk.img", "only http://"),
            ("http://user:pw@127.0.0.1/x", "credentials"),
            ("http://127.0.0.1:http/x", "not a number"),
        ] {
            let error = parse(url, &[]).unwrap_err().to_string();
            assert!(error.contains(expected), "{url}: {error}");
        }
    }

    #[test]
    fn file_urls_are_confined_to_the_import_roots() {
        let root = tempfile::tempdir().unwrap();
        let image = root.path().join("my disk.img");
        std::fs::write(&image, b"x").unwrap();
        let url = format!("file://{}", root.path().join("my%20disk.img").display());
        assert_eq!(
            parse(&url, &[root.path().to_owned()]).unwrap(),
            Source::File(image.canonicalize().unwrap())
        );
        let outside = tempfile::tempdir().unwrap();
        let error = parse(&url, &[outside.path().to_owned()]).unwrap_err().to_string();
        assert!(error.contains("outside the directories"), "{error}");
        let error = parse(&url, &[]).unwrap_err().to_string();
        assert!(error.contains("disabled"), "{error}");
        let escape = format!("file://{}/../../etc/passwd", root.path().display());
        assert!(parse(&escape, &[root.path().to_owned()]).is_err());
    }
}
