//! The tokio guest agent client against the scriptable fake agent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tempfile::TempDir;
use vmsnap_qemu::client::QgaClient;
use vmsnap_qemu::fake::{Behavior, FakeQga};
use vmsnap_qemu::qga::commands::{
    FreezeListArgs, GuestFsfreezeFreeze, GuestFsfreezeFreezeList, GuestFsfreezeStatus, GuestFsfreezeThaw,
    GuestGetFsinfo, GuestGetHostName, GuestGetOsinfo, GuestGetTime, GuestInfo, GuestNetworkGetInterfaces,
    GuestPing, GuestShutdown, ShutdownArgs, ShutdownMode,
};
use vmsnap_qemu::qga::types::FsfreezeStatus;
use vmsnap_qemu::{CommandError, ConnectError};

const TIMEOUT: Duration = Duration::from_secs(5);
const SHORT: Duration = Duration::from_millis(200);

async fn setup() -> (TempDir, FakeQga, QgaClient) {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeQga::start(dir.path().join("qga.sock")).unwrap();
    let client = QgaClient::connect(fake.path(), TIMEOUT).await.unwrap();
    (dir, fake, client)
}

fn assert_within(started: Instant, limit: Duration) {
    assert!(started.elapsed() < limit, "took {:?}, limit {limit:?}", started.elapsed());
}

#[tokio::test]
async fn connect_resyncs_with_a_random_id_that_fits_in_a_json_number() {
    let (_dir, fake, _client) = setup().await;
    let received = fake.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].name, "guest-sync-delimited");
    let id = received[0].arguments["id"].as_u64().unwrap();
    assert!(id > 0 && id < 1 << 53);
}

#[tokio::test]
async fn typed_commands_decode_their_replies() {
    let (_dir, _fake, client) = setup().await;
    client.execute::<GuestPing>(()).await.unwrap();
    let info = client.execute::<GuestInfo>(()).await.unwrap();
    assert!(info.supported_commands.iter().any(|c| c.name == "guest-exec" && c.enabled));
    assert_eq!(client.execute::<GuestGetOsinfo>(()).await.unwrap().id.as_deref(), Some("vmsnap-fake"));
    assert_eq!(client.execute::<GuestGetHostName>(()).await.unwrap().host_name, "fake-guest");
    assert!(client.execute::<GuestGetTime>(()).await.unwrap() > 1_600_000_000_000_000_000);
    let fs = client.execute::<GuestGetFsinfo>(()).await.unwrap();
    let disk = &fs[0].disk[0];
    assert_eq!(
        (disk.serial.as_deref(), disk.bus_type.as_str(), disk.dev.as_deref()),
        (Some("vmsnap-disk0"), "virtio", Some("/dev/vda1"))
    );
    let nics = client.execute::<GuestNetworkGetInterfaces>(()).await.unwrap();
    assert_eq!(nics[0].ip_addresses[0].ip_address, "127.0.0.1");
}

#[tokio::test]
async fn freeze_and_thaw_round_trip() {
    let (_dir, fake, client) = setup().await;
    assert_eq!(client.execute::<GuestFsfreezeStatus>(()).await.unwrap(), FsfreezeStatus::Thawed);
    let args = FreezeListArgs { mountpoints: Some(vec!["/".into()]) };
    assert_eq!(client.execute::<GuestFsfreezeFreezeList>(args).await.unwrap(), 1);
    assert_eq!(client.execute::<GuestFsfreezeStatus>(()).await.unwrap(), FsfreezeStatus::Frozen);
    assert!(fake.with_state(|guest| guest.frozen));
    assert_eq!(client.execute::<GuestFsfreezeThaw>(()).await.unwrap(), 1);
    assert_eq!(client.execute::<GuestFsfreezeStatus>(()).await.unwrap(), FsfreezeStatus::Thawed);
    assert_eq!(fake.received()[2].arguments, json!({"mountpoints": ["/"]}));
}

#[tokio::test]
async fn exec_and_wait_returns_the_decoded_output() {
    let (_dir, _fake, client) = setup().await;
    let output = client.exec_and_wait("/bin/echo", &["hello", "world"], TIMEOUT).await.unwrap();
    assert!(output.success());
    assert_eq!(output.stdout, b"hello world\n");
    assert!(output.stderr.is_empty());
}

#[tokio::test]
async fn exec_and_wait_polls_until_the_process_exits() {
    let (_dir, fake, client) = setup().await;
    for _ in 0..3 {
        fake.set_behavior_once("guest-exec-status", Behavior::Reply(json!({"exited": false})));
    }
    let output = client.exec_and_wait("/bin/true", &[] as &[&str], TIMEOUT).await.unwrap();
    assert_eq!(output.exit_code, Some(0));
    let polls = fake.received_names().iter().filter(|n| *n == "guest-exec-status").count();
    assert_eq!(polls, 4);
}

#[tokio::test]
async fn exec_that_never_exits_times_out_at_the_deadline() {
    let (_dir, fake, client) = setup().await;
    fake.set_behavior("guest-exec-status", Behavior::Reply(json!({"exited": false})));
    let started = Instant::now();
    let error = client.exec_and_wait("/bin/sleep", &["1000"], Duration::from_millis(300)).await.unwrap_err();
    assert_within(started, Duration::from_secs(2));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(error.to_string(), "guest-exec /bin/sleep did not complete within 300ms");
}

#[tokio::test]
async fn hung_agent_turns_into_timeouts_not_a_hung_caller() {
    let (_dir, fake, client) = setup().await;
    fake.set_behavior("guest-fsfreeze-freeze", Behavior::Hang);
    let started = Instant::now();
    let error = client.execute_with_timeout::<GuestFsfreezeFreeze>((), SHORT).await.unwrap_err();
    assert_within(started, Duration::from_secs(2));
    assert!(
        matches!(&error, CommandError::Timeout { command, .. } if command == "guest-fsfreeze-freeze"),
        "{error}"
    );
    // The agent is still stuck: the resync before the next command times out too, just as clearly.
    let started = Instant::now();
    let error = client.execute_with_timeout::<GuestPing>((), SHORT).await.unwrap_err();
    assert_within(started, Duration::from_secs(2));
    assert_eq!(
        error.to_string(),
        "the guest agent did not resynchronise within 200ms, so guest-ping was not sent"
    );
}

#[tokio::test]
async fn slow_reply_is_discarded_by_the_resync_before_the_next_command() {
    let (_dir, fake, client) = setup().await;
    fake.set_behavior_once(
        "guest-fsfreeze-freeze",
        Behavior::delayed(Duration::from_millis(300), Behavior::Reply(json!(1))),
    );
    let error =
        client.execute_with_timeout::<GuestFsfreezeFreeze>((), Duration::from_millis(50)).await.unwrap_err();
    assert!(matches!(error, CommandError::Timeout { .. }));
    // The late `1` arrives while the client resyncs; `guest-get-time` must not mistake it for its reply.
    let time = client.execute::<GuestGetTime>(()).await.unwrap();
    assert!(time > 1_000);
    assert_eq!(
        fake.received_names(),
        vec!["guest-sync-delimited", "guest-fsfreeze-freeze", "guest-sync-delimited", "guest-get-time"]
    );
}

#[tokio::test]
async fn command_queued_behind_a_hung_one_fails_as_busy() {
    let (_dir, fake, client) = setup().await;
    let client = Arc::new(client);
    fake.set_behavior("guest-fsfreeze-freeze", Behavior::Hang);
    let hung = tokio::spawn({
        let client = client.clone();
        async move { client.execute_with_timeout::<GuestFsfreezeFreeze>((), Duration::from_secs(1)).await }
    });
    while !fake.received_names().contains(&"guest-fsfreeze-freeze".to_string()) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let error = client.execute_with_timeout::<GuestPing>((), SHORT).await.unwrap_err();
    assert!(matches!(error, CommandError::Busy { .. }), "{error}");
    assert!(matches!(hung.await.unwrap(), Err(CommandError::Timeout { .. })));
}

#[tokio::test]
async fn concurrent_callers_are_serialised() {
    let (_dir, fake, client) = setup().await;
    let client = Arc::new(client);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.execute::<GuestGetHostName>(()).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().host_name, "fake-guest");
    }
    assert_eq!(fake.received_names().iter().filter(|n| *n == "guest-get-host-name").count(), 16);
}

#[tokio::test]
async fn agent_errors_pass_through_with_class_and_desc() {
    let (_dir, fake, client) = setup().await;
    fake.set_behavior(
        "guest-fsfreeze-freeze",
        Behavior::generic_error("failed to freeze /: Device or resource busy"),
    );
    let error = client.execute::<GuestFsfreezeFreeze>(()).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "guest-fsfreeze-freeze failed: failed to freeze /: Device or resource busy (GenericError)"
    );
    let error = client.execute_raw("guest-nonexistent", json!({})).await.unwrap_err();
    assert!(matches!(error, CommandError::Qemu { class, .. } if class == "CommandNotFound"));
}

#[tokio::test]
async fn disconnect_fails_the_command_and_the_next_one_reconnects() {
    let (_dir, fake, client) = setup().await;
    fake.set_behavior_once("guest-ping", Behavior::Disconnect);
    let error = client.execute::<GuestPing>(()).await.unwrap_err();
    assert!(matches!(&error, CommandError::Disconnected { command } if command == "guest-ping"), "{error}");
    client.execute::<GuestPing>(()).await.unwrap();
    assert_eq!(fake.accepted_connections(), 2);
}

#[tokio::test]
async fn garbage_reply_is_a_protocol_error_and_the_channel_recovers() {
    let (_dir, fake, client) = setup().await;
    fake.set_behavior_once("guest-ping", Behavior::Raw(b"<html>oops</html>\r\n".to_vec()));
    let error = client.execute::<GuestPing>(()).await.unwrap_err();
    assert!(matches!(error, CommandError::Protocol { .. }), "{error}");
    client.execute::<GuestPing>(()).await.unwrap();
}

#[tokio::test]
async fn shutdown_returns_without_a_reply_and_the_channel_resyncs() {
    let (_dir, fake, client) = setup().await;
    let started = Instant::now();
    client.execute::<GuestShutdown>(ShutdownArgs { mode: Some(ShutdownMode::Powerdown) }).await.unwrap();
    assert_within(started, Duration::from_secs(2));
    client.execute::<GuestPing>(()).await.unwrap();
    let received = fake.received();
    assert_eq!(received[1].arguments, json!({"mode": "powerdown"}));
    assert_eq!(received[2].name, "guest-sync-delimited");
}

#[tokio::test]
async fn shutdown_refused_by_the_agent_is_an_error() {
    let (_dir, fake, client) = setup().await;
    fake.set_behavior("guest-shutdown", Behavior::generic_error("Command guest-shutdown has been disabled"));
    let error = client.execute::<GuestShutdown>(ShutdownArgs::default()).await.unwrap_err();
    assert!(matches!(error, CommandError::Qemu { .. }), "{error}");
}

#[tokio::test]
async fn no_reply_command_that_closes_the_connection_counts_as_sent() {
    let (_dir, fake, client) = setup().await;
    fake.set_behavior("guest-suspend-disk", Behavior::Disconnect);
    client.execute_no_reply("guest-suspend-disk", json!(null), SHORT).await.unwrap();
}

#[tokio::test]
async fn agent_that_never_answers_the_sync_is_a_connect_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeQga::start(dir.path().join("qga.sock")).unwrap();
    fake.set_behavior("guest-sync-delimited", Behavior::Hang);
    let started = Instant::now();
    let error = QgaClient::connect(fake.path(), SHORT).await.unwrap_err();
    assert_within(started, Duration::from_secs(2));
    assert!(matches!(error, ConnectError::Timeout { what: "guest agent resync", .. }), "{error}");
}

#[tokio::test]
async fn stale_reply_left_by_a_previous_client_is_skipped_on_connect() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeQga::start(dir.path().join("qga.sock")).unwrap();
    // The agent first flushes an old reply (no sentinel) and half a line, then answers the sync.
    fake.set_behavior_once(
        "guest-sync-delimited",
        Behavior::Raw(b"{\"return\": {\"pid\": 7}}\r\n{\"return\": {\"hal".to_vec()),
    );
    let client = QgaClient::new(fake.path(), Default::default());
    // The first sync sees only stale data and times out; the second succeeds.
    assert!(matches!(
        client.execute_with_timeout::<GuestPing>((), SHORT).await,
        Err(CommandError::SyncTimeout { .. })
    ));
    client.execute::<GuestPing>(()).await.unwrap();
}
