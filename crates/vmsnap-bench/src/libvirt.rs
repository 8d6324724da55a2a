//! The libvirt baseline: the same test guest (kernel, initramfs, command line, 256 MiB, one vCPU,
//! q35, TCG) as a transient libvirt domain with qcow2 data disks whose serials match vmsnap's and
//! the guest agent on `org.qemu.guest_agent.0`, snapshotted with
//! `virsh snapshot-create-as --disk-only --quiesce --atomic --no-metadata`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use serde_json::{Value, json};
use tokio::process::Command;
use vmsnap_guestimage::GuestImage;

use crate::guest::Guest;

const URI: &str = "qemu:///system";
const INSTALL: &str = "apt-get install -y libvirt-daemon-system libvirt-clients";

/// Makes sure `virsh` reaches a running libvirtd: installs the packages and starts `virtlogd`
/// and `libvirtd` if need be. The error says what to do.
pub(crate) async fn ensure_running() -> Result<(), String> {
    if !succeeds("virsh", &["--version"]).await {
        println!("  (installing libvirt: {INSTALL})");
        let installed = Command::new("apt-get")
            .args(["install", "-y", "-qq", "libvirt-daemon-system", "libvirt-clients"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .await;
        match installed {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                return Err(format!(
                    "libvirt is not installed and `{INSTALL}` failed ({}); install it (after `apt-get update`) and run again",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Err(e) => {
                return Err(format!(
                    "libvirt is not installed and apt-get cannot run ({e}); run `{INSTALL}`"
                ));
            }
        }
    }
    if reachable().await {
        return Ok(());
    }
    for daemon in ["virtlogd", "libvirtd"] {
        if !succeeds("pgrep", &["-x", daemon]).await && !succeeds(daemon, &["-d"]).await {
            return Err(format!("cannot start `{daemon} -d`; start it by hand (as root) and run again"));
        }
    }
    for _ in 0..50 {
        if reachable().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!(
        "libvirtd does not answer on {URI} (`virsh -c {URI} version` fails); start `virtlogd -d` and `libvirtd -d` as root and run again"
    ))
}

async fn reachable() -> bool {
    succeeds("virsh", &["-c", URI, "version"]).await
}

async fn succeeds(program: &str, args: &[&str]) -> bool {
    let run = Command::new(program).args(args).stdin(Stdio::null()).output();
    matches!(tokio::time::timeout(Duration::from_secs(20), run).await, Ok(Ok(out)) if out.status.success())
}

/// `virsh -c qemu:///system ARGS`; stdout, or an error with stderr.
async fn virsh(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("virsh")
        .arg("-c")
        .arg(URI)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("run virsh")?;
    if !out.status.success() {
        bail!("virsh {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A transient libvirt domain of the test guest and its files; destroyed and removed on drop.
pub(crate) struct Domain {
    name: String,
    dir: Option<tempfile::TempDir>,
}

impl Domain {
    /// Defines and starts a domain with `disks` blank qcow2 data disks of `size_gib` each.
    pub async fn start(
        scratch: &Path,
        image: &GuestImage,
        name: &str,
        disks: usize,
        size_gib: u64,
    ) -> anyhow::Result<Domain> {
        let dir = tempfile::Builder::new().prefix("vb-libvirt").tempdir_in(scratch)?;
        // libvirt runs QEMU as another user, which must reach the files.
        set_mode(dir.path(), 0o755)?;
        let kernel = dir.path().join("vmlinuz");
        let initrd = dir.path().join("initrd");
        std::fs::copy(&image.kernel, &kernel).context("copy the guest kernel")?;
        std::fs::copy(&image.initrd, &initrd).context("copy the guest initramfs")?;
        let mut disk_xml = String::new();
        for i in 0..disks {
            let path = dir.path().join(format!("d{i}.qcow2"));
            let out = Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2"])
                .arg(&path)
                .arg(format!("{size_gib}G"))
                .output()
                .await
                .context("run qemu-img")?;
            if !out.status.success() {
                bail!("qemu-img create failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            let target = char::from(b'a' + i as u8);
            disk_xml.push_str(&format!(
                "<disk type='file' device='disk'><driver name='qemu' type='qcow2' discard='unmap'/>\
                 <source file='{}'/><target dev='vd{target}' bus='virtio'/><serial>d{i}</serial></disk>\n",
                path.display()
            ));
        }
        let xml = format!(
            "<domain type='qemu'>\n<name>{name}</name>\n<memory unit='MiB'>256</memory>\n<vcpu>1</vcpu>\n\
             <os><type arch='x86_64' machine='q35'>hvm</type><kernel>{}</kernel><initrd>{}</initrd>\
             <cmdline>{}</cmdline></os>\n<features><acpi/></features>\n<on_poweroff>destroy</on_poweroff>\n\
             <devices>\n<emulator>/usr/bin/qemu-system-x86_64</emulator>\n{disk_xml}\
             <channel type='unix'><source mode='bind'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel>\n\
             <serial type='file'><source path='{}'/></serial>\n<memballoon model='none'/>\n</devices>\n</domain>\n",
            kernel.display(),
            initrd.display(),
            image.cmdline,
            dir.path().join("console.log").display()
        );
        let xml_path = dir.path().join("domain.xml");
        std::fs::write(&xml_path, xml)?;
        virsh(&["create", &xml_path.display().to_string()]).await?;
        let domain = Domain { name: name.to_owned(), dir: Some(dir) };
        domain.await_agent().await?;
        Ok(domain)
    }

    async fn await_agent(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        let ping = r#"{"execute":"guest-ping"}"#;
        while virsh(&["qemu-agent-command", &self.name, "--timeout", "5", ping]).await.is_err() {
            if started.elapsed() > Duration::from_secs(300) {
                bail!("the guest agent of libvirt domain {} did not answer within 300 s", self.name);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// Takes a quiesced, atomic, disk-only external snapshot; returns how long virsh took.
    pub async fn snapshot(&self, snapshot: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        virsh(&[
            "snapshot-create-as",
            &self.name,
            snapshot,
            "--disk-only",
            "--quiesce",
            "--atomic",
            "--no-metadata",
        ])
        .await?;
        Ok(started.elapsed())
    }

    /// Destroys the domain and removes its files.
    pub async fn destroy(mut self) {
        let _ = virsh(&["destroy", &self.name]).await;
        self.dir.take();
    }

    async fn agent(&self, command: Value) -> anyhow::Result<Value> {
        let out = virsh(&["qemu-agent-command", &self.name, "--timeout", "30", &command.to_string()]).await?;
        let reply: Value = serde_json::from_str(&out).context("the guest agent's reply")?;
        Ok(reply["return"].clone())
    }
}

impl Guest for Domain {
    async fn sh(&self, script: &str, timeout: Duration) -> anyhow::Result<String> {
        let exec = json!({"execute": "guest-exec",
                          "arguments": {"path": "/bin/sh", "arg": ["-c", script], "capture-output": true}});
        let pid = self.agent(exec).await?["pid"].as_i64().context("guest-exec returned no pid")?;
        let started = Instant::now();
        let mut pause = Duration::from_millis(10);
        loop {
            let status =
                self.agent(json!({"execute": "guest-exec-status", "arguments": {"pid": pid}})).await?;
            if status["exited"] == true {
                let text = |key: &str| {
                    let data = status[key].as_str().unwrap_or_default();
                    let bytes = base64::engine::general_purpose::STANDARD.decode(data).unwrap_or_default();
                    String::from_utf8_lossy(&bytes).into_owned()
                };
                if status["exitcode"] != 0 {
                    bail!(
                        "`{script}` in {} exited {}: {}{}",
                        self.name,
                        status["exitcode"],
                        text("out-data"),
                        text("err-data")
                    );
                }
                return Ok(text("out-data"));
            }
            if started.elapsed() > timeout {
                bail!("`{script}` in {} did not finish within {timeout:?}", self.name);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        if self.dir.is_some() {
            let _ = std::process::Command::new("virsh")
                .args(["-c", URI, "destroy", &self.name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}
