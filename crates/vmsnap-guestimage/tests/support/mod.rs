//! Shared by the tests that boot the test guest.

pub mod qga;
pub mod vm;

use std::time::Instant;

use anyhow::Result;
use vmsnap_guestimage::{BuildError, GuestImage, ensure_built, test_cache_root};

/// Builds (or finds) the test guest in the shared test cache. A missing prerequisite fails the
/// test, unless `VMSNAP_ALLOW_SKIP=1`: then it returns `None` after saying why.
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
    if std::env::var("VMSNAP_ALLOW_SKIP").as_deref() != Ok("1") {
        anyhow::bail!(
            "{reason}: run ./x test (it installs what the tests need), or set VMSNAP_ALLOW_SKIP=1 to skip"
        );
    }
    println!("skipped: {reason} (VMSNAP_ALLOW_SKIP=1)");
    Ok(None)
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}
