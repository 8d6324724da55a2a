//! A QEMU process booting the test guest under TCG, and a minimal QMP client.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use vmsnap_guestimage::GuestImage;

pub struct Vm {
    child: Child,
    dir: PathBuf,
}

impl Vm {
    /// Boots `image` with 256 MiB, one blank qcow2 data disk whose serial is
    /// `data` and an empty virtio-scsi controller `scsi0`.
    pub fn boot(image: &GuestImage, dir: &Path) -> Result<Self> {
        Self::boot_with_memory(image, dir, 256)
    }

    /// [`Vm::boot`] with `memory_mib` of memory.
    pub fn boot_with_memory(image: &GuestImage, dir: &Path, memory_mib: u32) -> Result<Self> {
        let disk = blank_qcow2(dir, "data")?;
        let stderr = File::create(dir.join("qemu.stderr"))?;
        let child = Command::new("qemu-system-x86_64")
            .args([
                "-accel",
                "tcg",
                "-m",
                &memory_mib.to_string(),
                "-smp",
                "1",
                "-nodefaults",
                "-display",
                "none",
                "-no-reboot",
            ])
            .arg("-kernel")
            .arg(&image.kernel)
            .arg("-initrd")
            .arg(&image.initrd)
            .args(["-append", &image.cmdline])
            .arg("-serial")
            .arg(format!("file:{}", dir.join("console.log").display()))
            .arg("-drive")
            .arg(format!("if=none,id=d0,file={},format=qcow2", disk.display()))
            .args(["-device", "virtio-blk-pci,drive=d0,serial=data"])
            .args(["-device", "virtio-scsi-pci,id=scsi0"])
            .arg("-chardev")
            .arg(format!("socket,path={},server=on,wait=off,id=qga0", dir.join("qga.sock").display()))
            .args(["-device", "virtio-serial-pci"])
            .args(["-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", dir.join("qmp.sock").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("starting qemu-system-x86_64")?;
        Ok(Self { child, dir: dir.to_path_buf() })
    }

    /// The data disk attached at boot (serial `data`).
    pub fn data_disk(&self) -> PathBuf {
        self.dir.join("data.qcow2")
    }

    pub fn agent_socket(&self) -> PathBuf {
        self.dir.join("qga.sock")
    }

    pub fn console(&self) -> String {
        fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
    }

    /// Hotplugs a blank virtio disk whose serial is `name`.
    pub fn hotplug_disk(&self, name: &str) -> Result<()> {
        self.hotplug(name, json!({"driver": "virtio-blk-pci", "serial": name}))
    }

    /// Hotplugs a blank disk `name` as `device` (`driver`, `serial`...).
    pub fn hotplug(&self, name: &str, mut device: Value) -> Result<()> {
        let file = blank_qcow2(&self.dir, name)?;
        let node = json!({
            "node-name": name,
            "driver": "qcow2",
            "file": {"driver": "file", "filename": file},
        });
        self.qmp("blockdev-add", node)?;
        device["id"] = json!(name);
        device["drive"] = json!(name);
        self.qmp("device_add", device).map(drop)
    }

    /// Unplugs the hotplugged disk `name` (an ACPI eject the guest answers for
    /// virtio-blk; a SCSI disk is gone at once).
    pub fn unplug_disk(&self, name: &str) -> Result<()> {
        self.qmp("device_del", json!({ "id": name })).map(drop)
    }

    /// Waits until the console shows `text`.
    pub fn wait_console(&self, text: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.console().contains(text) {
            if Instant::now() > deadline {
                bail!("the console did not show {text:?} within {timeout:?}:\n{}", self.console());
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Waits for QEMU to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("QEMU still runs {timeout:?} later; console:\n{}", self.console());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs one QMP command on a fresh connection and returns its `return` value.
    pub fn qmp(&self, command: &str, arguments: Value) -> Result<Value> {
        let stream = UnixStream::connect(self.dir.join("qmp.sock")).context("connecting to QMP")?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut writer = stream.try_clone()?;
        let mut reader = BufReader::new(stream);
        let mut read = || -> Result<Value> {
            loop {
                let mut line = String::new();
                anyhow::ensure!(reader.read_line(&mut line)? > 0, "QMP closed the connection");
                let value: Value = serde_json::from_str(&line)?;
                if value.get("event").is_none() {
                    return Ok(value);
                }
            }
        };
        let greeting = read()?;
        anyhow::ensure!(greeting.get("QMP").is_some(), "unexpected QMP greeting {greeting}");
        let mut execute = |name: &str, arguments: Value| -> Result<Value> {
            writeln!(writer, "{}", json!({ "execute": name, "arguments": arguments }))?;
            let reply = read()?;
            reply.get("return").cloned().with_context(|| format!("{name} failed: {reply}"))
        };
        execute("qmp_capabilities", json!({}))?;
        execute(command, arguments)
    }
}

/// The superblock summary (`dumpe2fs -h`) of the ext4 filesystem in a qcow2 image.
pub fn ext4_summary(qcow2: &Path) -> Result<String> {
    let raw = qcow2.with_extension("raw");
    let status = Command::new("qemu-img").args(["convert", "-O", "raw"]).arg(qcow2).arg(&raw).status()?;
    anyhow::ensure!(status.success(), "qemu-img convert {} failed", qcow2.display());
    let output = Command::new("dumpe2fs").arg("-h").arg(&raw).stderr(Stdio::null()).output()?;
    fs::remove_file(&raw)?;
    anyhow::ensure!(output.status.success(), "dumpe2fs -h failed");
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Creates a blank 64 MiB qcow2 image `<name>.qcow2` in `dir`.
fn blank_qcow2(dir: &Path, name: &str) -> Result<PathBuf> {
    let disk = dir.join(format!("{name}.qcow2"));
    let status =
        Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&disk).arg("64M").status()?;
    anyhow::ensure!(status.success(), "qemu-img create {} failed", disk.display());
    Ok(disk)
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
