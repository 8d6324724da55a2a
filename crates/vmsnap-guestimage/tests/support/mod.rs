//! Shared by the tests that boot the test guest.

pub mod qga;
pub mod vm;

use std::time::Instant;

use anyhow::Result;
use vmsnap_guestimage::{BuildError, GuestImage, ensure_built, test_cache_root};

/// Builds (or finds) the test guest in the shared test cache, or returns `None`
/// after saying why when this machine lacks what it needs. With
/// `VMSNAP_REQUIRE_QEMU=1`, a missing prerequisite fails the test instead.
pub fn test_guest() -> Result<Option<GuestImage>> {
    for program in ["qemu-system-x86_64", "qemu-img"] {
        if which(program).is_none() {
            return missing(&format!(
                "{program} is not installed (apt-get install qemu-system-x86 qemu-utils)"
            ));
        }
    }
    let started = Instant::now();
    match ensure_built(&test_cache_root(), &mut |line| println!("guestimage: {line}")) {
        Ok(image) => {
            println!("guestimage: ensure_built took {:.2} s", started.elapsed().as_secs_f64());
            Ok(Some(image))
        }
        Err(
            error @ (BuildError::ProgramMissing { .. }
            | BuildError::PackageNotInstalled { .. }
            | BuildError::KernelNotFound { .. }),
        ) => missing(&error.to_string()),
        Err(error) => Err(error.into()),
    }
}

fn missing(reason: &str) -> Result<Option<GuestImage>> {
    if std::env::var("VMSNAP_REQUIRE_QEMU").is_ok_and(|v| v == "1") {
        anyhow::bail!("VMSNAP_REQUIRE_QEMU=1 but {reason}");
    }
    println!("skipped: {reason}");
    Ok(None)
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}
