//! [`Agent`]: the node agent as a whole: its configuration, the VMIs it
//! runs, its controllers, and the helpers the CLI builds `exec` and `console` on.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use tokio::task::JoinHandle;
use vmsnap_guestimage::{GuestImage, TEST_GUEST_IMAGE, ensure_built, find_built};
use vmsnap_storage::VolumeDriver;

use crate::error::{AgentStartError, ConsoleError, ExecError};
use crate::kubevirt::REPORTER;
use crate::registry::Registry;
use crate::running::{Deps, RunningVmi};
use crate::volumes::VolumeError;
use crate::{recover, vm_controller, vmi_controller};
use vmsnap_vmm::{
    Accel, AccelSetting, Boot, ExecOutput, KernelBoot, ProbeOptions, Timeouts, Vmm, VmmConfig,
    probe_accelerator,
};

/// How the agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// One subdirectory per VMI (named by its uid) holds its QEMU's sockets,
    /// logs and ephemeral disks. Keep the path short: the sockets in it must
    /// fit the 107 bytes of a unix socket address (57 bytes leave room for a uid).
    pub runtime_dir: PathBuf,
    /// The guest image cache (`vmsnap.local/...` kernel boot and container disk images).
    pub image_cache: PathBuf,
    /// The accelerator setting (`auto` probes KVM once per host boot).
    pub accel: AccelSetting,
    /// The node name reported in `status.nodeName` and on events.
    pub node_name: String,
}

/// The node agent: runs the VMIs of its VirtualMachines as QEMU processes,
/// keeps their status, and serves the VM and VMI subresources
/// ([`vmsnap_contracts::subresources::VmSubresources`]) and the storage driver's live block
/// operations ([`vmsnap_storage::LiveBlockOps`]).
pub struct Agent {
    pub(crate) client: Client,
    pub(crate) driver: Arc<dyn VolumeDriver>,
    pub(crate) config: AgentConfig,
    pub(crate) registry: Arc<Registry>,
    pub(crate) recorder: Recorder,
    vmm: tokio::sync::OnceCell<Vmm>,
    guest_image: tokio::sync::Mutex<Option<GuestImage>>,
    controllers: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("config", &self.config).finish_non_exhaustive()
    }
}

/// The runtime's deadlines: the default ones, with a short agent ping so that
/// `AgentConnected` follows a hung guest agent within about two seconds.
fn timeouts() -> Timeouts {
    Timeouts { guest_agent_ping: Duration::from_millis(1500), ..Timeouts::default() }
}

impl Agent {
    /// Re-attaches to QEMU processes still running from before (like libvirt),
    /// reconciles their objects, and starts the controllers.
    pub async fn start(
        client: Client,
        driver: Arc<dyn VolumeDriver>,
        config: AgentConfig,
    ) -> Result<Arc<Agent>, AgentStartError> {
        std::fs::create_dir_all(&config.runtime_dir)
            .map_err(|source| AgentStartError::RuntimeDir { path: config.runtime_dir.clone(), source })?;
        let reporter = Reporter { controller: REPORTER.into(), instance: Some(config.node_name.clone()) };
        let agent = Arc::new(Agent {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            driver,
            config,
            registry: Arc::new(Registry::default()),
            vmm: tokio::sync::OnceCell::new(),
            guest_image: tokio::sync::Mutex::new(None),
            controllers: Mutex::new(Vec::new()),
        });
        recover::recover(&agent).await?;
        let tasks = vec![
            tokio::spawn(vmi_controller::run(agent.clone())),
            tokio::spawn(vm_controller::run(agent.clone())),
        ];
        agent.controllers.lock().unwrap_or_else(|p| p.into_inner()).extend(tasks);
        tracing::info!(node = %agent.config.node_name, dir = %agent.config.runtime_dir.display(), "node agent started");
        Ok(agent)
    }

    /// Stops the controllers and lets go of every QEMU process without
    /// stopping it, as an agent that exits would; a new [`Agent::start`]
    /// re-attaches to them. Returns once no connection to any QEMU is left open.
    pub async fn shutdown(&self) {
        let controllers = std::mem::take(&mut *self.controllers.lock().unwrap_or_else(|p| p.into_inner()));
        for task in &controllers {
            task.abort();
        }
        for task in controllers {
            let _ = task.await;
        }
        for vmi in self.registry.drain() {
            vmi.abort_tasks().await;
        }
        tracing::info!("node agent stopped; its VMs keep running");
    }

    /// The configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Runs `command` (the program, then its arguments) in the guest of VMI
    /// `namespace/name` through the guest agent, and waits up to `timeout`
    /// for it to exit (`vmsnap exec VM -- CMD`).
    pub async fn exec(
        &self,
        namespace: &str,
        name: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, ExecError> {
        self.exec_with_input(namespace, name, command, None, timeout).await
    }

    /// [`Agent::exec`], with `stdin` given to the command as its standard input.
    pub async fn exec_with_input(
        &self,
        namespace: &str,
        name: &str,
        command: &[String],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecOutput, ExecError> {
        let vmi = self
            .running(namespace, name)
            .ok_or_else(|| ExecError::NotRunning { namespace: namespace.into(), name: name.into() })?;
        let (program, args) = command.split_first().ok_or(ExecError::NoCommand)?;
        let mut request = vmsnap_vmm::ExecArgs::new(program, args);
        if let Some(stdin) = stdin {
            request = request.input(stdin);
        }
        Ok(vmi.handle.exec_with(request, timeout).await?)
    }

    /// The interactive serial console socket of VMI `namespace/name` (one
    /// client at a time; `vmsnap console VM`).
    pub fn console_socket(&self, namespace: &str, name: &str) -> Result<PathBuf, ConsoleError> {
        self.running(namespace, name)
            .map(|vmi| vmi.handle.console_socket_path())
            .ok_or_else(|| ConsoleError::NotRunning { namespace: namespace.into(), name: name.into() })
    }

    /// The serial console log of VMI `namespace/name` (everything the console printed).
    pub fn console_log(&self, namespace: &str, name: &str) -> Result<PathBuf, ConsoleError> {
        self.running(namespace, name)
            .map(|vmi| vmi.handle.console_log_path())
            .ok_or_else(|| ConsoleError::NotRunning { namespace: namespace.into(), name: name.into() })
    }

    /// The QEMU pid of VMI `namespace/name`, if it runs on this agent.
    pub fn qemu_pid(&self, namespace: &str, name: &str) -> Option<i32> {
        self.running(namespace, name).map(|vmi| vmi.handle.pid())
    }

    pub(crate) fn running(&self, namespace: &str, name: &str) -> Option<Arc<RunningVmi>> {
        self.registry.get_by_name(namespace, name)
    }

    pub(crate) fn deps(&self) -> Deps {
        Deps {
            client: self.client.clone(),
            recorder: self.recorder.clone(),
            registry: Arc::downgrade(&self.registry),
        }
    }

    /// The runtime directory of the VMI with this uid.
    pub(crate) fn runtime_dir_of(&self, uid: &str) -> PathBuf {
        self.config.runtime_dir.join(uid)
    }

    /// A runtime for re-attaching (the accelerator of an attached VM is its launch record's).
    pub(crate) fn attach_vmm(&self) -> Vmm {
        Vmm::new(VmmConfig { timeouts: timeouts(), ..VmmConfig::new(Accel::Tcg) })
    }

    /// The runtime for launching, with the accelerator decided on first use.
    pub(crate) async fn vmm(&self) -> &Vmm {
        self.vmm
            .get_or_init(|| async {
                let accel = match self.config.accel {
                    AccelSetting::Tcg => Accel::Tcg,
                    AccelSetting::Kvm => Accel::Kvm,
                    AccelSetting::Auto => self.probe().await,
                };
                Vmm::new(VmmConfig { timeouts: timeouts(), ..VmmConfig::new(accel) })
            })
            .await
    }

    async fn probe(&self) -> Accel {
        let image = match self.guest_image().await {
            Ok(image) => image,
            Err(error) => {
                tracing::warn!(%error, "no guest image to probe KVM with; using TCG");
                return Accel::Tcg;
            }
        };
        let cache = self.config.runtime_dir.join(".accel");
        match probe_accelerator(AccelSetting::Auto, &cache, &image, &ProbeOptions::default()).await {
            Ok(outcome) => outcome.accel,
            Err(error) => {
                tracing::warn!(%error, "the accelerator probe failed; using TCG");
                Accel::Tcg
            }
        }
    }

    /// The locally built test guest (built on first use if the cache has none).
    async fn guest_image(&self) -> Result<GuestImage, String> {
        let mut cached = self.guest_image.lock().await;
        if let Some(image) = cached.as_ref() {
            return Ok(image.clone());
        }
        let cache = self.config.image_cache.clone();
        let image = tokio::task::spawn_blocking(move || match find_built(&cache) {
            Some(image) => Ok(image),
            None => ensure_built(&cache, &mut |line| tracing::info!("guest image: {line}")),
        })
        .await
        .map_err(|error| error.to_string())?
        .map_err(|error| error.to_string())?;
        *cached = Some(image.clone());
        Ok(image)
    }

    /// The boot of a VMI: the test guest's kernel for `kernelBoot` with its
    /// image name, disk boot without `kernelBoot`.
    pub(crate) async fn boot(
        &self,
        firmware: Option<&vmsnap_api::kubevirt::Firmware>,
    ) -> Result<Boot, VolumeError> {
        let Some(kernel_boot) = firmware.and_then(|f| f.kernel_boot.as_ref()) else { return Ok(Boot::Disk) };
        let image = kernel_boot.container.as_ref().map(|c| c.image.as_str()).unwrap_or_default();
        let (repository, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
        let (wanted_repository, wanted_tag) =
            TEST_GUEST_IMAGE.rsplit_once(':').unwrap_or((TEST_GUEST_IMAGE, ""));
        if repository != wanted_repository || tag != wanted_tag {
            return Err(VolumeError::Image(format!(
                "kernel boot image {image:?} cannot be pulled: the embedded agent resolves only {TEST_GUEST_IMAGE}"
            )));
        }
        let guest = self.guest_image().await.map_err(|error| {
            VolumeError::Image(format!("kernel boot image {image} could not be built: {error}"))
        })?;
        Ok(Boot::Kernel(KernelBoot::from_guest_image(
            &guest,
            kernel_boot.kernel_args.as_deref().unwrap_or(""),
        )))
    }
}
