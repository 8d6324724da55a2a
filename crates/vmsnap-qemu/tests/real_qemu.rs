//! The QMP client against a real `qemu-system-x86_64` (TCG, no guest).

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::process::Command;
use vmsnap_qemu::CommandError;
use vmsnap_qemu::client::QmpClient;
use vmsnap_qemu::qmp::Event;
use vmsnap_qemu::qmp::args::{BlockdevDelArgs, NamedBlockNodesArgs, TransactionAction, TransactionArgs};
use vmsnap_qemu::qmp::commands::{
    BlockdevAdd, BlockdevDel, Cont, QueryChardev, QueryNamedBlockNodes, QueryStatus, Quit, Stop, Transaction,
};
use vmsnap_qemu::qmp::types::RunState;

const TIMEOUT: Duration = Duration::from_secs(20);

fn qemu_img_create(qemu_img: &Path, image: &Path) {
    let status = std::process::Command::new(qemu_img)
        .args(["create", "-q", "-f", "qcow2"])
        .arg(image)
        .arg("16M")
        .status()
        .unwrap();
    assert!(status.success(), "qemu-img create failed for {}", image.display());
}

fn qcow2_node(name: &str, image: &Path) -> serde_json::Value {
    json!({"driver": "qcow2", "node-name": name, "file": {"driver": "file", "filename": image}})
}

#[tokio::test]
async fn blockdev_snapshot_transaction_puts_an_overlay_on_top_of_its_base() {
    let (Some(qemu), Some(qemu_img)) =
        (common::require_binary("qemu-system-x86_64"), common::require_binary("qemu-img"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("qmp.sock");
    let mut process = Command::new(qemu)
        .args(["-machine", "none", "-accel", "tcg", "-nodefaults", "-display", "none", "-qmp"])
        .arg(format!("unix:{},server=on,wait=off", socket.display()))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let qmp = common::connect_retrying(TIMEOUT, || QmpClient::connect(&socket, TIMEOUT)).await;
    assert_eq!(qmp.greeting().version.qemu.major, 7);

    // Arrange: a base image and an overlay added without backing.
    let (base, overlay) = (dir.path().join("base.qcow2"), dir.path().join("overlay.qcow2"));
    qemu_img_create(&qemu_img, &base);
    qemu_img_create(&qemu_img, &overlay);
    assert_eq!(qmp.execute::<QueryStatus>(()).await.unwrap().status, RunState::Running);
    qmp.execute::<BlockdevAdd>(qcow2_node("base", &base)).await.unwrap();
    let mut top = qcow2_node("overlay", &overlay);
    top["backing"] = serde_json::Value::Null;
    qmp.execute::<BlockdevAdd>(top).await.unwrap();

    // Act: snapshot base onto the overlay.
    let actions =
        vec![TransactionAction::BlockdevSnapshot { node: "base".into(), overlay: "overlay".into() }];
    qmp.execute::<Transaction>(TransactionArgs { actions, properties: None }).await.unwrap();

    // Assert: overlay -> base.
    let nodes = qmp.execute::<QueryNamedBlockNodes>(NamedBlockNodesArgs::default()).await.unwrap();
    let node = |name: &str| nodes.iter().find(|n| n.node_name.as_deref() == Some(name)).unwrap();
    let (top, bottom) = (node("overlay"), node("base"));
    let base_name = base.to_str().unwrap();
    assert_eq!(top.backing_file.as_deref(), Some(base_name));
    assert_eq!(top.backing_file_depth, 1);
    assert_eq!(top.image.backing_image.as_ref().unwrap().filename, base_name);
    assert_eq!((bottom.backing_file.as_deref(), bottom.backing_file_depth), (None, 0));

    // A node in use cannot be deleted: QEMU's own error comes through typed.
    let error = qmp.execute::<BlockdevDel>(BlockdevDelArgs { node_name: "base".into() }).await.unwrap_err();
    assert!(matches!(&error, CommandError::Qemu { class, .. } if class == "GenericError"), "{error}");
    let error = qmp.execute_raw("no-such-command", json!(null)).await.unwrap_err();
    assert!(matches!(&error, CommandError::Qemu { class, .. } if class == "CommandNotFound"), "{error}");

    let chardevs = qmp.execute::<QueryChardev>(()).await.unwrap();
    assert!(chardevs.iter().any(|c| c.filename.contains("qmp.sock")), "{chardevs:?}");

    let mut events = qmp.events();
    qmp.execute::<Stop>(()).await.unwrap();
    assert_eq!(events.wait_for_name(TIMEOUT, "STOP").await.unwrap().event, Event::Stop);
    assert_eq!(qmp.execute::<QueryStatus>(()).await.unwrap().status, RunState::Paused);
    qmp.execute::<Cont>(()).await.unwrap();
    assert_eq!(events.wait_for_name(TIMEOUT, "RESUME").await.unwrap().event, Event::Resume);

    qmp.execute::<Quit>(()).await.unwrap();
    let shutdown = events.wait_for_name(TIMEOUT, "SHUTDOWN").await.unwrap();
    assert!(matches!(shutdown.event, Event::Shutdown(cause) if !cause.guest));
    tokio::time::timeout(TIMEOUT, qmp.closed()).await.unwrap();
    let status = tokio::time::timeout(TIMEOUT, process.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
}
