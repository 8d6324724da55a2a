//! The guest agent client against a real `qemu-ga`, run on the host over a
//! unix socket with every command that could change the host blocked.

mod common;

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::process::Command;
use vmsnap_qemu::CommandError;
use vmsnap_qemu::client::QgaClient;
use vmsnap_qemu::qga::commands::{
    ExecArgs, ExecStatusArgs, GuestExecStatus, GuestFsfreezeStatus, GuestGetHostName, GuestInfo, GuestPing,
};
use vmsnap_qemu::qga::types::FsfreezeStatus;

const TIMEOUT: Duration = Duration::from_secs(20);

/// Never let a test freeze, shut down, or otherwise change the host.
const BLOCKED: &str = "guest-set-time,guest-shutdown,guest-file-open,guest-file-write,guest-fsfreeze-freeze,\
guest-fsfreeze-freeze-list,guest-fsfreeze-thaw,guest-fstrim,guest-suspend-disk,guest-suspend-ram,\
guest-suspend-hybrid,guest-set-vcpus,guest-set-user-password,guest-set-memory-blocks,\
guest-ssh-add-authorized-keys,guest-ssh-remove-authorized-keys";

#[tokio::test]
async fn real_guest_agent_runs_commands_and_returns_their_output() {
    let Some(qemu_ga) = common::require_binary("qemu-ga") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("qga.sock");
    let _agent = Command::new(qemu_ga)
        .args(["-m", "unix-listen", "-p"])
        .arg(&socket)
        .arg("-t")
        .arg(dir.path())
        .arg("-f")
        .arg(dir.path().join("qemu-ga.pid"))
        .args(["-b", BLOCKED])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let qga = common::connect_retrying(TIMEOUT, || QgaClient::connect(&socket, TIMEOUT)).await;

    qga.execute::<GuestPing>(()).await.unwrap();
    let info = qga.execute::<GuestInfo>(()).await.unwrap();
    let freeze = info.supported_commands.iter().find(|c| c.name == "guest-fsfreeze-freeze").unwrap();
    assert!(!freeze.enabled, "the block list must be in force before anything else runs");
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(qga.execute::<GuestGetHostName>(()).await.unwrap().host_name, host_name.trim());
    assert_eq!(qga.execute::<GuestFsfreezeStatus>(()).await.unwrap(), FsfreezeStatus::Thawed);

    let output =
        qga.exec_and_wait("/bin/sh", &["-c", "echo out; echo err >&2; exit 3"], TIMEOUT).await.unwrap();
    assert_eq!(
        (output.exit_code, output.stdout.as_slice(), output.stderr.as_slice()),
        (Some(3), &b"out\n"[..], &b"err\n"[..])
    );
    let output = qga
        .exec_and_wait_with(ExecArgs::new("/bin/cat", &[] as &[&str]).input(b"to stdin\n"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(output.stdout, b"to stdin\n");

    let error =
        qga.execute::<GuestExecStatus>(ExecStatusArgs { pid: i64::from(i32::MAX) }).await.unwrap_err();
    assert!(matches!(error, CommandError::Qemu { .. }), "{error}");
    let error = qga.execute_raw("guest-no-such-command", json!(null)).await.unwrap_err();
    assert!(matches!(&error, CommandError::Qemu { class, .. } if class == "CommandNotFound"), "{error}");
    let error = qga.execute_raw("guest-fstrim", json!(null)).await.unwrap_err();
    assert!(error.to_string().contains("disabled"), "{error}");

    // A fresh resync mid-session works against the real agent too.
    qga.sync().await.unwrap();
    qga.execute::<GuestPing>(()).await.unwrap();
}
