use serde_json::{Value, json};

use super::commands::{ExecArgs, FreezeListArgs, GuestExec, GuestFsfreezeFreezeList, GuestPing};
use super::session::{QgaOutput, QgaSession, QgaState};
use super::types::ExecStatus;
use crate::error::{ProtocolError, QemuError, StartCommandError};

fn outputs(session: &mut QgaSession) -> Vec<Result<QgaOutput, String>> {
    std::iter::from_fn(|| session.poll_output()).map(|o| o.map_err(|e| e.to_string())).collect()
}

fn synced_session() -> QgaSession {
    let mut session = QgaSession::new();
    session.begin_sync(5);
    session.push_bytes(b"\xff{\"return\": 5}\n");
    assert_eq!(outputs(&mut session), vec![Ok(QgaOutput::Synced)]);
    session
}

#[test]
fn a_fresh_session_must_sync_before_any_command() {
    let mut session = QgaSession::new();
    assert_eq!(session.state(), &QgaState::Unsynced);
    let error = session.start::<GuestPing>(&()).unwrap_err();
    assert!(matches!(error, StartCommandError::NotAllowed { state: "not synchronised", .. }));
}

#[test]
fn sync_request_is_preceded_by_a_sentinel() {
    let mut session = QgaSession::new();
    let bytes = session.begin_sync(123_456);
    assert_eq!(bytes[0], 0xFF);
    let request: Value = serde_json::from_slice(&bytes[1..]).unwrap();
    assert_eq!(request, json!({"execute": "guest-sync-delimited", "arguments": {"id": 123_456}}));
    assert_eq!(session.state(), &QgaState::Syncing { id: 123_456 });
}

#[test]
fn stale_bytes_before_the_sentinel_are_discarded() {
    let mut session = QgaSession::new();
    session.push_bytes(b"{\"return\": \"from a previous client\"}\n");
    session.begin_sync(9);
    session.push_bytes(b"{\"return\": {\"pid\": 4}}\r\n{\"return\": {\"half");
    assert!(outputs(&mut session).is_empty());
    session.push_bytes(b"\xff{\"return\": 9}\r\n");
    assert_eq!(outputs(&mut session), vec![Ok(QgaOutput::Synced)]);
    assert!(session.is_idle());
}

#[test]
fn reply_to_an_older_sync_is_skipped_even_in_the_same_chunk() {
    let mut session = QgaSession::new();
    session.begin_sync(2);
    session.push_bytes(b"\xff{\"return\": 1}\r\n\xff{\"return\": 2}\r\n");
    let out = outputs(&mut session);
    assert!(matches!(&out[..], [Ok(QgaOutput::Discarded(_)), Ok(QgaOutput::Synced)]), "{out:?}");
}

#[test]
fn sync_works_when_the_reply_arrives_one_byte_at_a_time() {
    let mut session = QgaSession::new();
    session.begin_sync(77);
    let mut out = Vec::new();
    for byte in b"junk\xff{\"return\": 77}\r\n" {
        session.push_bytes(std::slice::from_ref(byte));
        out.extend(outputs(&mut session));
    }
    assert_eq!(out, vec![Ok(QgaOutput::Synced)]);
}

#[test]
fn garbage_after_the_sentinel_is_skipped_while_syncing() {
    let mut session = QgaSession::new();
    session.begin_sync(3);
    session.push_bytes(b"\xffnot json\n\xff{\"return\": 3}\n");
    assert_eq!(outputs(&mut session), vec![Ok(QgaOutput::Synced)]);
}

#[test]
fn command_reply_returns_the_session_to_idle() {
    let mut session = synced_session();
    let bytes = session.start::<GuestPing>(&()).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), json!({"execute": "guest-ping"}));
    assert_eq!(session.state(), &QgaState::AwaitingReply { command: "guest-ping".into() });
    session.push_bytes(b"{\"return\": {}}\n");
    assert_eq!(
        outputs(&mut session),
        vec![Ok(QgaOutput::Reply { command: "guest-ping".into(), result: Ok(json!({})) })]
    );
    assert!(session.is_idle());
}

#[test]
fn only_one_command_may_be_in_flight() {
    let mut session = synced_session();
    session.start::<GuestPing>(&()).unwrap();
    let error = session.start::<GuestPing>(&()).unwrap_err();
    assert_eq!(error.to_string(), "guest-ping cannot be sent while the session is waiting for a reply");
}

#[test]
fn error_reply_is_the_commands_result() {
    let mut session = synced_session();
    session
        .start::<GuestFsfreezeFreezeList>(&FreezeListArgs { mountpoints: Some(vec!["/".into()]) })
        .unwrap();
    session.push_bytes(b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"failed to freeze /: Device or resource busy\"}}\n");
    let expected = QemuError {
        class: "GenericError".into(),
        desc: "failed to freeze /: Device or resource busy".into(),
    };
    assert_eq!(
        outputs(&mut session),
        vec![Ok(QgaOutput::Reply { command: "guest-fsfreeze-freeze-list".into(), result: Err(expected) })]
    );
}

#[test]
fn abandoned_command_forces_a_resync_that_skips_its_late_reply() {
    let mut session = synced_session();
    session.start_command("guest-fsfreeze-freeze", None).unwrap();
    session.abandon();
    assert_eq!(session.state(), &QgaState::Unsynced);
    session.push_bytes(b"{\"return\": 2}\n");
    assert!(matches!(&outputs(&mut session)[..], [Ok(QgaOutput::Discarded(_))]));
    session.begin_sync(11);
    session.push_bytes(b"{\"return\": 2}\n\xff{\"return\": 11}\n");
    assert_eq!(outputs(&mut session), vec![Ok(QgaOutput::Synced)]);
}

#[test]
fn garbage_instead_of_a_reply_fails_the_command_and_unsyncs() {
    let mut session = synced_session();
    session.start::<GuestPing>(&()).unwrap();
    session.push_bytes(b"<html>\n");
    let out: Vec<_> = std::iter::from_fn(|| session.poll_output()).collect();
    assert!(matches!(&out[..], [Err(ProtocolError::Decode(_))]), "{out:?}");
    assert_eq!(session.state(), &QgaState::Unsynced);
}

#[test]
fn object_that_is_not_a_reply_fails_the_command_and_unsyncs() {
    let mut session = synced_session();
    session.start::<GuestPing>(&()).unwrap();
    session.push_bytes(b"{\"event\": \"SURPRISE\"}\n");
    assert!(matches!(session.poll_output(), Some(Err(ProtocolError::Unrecognised { .. }))));
    assert_eq!(session.state(), &QgaState::Unsynced);
}

#[test]
fn message_with_nothing_in_flight_is_unsolicited() {
    let mut session = synced_session();
    session.push_bytes(b"{\"return\": {}}\n");
    assert!(matches!(&outputs(&mut session)[..], [Ok(QgaOutput::Unsolicited(_))]));
    assert!(session.is_idle());
}

#[test]
fn exec_arguments_are_base64_encoded_and_exec_status_output_decoded() {
    let args = ExecArgs::new("/bin/cat", &["-"]).input(b"hello\n").env("LANG=C");
    let mut session = synced_session();
    let bytes = session.start::<GuestExec>(&args).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&bytes).unwrap(),
        json!({"execute": "guest-exec", "arguments": {
            "path": "/bin/cat", "arg": ["-"], "env": ["LANG=C"], "input-data": "aGVsbG8K", "capture-output": true
        }})
    );
    let status: ExecStatus = serde_json::from_value(json!({
        "exited": true, "exitcode": 1, "out-data": "aGVsbG8K", "err-data": "", "out-truncated": true
    }))
    .unwrap();
    assert_eq!(status.out_data.as_deref(), Some(&b"hello\n"[..]));
    assert_eq!(status.err_data.as_deref(), Some(&b""[..]));
    assert!(status.out_truncated && !status.err_truncated);
    assert!(serde_json::from_value::<ExecStatus>(json!({"exited": true, "out-data": "!!"})).is_err());
}
