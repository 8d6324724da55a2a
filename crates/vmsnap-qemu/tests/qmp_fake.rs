//! The tokio QMP client against the scriptable fake monitor.

use std::time::{Duration, Instant};

use serde_json::json;
use tempfile::TempDir;
use vmsnap_qemu::client::QmpClient;
use vmsnap_qemu::fake::{Behavior, FakeQmp};
use vmsnap_qemu::qmp::Event;
use vmsnap_qemu::qmp::args::{DeviceDelArgs, TransactionAction, TransactionArgs};
use vmsnap_qemu::qmp::commands::{DeviceDel, QueryJobs, QueryStatus, Quit, Stop, Transaction};
use vmsnap_qemu::qmp::types::RunState;
use vmsnap_qemu::{CommandError, ConnectError, EventError};

const TIMEOUT: Duration = Duration::from_secs(5);

async fn setup() -> (TempDir, FakeQmp, QmpClient) {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeQmp::start(dir.path().join("qmp.sock")).unwrap();
    let client = QmpClient::connect(fake.path(), TIMEOUT).await.unwrap();
    (dir, fake, client)
}

#[tokio::test]
async fn connect_completes_the_handshake_and_records_qmp_capabilities() {
    let (_dir, fake, client) = setup().await;
    assert_eq!(client.greeting().version.qemu.major, 7);
    assert!(client.is_connected());
    assert_eq!(fake.received_names(), vec!["qmp_capabilities"]);
}

#[tokio::test]
async fn typed_commands_change_and_report_the_vm_state() {
    let (_dir, fake, client) = setup().await;
    let mut events = client.events();
    assert_eq!(client.execute::<QueryStatus>(()).await.unwrap().status, RunState::Running);
    client.execute::<Stop>(()).await.unwrap();
    let event = events.wait_for_name(TIMEOUT, "STOP").await.unwrap();
    assert_eq!(event.event, Event::Stop);
    let status = client.execute::<QueryStatus>(()).await.unwrap();
    assert_eq!((status.running, status.status), (false, RunState::Paused));
    assert!(!fake.with_state(|vm| vm.running));
}

#[tokio::test]
async fn arguments_reach_the_peer_as_qemu_expects_them() {
    let (_dir, fake, client) = setup().await;
    let actions = vec![TransactionAction::BlockdevSnapshot { node: "base".into(), overlay: "top".into() }];
    client.execute::<Transaction>(TransactionArgs { actions, properties: None }).await.unwrap();
    client.execute_raw("blockdev-add", json!({"driver": "null-co", "node-name": "n0"})).await.unwrap();
    let received = fake.received();
    assert_eq!(received[1].name, "transaction");
    assert_eq!(
        received[1].arguments,
        json!({"actions": [{"type": "blockdev-snapshot", "data": {"node": "base", "overlay": "top"}}]})
    );
    assert_eq!(received[2].arguments, json!({"driver": "null-co", "node-name": "n0"}));
}

#[tokio::test]
async fn concurrent_commands_get_their_own_replies_even_out_of_order() {
    let (_dir, fake, client) = setup().await;
    fake.set_behavior_once(
        "query-status",
        Behavior::delayed(
            Duration::from_millis(300),
            Behavior::Reply(json!({"running": false, "status": "paused"})),
        ),
    );
    let slow = tokio::spawn({
        let client = client.clone();
        async move { (client.execute::<QueryStatus>(()).await, Instant::now()) }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let jobs = client.execute::<QueryJobs>(()).await.unwrap();
    let jobs_done = Instant::now();
    let (status, status_done) = slow.await.unwrap();
    assert!(jobs.is_empty());
    assert_eq!(status.unwrap().status, RunState::Paused);
    assert!(jobs_done < status_done, "the fast reply overtook the slow one");
}

#[tokio::test]
async fn many_tasks_share_one_connection() {
    let (_dir, _fake, client) = setup().await;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let reply = client.execute_raw("qom-list", json!({"path": format!("/obj{i}")})).await;
                (i, reply)
            })
        })
        .collect();
    for task in tasks {
        let (i, reply) = task.await.unwrap();
        assert_eq!(reply.unwrap(), json!({}), "task {i}");
    }
}

#[tokio::test]
async fn hung_command_times_out_within_its_deadline_and_others_still_work() {
    let (_dir, fake, client) = setup().await;
    fake.set_behavior("query-block", Behavior::Hang);
    let started = Instant::now();
    let error = client
        .execute_raw_with_timeout("query-block", json!(null), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(&error, CommandError::Timeout { command, after } if command == "query-block" && *after == Duration::from_millis(200))
    );
    assert_eq!(error.to_string(), "query-block did not complete within 200ms");
    assert!(client.execute::<QueryStatus>(()).await.is_ok());
}

#[tokio::test]
async fn late_reply_after_a_timeout_does_not_reach_the_next_caller() {
    let (_dir, fake, client) = setup().await;
    fake.set_behavior_once(
        "query-status",
        Behavior::delayed(Duration::from_millis(200), Behavior::Reply(json!("stale"))),
    );
    let error = client.execute_with_timeout::<QueryStatus>((), Duration::from_millis(50)).await.unwrap_err();
    assert!(matches!(error, CommandError::Timeout { .. }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(client.execute::<QueryStatus>(()).await.unwrap().status, RunState::Running);
}

#[tokio::test]
async fn cancelled_caller_does_not_disturb_the_connection() {
    let (_dir, fake, client) = setup().await;
    fake.set_behavior_once(
        "query-status",
        Behavior::delayed(Duration::from_millis(100), Behavior::Reply(json!({}))),
    );
    let cancelled = tokio::time::timeout(Duration::from_millis(20), client.execute::<QueryStatus>(())).await;
    assert!(cancelled.is_err());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(client.execute::<QueryStatus>(()).await.is_ok());
}

#[tokio::test]
async fn disconnect_fails_every_waiter_and_ends_the_event_stream() {
    let (_dir, fake, client) = setup().await;
    fake.set_behavior("query-block", Behavior::Hang);
    let mut events = client.events();
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.execute_raw("query-block", json!(null)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    fake.disconnect_all();
    for waiter in waiters {
        let error = waiter.await.unwrap().unwrap_err();
        assert!(
            matches!(&error, CommandError::Disconnected { command } if command == "query-block"),
            "{error}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    tokio::time::timeout(TIMEOUT, client.closed()).await.unwrap();
    assert!(!client.is_connected());
    assert!(matches!(events.next().await, Err(EventError::Disconnected)));
    let after = client.execute::<QueryStatus>(()).await.unwrap_err();
    assert_eq!(after.to_string(), "the connection closed before query-status completed");
}

#[tokio::test]
async fn disconnect_instead_of_a_reply_is_reported_as_disconnected() {
    let (_dir, fake, client) = setup().await;
    fake.set_behavior("stop", Behavior::Disconnect);
    assert!(matches!(client.execute::<Stop>(()).await, Err(CommandError::Disconnected { .. })));
}

#[tokio::test]
async fn qemu_errors_pass_through_with_class_and_desc() {
    let (_dir, fake, client) = setup().await;
    fake.set_behavior(
        "device_del",
        Behavior::Error { class: "DeviceNotFound".into(), desc: "Device 'disk9' not found".into() },
    );
    let error = client.execute::<DeviceDel>(DeviceDelArgs { id: "disk9".into() }).await.unwrap_err();
    assert!(matches!(&error, CommandError::Qemu { class, .. } if class == "DeviceNotFound"));
    assert_eq!(error.to_string(), "device_del failed: Device 'disk9' not found (DeviceNotFound)");
}

#[tokio::test]
async fn reply_of_the_wrong_shape_is_a_decode_error() {
    let (_dir, fake, client) = setup().await;
    fake.set_behavior("query-status", Behavior::Reply(json!(["not", "a", "status"])));
    let error = client.execute::<QueryStatus>(()).await.unwrap_err();
    assert!(matches!(error, CommandError::Decode { .. }));
    assert_eq!(error.to_string(), "the reply to query-status did not match its expected type");
}

#[tokio::test]
async fn garbage_from_the_peer_is_skipped_and_the_connection_survives() {
    let (_dir, fake, client) = setup().await;
    fake.set_behavior_once("query-jobs", Behavior::Raw(b"}}} not json {{{\r\n".to_vec()));
    let error = client.execute_with_timeout::<QueryJobs>((), Duration::from_millis(200)).await.unwrap_err();
    assert!(matches!(error, CommandError::Timeout { .. }));
    assert!(client.execute::<QueryJobs>(()).await.is_ok());
}

#[tokio::test]
async fn quit_replies_emits_shutdown_and_closes() {
    let (_dir, _fake, client) = setup().await;
    let mut events = client.events();
    client.execute::<Quit>(()).await.unwrap();
    let event = events.wait_for_name(TIMEOUT, "SHUTDOWN").await.unwrap();
    assert!(matches!(event.event, Event::Shutdown(cause) if !cause.guest));
    tokio::time::timeout(TIMEOUT, client.closed()).await.unwrap();
}

#[tokio::test]
async fn custom_events_reach_every_receiver() {
    let (_dir, fake, client) = setup().await;
    let (mut first, mut second) = (client.events(), client.events());
    fake.emit_event("DEVICE_DELETED", json!({"device": "disk1", "path": "/machine/peripheral/disk1"}));
    fake.emit_event("VSERPORT_CHANGE", json!({"id": "qga0", "open": true}));
    for events in [&mut first, &mut second] {
        let deleted = events.next().await.unwrap();
        assert!(matches!(&deleted.event, Event::DeviceDeleted(d) if d.device.as_deref() == Some("disk1")));
        let other = events.next().await.unwrap();
        assert!(matches!(&other.event, Event::Other { name, .. } if name == "VSERPORT_CHANGE"));
    }
}

#[tokio::test]
async fn waiting_for_an_event_that_never_comes_times_out() {
    let (_dir, _fake, client) = setup().await;
    let mut events = client.events();
    let error = events.wait_for_name(Duration::from_millis(100), "SHUTDOWN").await.unwrap_err();
    assert!(matches!(error, EventError::Timeout { .. }));
}

#[tokio::test]
async fn handshake_that_never_completes_is_a_connect_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeQmp::start(dir.path().join("qmp.sock")).unwrap();
    fake.set_behavior("qmp_capabilities", Behavior::Hang);
    let started = Instant::now();
    let error = QmpClient::connect(fake.path(), Duration::from_millis(200)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(error, ConnectError::Timeout { what: "QMP handshake", .. }), "{error}");
}

#[tokio::test]
async fn rejected_capabilities_are_a_connect_error() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeQmp::start(dir.path().join("qmp.sock")).unwrap();
    fake.set_behavior("qmp_capabilities", Behavior::generic_error("no"));
    let error = QmpClient::connect(fake.path(), TIMEOUT).await.unwrap_err();
    assert!(matches!(error, ConnectError::Protocol { .. }), "{error}");
}

#[tokio::test]
async fn missing_socket_is_a_connect_io_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.sock");
    let error = QmpClient::connect(&path, TIMEOUT).await.unwrap_err();
    assert!(matches!(error, ConnectError::Io { .. }));
    assert_eq!(error.to_string(), format!("could not connect to {}", path.display()));
}
