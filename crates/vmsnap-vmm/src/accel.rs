//! Choosing the accelerator: KVM when it works, TCG otherwise.
//!
//! On some hosts `/dev/kvm` exists but KVM guests hang at boot, so `auto`
//! cannot trust the device node: it boots the test guest under KVM and waits
//! for its ready line on the console. The answer is cached per boot of the
//! host (keyed by `/proc/sys/kernel/random/boot_id`), so the probe costs a few
//! seconds once, not at every agent start.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use vmsnap_guestimage::GuestImage;
use vmsnap_qemu::client::QmpOptions;
use vmsnap_qemu::qmp::commands::Cont;

use super::cmdline::{ProcessMode, qemu_args};
use super::error::{PathIoError, ProbeError};
use super::paths::RuntimePaths;
use super::process::connect_qmp;
use super::spec::{Boot, KernelBoot, LaunchSpec};

/// The accelerator a VM runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation through `/dev/kvm`.
    Kvm,
    /// QEMU's software emulation: slower, works everywhere.
    Tcg,
}

impl Accel {
    /// The name QEMU uses (`accel=`).
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The accelerator setting: `auto` probes, the others force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelSetting {
    /// KVM if a probe boot under KVM works, else TCG.
    #[default]
    Auto,
    /// KVM, without probing.
    Kvm,
    /// TCG.
    Tcg,
}

impl fmt::Display for AccelSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccelSetting::Auto => "auto",
            AccelSetting::Kvm => "kvm",
            AccelSetting::Tcg => "tcg",
        })
    }
}

/// A setting other than `auto`, `kvm` or `tcg`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("accelerator setting {0:?} is not valid; use auto, kvm or tcg")]
pub struct ParseAccelSettingError(String);

impl FromStr for AccelSetting {
    type Err = ParseAccelSettingError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(AccelSetting::Auto),
            "kvm" => Ok(AccelSetting::Kvm),
            "tcg" => Ok(AccelSetting::Tcg),
            _ => Err(ParseAccelSettingError(text.to_owned())),
        }
    }
}

/// How the probe runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOptions {
    /// The QEMU binary.
    pub qemu_binary: PathBuf,
    /// How long the probe boot may take to print `marker`. A KVM that needs
    /// longer than this is no faster than TCG anyway.
    pub timeout: Duration,
    /// The console line that proves the guest booted: the test guest's ready line.
    pub marker: String,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            qemu_binary: PathBuf::from("qemu-system-x86_64"),
            timeout: Duration::from_secs(8),
            marker: "vmsnap-guest: ready".into(),
        }
    }
}

/// What [`probe_accelerator`] decided, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeOutcome {
    /// The accelerator to use.
    pub accel: Accel,
    /// Why, in a sentence for the log.
    pub reason: String,
    /// Whether the answer came from the cache of an earlier probe in this host boot.
    #[serde(skip)]
    pub cached: bool,
}

/// The cached answer of a probe.
#[derive(Debug, Serialize, Deserialize)]
struct CachedProbe {
    boot_id: String,
    qemu_binary: PathBuf,
    accel: Accel,
    reason: String,
    probed_at_unix: u64,
}

/// Decides the accelerator for `setting`: `tcg` and `kvm` are taken as given
/// (`kvm` fails when `/dev/kvm` cannot be opened); `auto` uses the answer
/// cached in `cache_dir` for this host boot, or boots `guest_image` under KVM
/// and takes KVM only if the guest prints its ready line within
/// `options.timeout`. Concurrent probes with the same `cache_dir` run one at a
/// time, the others reading the first one's answer. Logs the decision.
pub async fn probe_accelerator(
    setting: AccelSetting,
    cache_dir: &Path,
    guest_image: &GuestImage,
    options: &ProbeOptions,
) -> Result<ProbeOutcome, ProbeError> {
    let outcome = match setting {
        AccelSetting::Tcg => {
            ProbeOutcome { accel: Accel::Tcg, reason: "the setting is tcg".into(), cached: false }
        }
        AccelSetting::Kvm => match open_kvm() {
            Ok(()) => ProbeOutcome { accel: Accel::Kvm, reason: "the setting is kvm".into(), cached: false },
            Err(reason) => return Err(ProbeError::KvmUnavailable { reason }),
        },
        AccelSetting::Auto => probe_cached(cache_dir, guest_image, options).await?,
    };
    let source = if outcome.cached { " (cached for this host boot)" } else { "" };
    tracing::info!(accel = %outcome.accel, %setting, "accelerator: {} because {}{source}", outcome.accel, outcome.reason);
    Ok(outcome)
}

async fn probe_cached(
    cache_dir: &Path,
    image: &GuestImage,
    options: &ProbeOptions,
) -> Result<ProbeOutcome, ProbeError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| ProbeError::Io(PathIoError { what, path, source })
    };
    std::fs::create_dir_all(cache_dir).map_err(io("create", cache_dir))?;
    let lock_path = cache_dir.join("accel-probe.lock");
    let lock_file = std::fs::File::create(&lock_path).map_err(io("create", &lock_path))?;
    // flock blocks, so take it off the async threads; it is released when `_lock` drops.
    let _lock = tokio::task::spawn_blocking(move || {
        nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| std::io::Error::from(errno))
    })
    .await
    .map_err(|join| std::io::Error::other(join.to_string()))
    .and_then(|locked| locked)
    .map_err(io("lock", &lock_path))?;

    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default();
    let cache_path = cache_dir.join("accel-probe.json");
    let cached =
        std::fs::read(&cache_path).ok().and_then(|bytes| serde_json::from_slice::<CachedProbe>(&bytes).ok());
    if let Some(cached) =
        cached.filter(|c| !boot_id.is_empty() && c.boot_id == boot_id && c.qemu_binary == options.qemu_binary)
    {
        return Ok(ProbeOutcome { accel: cached.accel, reason: cached.reason, cached: true });
    }

    let outcome = match open_kvm() {
        Err(reason) => ProbeOutcome { accel: Accel::Tcg, reason, cached: false },
        Ok(()) => probe_boot(cache_dir, image, options).await?,
    };
    let record = CachedProbe {
        boot_id,
        qemu_binary: options.qemu_binary.clone(),
        accel: outcome.accel,
        reason: outcome.reason.clone(),
        probed_at_unix: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
    };
    let temp = cache_dir.join("accel-probe.json.tmp");
    let bytes = serde_json::to_vec_pretty(&record).unwrap_or_default();
    std::fs::write(&temp, bytes).map_err(io("write", &temp))?;
    std::fs::rename(&temp, &cache_path).map_err(io("write", &cache_path))?;
    Ok(outcome)
}

/// Whether `/dev/kvm` can be opened; the error says why not.
fn open_kvm() -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(|error| format!("/dev/kvm cannot be opened ({error})"))
}

/// Boots `image` under KVM in a scratch directory and watches its console for the marker.
async fn probe_boot(
    cache_dir: &Path,
    image: &GuestImage,
    options: &ProbeOptions,
) -> Result<ProbeOutcome, ProbeError> {
    let scratch = tempfile::Builder::new().prefix("probe.").tempdir_in(cache_dir).map_err(|source| {
        ProbeError::Io(PathIoError { what: "create a directory in", path: cache_dir.to_path_buf(), source })
    })?;
    let paths = RuntimePaths::new(scratch.path());
    let mut spec = LaunchSpec::new("accel-probe", 256, Boot::Kernel(KernelBoot::from_guest_image(image, "")));
    spec.hotplug_slots = 0;
    let args = qemu_args(&spec, Accel::Kvm, &paths, ProcessMode::Foreground).map_err(ProbeError::Spec)?;
    let log = std::fs::File::create(paths.qemu_log())
        .map_err(|source| ProbeError::Io(PathIoError { what: "create", path: paths.qemu_log(), source }))?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&options.qemu_binary)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ProbeError::Spawn { binary: options.qemu_binary.clone(), source })?;

    let deadline = started + options.timeout;
    let qmp_options = QmpOptions {
        connect_timeout: options.timeout,
        command_timeout: Duration::from_secs(2),
        ..QmpOptions::default()
    };
    // Keep the connection until the probe ends: dropping it would not stop
    // QEMU, but there is no reason to make it wait for a new client either.
    let mut monitor = None;
    let qmp_socket = paths.qmp_socket();
    let resumed = tokio::select! {
        connected = connect_qmp(&qmp_socket, qmp_options) => match connected {
            Ok(qmp) => qmp
                .execute::<Cont>(())
                .await
                .map(|_| monitor = Some(qmp))
                .map_err(|e| format!("QEMU's monitor failed ({e})")),
            Err(e) => Err(format!("QEMU did not bring up its monitor within {:?} ({e})", options.timeout)),
        },
        // QEMU that exits at once (no KVM support, bad option) need not cost the whole timeout.
        status = child.wait() => Err(exited(status, &paths)),
    };
    let verdict = match resumed {
        Err(why) => Err(why),
        Ok(()) => loop {
            let console = std::fs::read_to_string(paths.console_log()).unwrap_or_default();
            if console.contains(&options.marker) {
                break Ok(started.elapsed());
            }
            if let Ok(Some(status)) = child.try_wait() {
                break Err(exited(Ok(status), &paths));
            }
            if Instant::now() >= deadline {
                let last =
                    console.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_owned();
                let seen = if last.is_empty() { "nothing".to_owned() } else { format!("{last:?} last") };
                break Err(format!(
                    "it did not print {:?} within {:?} (the console showed {seen})",
                    options.marker, options.timeout
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        },
    };
    // A hung KVM guest still dies to SIGKILL; wait so no process outlives the probe.
    drop(monitor);
    let _ = child.start_kill();
    let _ = child.wait().await;
    Ok(match verdict {
        Ok(took) => ProbeOutcome {
            accel: Accel::Kvm,
            reason: format!(
                "a probe boot under KVM printed {:?} in {:.1} s",
                options.marker,
                took.as_secs_f64()
            ),
            cached: false,
        },
        Err(why) => ProbeOutcome {
            accel: Accel::Tcg,
            reason: format!("/dev/kvm exists but a probe boot under KVM failed: {why}"),
            cached: false,
        },
    })
}

/// "QEMU exited with ...: <its stderr on one line>".
fn exited(status: std::io::Result<std::process::ExitStatus>, paths: &RuntimePaths) -> String {
    let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
    let stderr = std::fs::read_to_string(paths.qemu_log()).unwrap_or_default();
    let stderr: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    format!("QEMU exited with {status}: {}", stderr.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_case_insensitively_and_print_back() {
        for (text, setting) in
            [("auto", AccelSetting::Auto), ("KVM", AccelSetting::Kvm), (" tcg ", AccelSetting::Tcg)]
        {
            assert_eq!(text.parse::<AccelSetting>().unwrap(), setting);
        }
        assert_eq!(AccelSetting::Kvm.to_string(), "kvm");
        let error = "hvf".parse::<AccelSetting>().unwrap_err();
        assert!(error.to_string().contains("\"hvf\""), "{error}");
    }

    #[tokio::test]
    async fn tcg_setting_is_taken_without_probing() {
        let dir = tempfile::tempdir().unwrap();
        let image = GuestImage {
            kernel: "/nonexistent/vmlinuz".into(),
            initrd: "/nonexistent/initrd".into(),
            cmdline: String::new(),
            recipe_hash: String::new(),
            image_name: vmsnap_guestimage::TEST_GUEST_IMAGE,
        };

        let outcome =
            probe_accelerator(AccelSetting::Tcg, dir.path(), &image, &ProbeOptions::default()).await.unwrap();

        assert_eq!(outcome.accel, Accel::Tcg);
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "a forced setting writes no cache");
    }
}
