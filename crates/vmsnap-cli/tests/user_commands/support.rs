//! The environment of the CLI tests: an in-process API server with the real controllers, a fake
//! node agent in lifecycle mode, a fake snapshotter and provisioner; the `vmsnap` binary run
//! against it as a child process.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use vmsnap_api::kubevirt::VirtualMachine;
use vmsnap_api::snapshot::VirtualMachineSnapshot;
use vmsnap_controllers::Controllers;
use vmsnap_testing::TestServer;
use vmsnap_testing::fakes::{FakeAgent, FakeProvisioner, FakeSnapshotter};
use vmsnap_testing::fixtures::{self, VmBuilder, VmiState, create_bound_pvc, create_running_vmi};

pub const WAIT: Duration = Duration::from_secs(30);

/// What a `vmsnap` run printed, and how it exited.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Panics unless the exit code is `code`; returns self for more checks.
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Out {
        assert_eq!(
            self.code, code,
            "unexpected exit code:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

pub struct Env {
    pub server: TestServer,
    pub client: Client,
    pub agent: Arc<FakeAgent>,
    _snapshotter: FakeSnapshotter,
    _provisioner: FakeProvisioner,
    _controllers: Controllers,
}

impl Env {
    pub async fn start() -> Env {
        let server = TestServer::start_with_seed(fixtures::storage_objects()).await.unwrap();
        let client = server.client().await.unwrap();
        let agent = FakeAgent::with_lifecycle(client.clone());
        server.api.set_subresources(agent.clone());
        let snapshotter = FakeSnapshotter::start(client.clone(), Duration::ZERO);
        let provisioner = FakeProvisioner::start(client.clone());
        let controllers = vmsnap_controllers::start(client.clone(), Default::default());
        Env {
            server,
            client,
            agent,
            _snapshotter: snapshotter,
            _provisioner: provisioner,
            _controllers: controllers,
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_vmsnap"));
        cmd.arg("--kubeconfig")
            .arg(self.server.kubeconfig())
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `vmsnap --kubeconfig K ARGS`.
    pub async fn run(&self, args: &[&str]) -> Out {
        collect(self.command(args).output().await.expect("vmsnap runs"))
    }

    /// Runs `vmsnap --kubeconfig K ARGS` with `stdin` piped in.
    pub async fn run_stdin(&self, args: &[&str], stdin: &str) -> Out {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::piped());
        let mut child = cmd.spawn().expect("vmsnap runs");
        let mut input = child.stdin.take().expect("piped stdin");
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        collect(child.wait_with_output().await.expect("vmsnap runs"))
    }

    /// Spawns `vmsnap --kubeconfig K ARGS` with piped stdin and stdout.
    pub fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::piped());
        cmd.spawn().expect("vmsnap runs")
    }

    pub fn vms(&self) -> Api<VirtualMachine> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// A stopped VM `name` with one disk `data` on a bound PVC `NAME-data`.
    pub async fn stopped_vm(&self, name: &str) -> VirtualMachine {
        let claim = format!("{name}-data");
        create_bound_pvc(&self.client, "default", &claim, "local").await.unwrap();
        let vm = VmBuilder::new(name).with_pvc("data", &claim).build();
        self.vms().create(&PostParams::default(), &vm).await.unwrap()
    }

    /// A running VM `name` (runStrategy Always, a Running VMI with a guest agent).
    pub async fn running_vm(&self, name: &str) -> VirtualMachine {
        let claim = format!("{name}-data");
        create_bound_pvc(&self.client, "default", &claim, "local").await.unwrap();
        let vm = VmBuilder::new(name).with_pvc("data", &claim).running().build();
        let vm = self.vms().create(&PostParams::default(), &vm).await.unwrap();
        create_running_vmi(&self.client, &vm, VmiState { agent: true, paused: false }, Vec::new())
            .await
            .unwrap();
        vm
    }

    pub fn snapshots(&self) -> Api<VirtualMachineSnapshot> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Creates snapshot `name` of `vm` through the API, without waiting.
    pub async fn create_snapshot(&self, name: &str, vm: &str) {
        let snap: VirtualMachineSnapshot = serde_json::from_value(json!({
            "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot",
            "metadata": {"name": name},
            "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": vm}}
        }))
        .unwrap();
        self.snapshots().create(&PostParams::default(), &snap).await.unwrap();
    }

    /// Creates snapshot `name` of `vm` through the API and waits until it is ready and the VM unlocked.
    pub async fn ready_snapshot(&self, name: &str, vm: &str) {
        self.create_snapshot(name, vm).await;
        vmsnap_testing::await_value(&self.snapshots(), name, WAIT, |s| {
            (s.status.as_ref()?.ready_to_use == Some(true)).then_some(())
        })
        .await
        .unwrap();
        vmsnap_testing::eventually("the VM to be unlocked", WAIT, || async {
            let vm = self.vms().get(vm).await.ok()?;
            vm.status.as_ref().is_none_or(|s| s.snapshot_in_progress.is_none()).then_some(())
        })
        .await
        .unwrap();
    }
}

fn collect(out: std::process::Output) -> Out {
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
