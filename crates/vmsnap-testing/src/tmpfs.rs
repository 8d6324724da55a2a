//! A small tmpfs for tests that fill a file system up. Mounting needs root: a test that uses it
//! fails (it does not skip) when run as another user.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs mounted at `path` as long as it lives.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount`'s syntax: `48m`) at `path` (created if need be), its root
    /// directory with permissions `mode`. Panics unless it runs as root or if `mount` fails.
    #[track_caller]
    pub fn mount(path: &Path, size: &str, mode: u32) -> Tmpfs {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test mounts a small tmpfs and must run as root; run the test suite as root, e.g. in the project's VM"
        );
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode={mode:04o}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("mount runs");
        assert!(out.status.success(), "cannot mount a tmpfs: {}", String::from_utf8_lossy(&out.stderr));
        Tmpfs { path: path.to_owned() }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Processes killed just before (a server, QEMU) keep the mount busy for a moment.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match Command::new("umount").arg(&self.path).output() {
                Ok(out) if out.status.success() => return,
                Ok(out) if Instant::now() > deadline => {
                    let error = String::from_utf8_lossy(&out.stderr);
                    eprintln!("could not unmount {}: {error}", self.path.display());
                    return;
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(200)),
                Err(error) => {
                    eprintln!("could not run umount: {error}");
                    return;
                }
            }
        }
    }
}
