//! The accelerator probe against the real host.

mod support;

use std::time::{Duration, Instant};

use anyhow::Result;
use support::Env;
use vmsnap_vmm::{Accel, AccelSetting, ProbeOptions, probe_accelerator};

#[tokio::test]
async fn auto_probes_once_per_host_boot_and_explains_its_choice() -> Result<()> {
    let Some(env) = Env::new().await? else { return Ok(()) };
    let cache = tempfile::tempdir()?;
    let options = ProbeOptions::default();

    let started = Instant::now();
    let first = probe_accelerator(AccelSetting::Auto, cache.path(), &env.image, &options).await?;
    let probe_took = started.elapsed();
    let started = Instant::now();
    let second = probe_accelerator(AccelSetting::Auto, cache.path(), &env.image, &options).await?;
    let cached_took = started.elapsed();

    println!("probe chose {} in {:.2} s: {}", first.accel, probe_took.as_secs_f64(), first.reason);
    let explained = match first.accel {
        Accel::Kvm => first.reason.contains("printed"),
        Accel::Tcg => first.reason.contains("/dev/kvm"),
    };
    assert!(explained, "{first:?}");
    assert!(!first.cached && second.cached);
    assert_eq!(second.accel, first.accel);
    assert!(probe_took < options.timeout + Duration::from_secs(10), "the probe took {probe_took:?}");
    assert!(cached_took < Duration::from_millis(500), "the cached answer took {cached_took:?}");
    Ok(())
}

#[tokio::test]
async fn a_probe_boot_that_hangs_falls_back_to_tcg_within_the_timeout() -> Result<()> {
    let Some(env) = Env::new().await? else { return Ok(()) };
    let dir = tempfile::tempdir()?;
    // A "QEMU" that hangs before it opens its monitor, as QEMU under a broken KVM can.
    let hanging = dir.path().join("hanging-qemu");
    std::fs::write(&hanging, "#!/bin/sh\nexec sleep 60\n")?;
    std::fs::set_permissions(&hanging, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let options =
        ProbeOptions { qemu_binary: hanging, timeout: Duration::from_secs(1), ..ProbeOptions::default() };

    let started = Instant::now();
    let outcome =
        probe_accelerator(AccelSetting::Auto, &dir.path().join("cache"), &env.image, &options).await?;
    let took = started.elapsed();

    println!("{outcome:?} after {took:?}");
    assert_eq!(outcome.accel, Accel::Tcg);
    // Where /dev/kvm cannot be opened the probe does not even start the binary.
    assert!(
        outcome.reason.contains("within 1s") || outcome.reason.contains("cannot be opened"),
        "{outcome:?}"
    );
    assert!(took < Duration::from_secs(5), "the probe took {took:?}");
    Ok(())
}
