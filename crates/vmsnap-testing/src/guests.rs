//! The QEMU processes of a vmsnap runtime directory. VMs outlive `vmsnap serve` by design, so a
//! test (or a benchmark lab) that started them kills them when it ends.
//!
//! The node agent runs each VM's QEMU with `-pidfile <runtime>/<vm>/qemu.pid`.

use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The pids in `<runtime>/*/qemu.pid` whose process is alive.
pub fn qemu_pids(runtime: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(runtime) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("qemu.pid")).ok())
        .filter_map(|text| text.trim().parse().ok())
        .filter(|pid| kill(Pid::from_raw(*pid), None).is_ok())
        .collect()
}

/// Kills (SIGKILL) every QEMU of [`qemu_pids`]`(runtime)`.
pub fn kill_qemus(runtime: &Path) {
    for pid in qemu_pids(runtime) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pid_files_of_living_processes_count() {
        let runtime = tempfile::tempdir().unwrap();
        let write = |vm: &str, text: &str| {
            std::fs::create_dir_all(runtime.path().join(vm)).unwrap();
            std::fs::write(runtime.path().join(vm).join("qemu.pid"), text).unwrap();
        };
        write("alive", &format!("{}\n", std::process::id()));
        write("garbage", "not a pid");
        // The largest pid Linux hands out is 2^22; this one cannot be running.
        write("gone", "4194305");
        std::fs::create_dir_all(runtime.path().join("no-pid-file")).unwrap();
        assert_eq!(qemu_pids(runtime.path()), vec![std::process::id() as i32]);
        assert!(qemu_pids(&runtime.path().join("missing")).is_empty());
    }
}
