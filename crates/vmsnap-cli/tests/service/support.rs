//! `vmsnap serve` run as a system service would be: as a user of its own, stopped with SIGTERM,
//! its log outside its data directory (the data directory holds vmsnap's files only).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use vmsnap_testing::{Kubectl, KubectlOutput};

/// The binary under test.
pub fn vmsnap_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vmsnap"))
}

/// Fails the test unless it runs as root: it creates users, changes owners or mounts file systems.
#[track_caller]
pub fn require_root(why: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test must run as root ({why}); run the test suite as root, e.g. in the project's VM"
    );
}

/// A user account.
#[derive(Debug, Clone)]
pub struct Account {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary group.
    pub gid: u32,
}

impl Account {
    fn lookup(name: &str) -> Option<Account> {
        let user = nix::unistd::User::from_name(name).ok()??;
        Some(Account { name: name.to_owned(), uid: user.uid.as_raw(), gid: user.gid.as_raw() })
    }
}

/// The unprivileged system user the tests run `vmsnap serve` as, created with `useradd` the first
/// time (kept afterwards: a later run reuses it).
pub fn service_user() -> Account {
    static USER: OnceLock<Account> = OnceLock::new();
    USER.get_or_init(|| {
        const NAME: &str = "vmsnap-svctest";
        require_root("it creates a system user to run vmsnap serve as");
        if let Some(account) = Account::lookup(NAME) {
            return account;
        }
        let out = Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"])
            .args(["--shell", "/usr/sbin/nologin", NAME])
            .output()
            .expect("useradd runs");
        assert!(out.status.success(), "useradd {NAME} failed: {}", String::from_utf8_lossy(&out.stderr));
        Account::lookup(NAME).expect("the user useradd made")
    })
    .clone()
}

/// `nobody`: another unprivileged user, the one that must not read the service user's data.
pub fn other_user() -> Account {
    let account = Account::lookup("nobody").expect("the system has the user nobody");
    assert_ne!(account.uid, service_user().uid);
    account
}

/// Runs `program ARGS` as `account` (uid, gid, no supplementary groups).
pub fn run_as(account: &Account, program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .uid(account.uid)
        .gid(account.gid)
        .env("HOME", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} as {}: {e}", account.name))
}

/// A directory under `/tmp` (short, for QEMU's socket paths) that others may traverse, removed at
/// the end.
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// A new one, mode 0755.
    pub fn new(prefix: &str) -> TestDir {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp").expect("a test directory");
        let path = dir.keep();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        TestDir { path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A `vmsnap serve` process.
pub struct Serve {
    child: Option<Child>,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// `127.0.0.1:PORT` or what `--listen` was given.
    pub listen: String,
    /// Where its stdout and stderr go (outside the data directory, which may be full).
    pub log_path: PathBuf,
    /// The log and kubectl's cache.
    side: tempfile::TempDir,
    /// Where the log of the current run starts.
    run_start: usize,
    user: Option<Account>,
    extra: Vec<String>,
}

impl Serve {
    /// Starts `vmsnap serve --data-dir DATA --listen LISTEN EXTRA...` as `user` (else as the test's
    /// user) and waits until it says where it serves.
    pub fn start(data_dir: &Path, listen: &str, user: Option<&Account>, extra: &[&str]) -> Serve {
        let mut serve = Serve::spawn(data_dir, listen, user, extra);
        serve.await_serving();
        serve
    }

    /// Starts it without waiting (for a start that is expected to fail).
    pub fn spawn(data_dir: &Path, listen: &str, user: Option<&Account>, extra: &[&str]) -> Serve {
        let side = tempfile::Builder::new().prefix("vmsnap-serve-").tempdir().expect("a log directory");
        let mut serve = Serve {
            child: None,
            data_dir: data_dir.to_owned(),
            listen: listen.to_owned(),
            log_path: side.path().join("serve.log"),
            side,
            run_start: 0,
            user: user.cloned(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        serve.launch();
        serve
    }

    fn launch(&mut self) {
        self.run_start = self.log().len();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).unwrap();
        // Under a service manager's usual soft limit of open files (systemd's 1024), which vmsnap
        // raises; prlimit sets it and execs vmsnap (same pid).
        let mut command = Command::new("prlimit");
        command
            .arg("--nofile=1024:")
            .arg(vmsnap_binary())
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(&self.listen)
            .args(&self.extra)
            .env("VMSNAP_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(user) = &self.user {
            command.uid(user.uid).gid(user.gid).env("HOME", "/nonexistent");
        }
        self.child = Some(command.spawn().expect("start vmsnap serve"));
    }

    /// Waits until it printed where it serves; panics with its log if it exits first.
    pub fn await_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.run_log().contains("vmsnap is serving on") {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("vmsnap serve exited with {status}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("vmsnap serve did not start within 60 s:\n{}", self.log());
    }

    /// Waits for it to exit by itself (a refused start); returns its exit code.
    pub fn await_exit(&mut self) -> i32 {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "vmsnap serve did not exit:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it with SIGTERM, as a service manager does, and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let _ = child.wait();
        }
    }

    /// Stops it and starts it again with the same arguments.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
        self.await_serving();
    }

    /// The soft and hard limits of open files of the running process, from `/proc/PID/limits`.
    pub fn open_files_limits(&self) -> (String, String) {
        let pid = self.child.as_ref().expect("running").id();
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("a limit of open files");
        let mut values = line["Max open files".len()..].split_whitespace();
        (values.next().unwrap().to_owned(), values.next().unwrap().to_owned())
    }

    /// What it printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// What the current run printed so far.
    pub fn run_log(&self) -> String {
        self.log().get(self.run_start..).unwrap_or_default().to_owned()
    }

    /// Its kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("kubeconfig")
    }

    /// `kubectl ARGS` (as the test's user, root, which may read the kubeconfig), with its cache
    /// outside the data directory (which holds vmsnap's files only).
    pub fn kubectl(&self, args: &[&str]) -> KubectlOutput {
        self.kubectl_with_stdin(args, None)
    }

    /// `kubectl ARGS` with `stdin`.
    pub fn kubectl_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> KubectlOutput {
        Kubectl::with_cache(&self.kubeconfig(), &self.side.path().join("kubectl-cache"))
            .run_with_stdin(args, stdin)
    }

    /// `kubectl wait OBJECT --for=CONDITION --timeout=TIMEOUT` (`object` as kubectl takes it, such
    /// as `["pvc", "scratch"]`), failing the test with kubectl's error and the log unless it held.
    #[track_caller]
    pub fn wait_for(&self, object: [&str; 2], condition: &str, timeout: std::time::Duration, what: &str) {
        let (condition, timeout) =
            (format!("--for={condition}"), format!("--timeout={}s", timeout.as_secs()));
        let waited = self.kubectl(&["wait", object[0], object[1], &condition, &timeout]);
        assert_eq!(waited.code, 0, "{what} did not happen: {}\n{}", waited.stderr, self.log());
    }

    /// `kubectl apply -f -` of `yaml`.
    #[track_caller]
    pub fn apply(&self, yaml: &str) {
        self.kubectl_with_stdin(&["apply", "-f", "-"], Some(yaml)).ok();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The VMs outlive vmsnap by design; a test's VMs do not outlive the test.
        vmsnap_testing::guests::kill_qemus(&self.data_dir.join("vms"));
    }
}

/// A port free on every address.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0").expect("bind").local_addr().expect("addr").port()
}
