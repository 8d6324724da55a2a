use serde_json::{Value, json};

use super::args::{NamedBlockNodesArgs, TransactionAction, TransactionArgs};
use super::commands::{QmpCapabilities, QueryNamedBlockNodes, QueryStatus, Stop, Transaction};
use super::events::{BlockErrorAction, BlockIoError, Event, GuestCause, JobStatusChange};
use super::session::{QmpOutput, QmpSession, QmpState};
use super::types::{JobStatus, ShutdownCause};
use crate::command::Empty;
use crate::error::{ProtocolError, QemuError, StartCommandError};

/// The greeting QEMU 7.2 sends, byte for byte.
const GREETING: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, \"capabilities\": [\"oob\"]}}\r\n";

fn outputs(session: &mut QmpSession) -> Vec<Result<QmpOutput, String>> {
    std::iter::from_fn(|| session.poll_output()).map(|o| o.map_err(|e| e.to_string())).collect()
}

fn sent(bytes: &[u8]) -> Value {
    assert_eq!(bytes.last(), Some(&b'\n'));
    serde_json::from_slice(bytes).unwrap()
}

fn ready_session() -> QmpSession {
    let mut session = QmpSession::new();
    session.push_bytes(GREETING);
    assert!(outputs(&mut session).is_empty());
    session.take_transmit();
    session.push_bytes(b"{\"return\": {}, \"id\": 1}\r\n");
    assert!(matches!(outputs(&mut session)[..], [Ok(QmpOutput::Ready(_))]));
    session
}

#[test]
fn greeting_is_answered_with_qmp_capabilities() {
    let mut session = QmpSession::new();
    assert_eq!(session.state(), QmpState::AwaitingGreeting);
    session.push_bytes(GREETING);
    assert!(outputs(&mut session).is_empty());
    assert_eq!(session.state(), QmpState::Negotiating { id: 1 });
    assert_eq!(sent(&session.take_transmit()), json!({"execute": "qmp_capabilities", "id": 1}));
    assert!(session.take_transmit().is_empty());
    let greeting = session.greeting().unwrap();
    assert_eq!((greeting.version.qemu.major, greeting.version.qemu.minor), (7, 2));
    assert_eq!(greeting.capabilities, vec!["oob".to_string()]);
}

#[test]
fn capabilities_reply_makes_the_session_ready() {
    let session = ready_session();
    assert_eq!(session.state(), QmpState::Ready);
    assert_eq!(session.in_flight(), 0);
}

#[test]
fn commands_are_refused_before_the_session_is_ready() {
    let mut session = QmpSession::new();
    let error = session.start::<QueryStatus>(&()).unwrap_err();
    assert!(matches!(error, StartCommandError::NotAllowed { .. }));
    assert_eq!(
        error.to_string(),
        "query-status cannot be sent while the session is waiting for the QMP greeting"
    );
    assert!(session.start_command("stop", None).is_err());
}

#[test]
fn qmp_capabilities_is_refused_once_ready() {
    let mut session = ready_session();
    let error = session.start::<QmpCapabilities>(&Default::default()).unwrap_err();
    assert!(matches!(error, StartCommandError::NotAllowed { state: "ready", .. }));
}

#[test]
fn typed_command_without_arguments_has_no_arguments_member() {
    let mut session = ready_session();
    let outgoing = session.start::<Stop>(&()).unwrap();
    assert_eq!(outgoing.id, 2);
    assert_eq!(sent(&outgoing.bytes), json!({"execute": "stop", "id": 2}));
}

#[test]
fn typed_command_arguments_are_encoded_as_qemu_expects() {
    let mut session = ready_session();
    let args = TransactionArgs {
        actions: vec![TransactionAction::BlockdevSnapshot { node: "base".into(), overlay: "ov".into() }],
        properties: None,
    };
    let outgoing = session.start::<Transaction>(&args).unwrap();
    let expected = json!({"execute": "transaction", "id": 2, "arguments": {"actions": [
        {"type": "blockdev-snapshot", "data": {"node": "base", "overlay": "ov"}}
    ]}});
    assert_eq!(sent(&outgoing.bytes), expected);
    let flat = session.start::<QueryNamedBlockNodes>(&NamedBlockNodesArgs { flat: Some(true) }).unwrap();
    assert_eq!(sent(&flat.bytes)["arguments"], json!({"flat": true}));
}

#[test]
fn replies_are_matched_by_id_in_any_order() {
    let mut session = ready_session();
    let first = session.start_command("query-status", None).unwrap();
    let second = session.start_command("query-jobs", None).unwrap();
    session.push_bytes(b"{\"return\": [], \"id\": 3}\r\n{\"return\": {\"running\": true}, \"id\": 2}\r\n");
    let out = outputs(&mut session);
    assert_eq!(
        out,
        vec![
            Ok(QmpOutput::Reply { id: second.id, command: "query-jobs".into(), result: Ok(json!([])) }),
            Ok(QmpOutput::Reply {
                id: first.id,
                command: "query-status".into(),
                result: Ok(json!({"running": true}))
            }),
        ]
    );
    assert_eq!(session.in_flight(), 0);
}

#[test]
fn events_interleaved_with_replies_are_surfaced_in_order() {
    let mut session = ready_session();
    session.start::<Stop>(&()).unwrap();
    // Exactly what QEMU 7.2 sends for `stop`: the event comes before the reply.
    session.push_bytes(b"{\"timestamp\": {\"seconds\": 1795577559, \"microseconds\": 67872}, \"event\": \"STOP\"}\r\n{\"return\": {}, \"id\": 2}\r\n");
    let out = outputs(&mut session);
    let Ok(QmpOutput::Event(event)) = &out[0] else { panic!("{out:?}") };
    assert_eq!(event.event, Event::Stop);
    assert_eq!(event.timestamp.seconds, 1795577559);
    assert!(matches!(&out[1], Ok(QmpOutput::Reply { command, result: Ok(_), .. }) if command == "stop"));
}

#[test]
fn error_reply_carries_class_and_desc() {
    let mut session = ready_session();
    session.start_command("nonexistent", None).unwrap();
    session.push_bytes(b"{\"id\": 2, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command nonexistent has not been found\"}}\r\n");
    let expected = QemuError {
        class: "CommandNotFound".into(),
        desc: "The command nonexistent has not been found".into(),
    };
    assert_eq!(
        outputs(&mut session),
        vec![Ok(QmpOutput::Reply { id: 2, command: "nonexistent".into(), result: Err(expected) })]
    );
}

#[test]
fn reply_with_an_unknown_or_missing_id_is_unmatched() {
    let mut session = ready_session();
    session.push_bytes(b"{\"return\": {}, \"id\": 77}\n{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}\n");
    let out = outputs(&mut session);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|o| matches!(o, Ok(QmpOutput::Unmatched(_)))), "{out:?}");
}

#[test]
fn late_reply_to_an_abandoned_command_is_dropped_silently() {
    let mut session = ready_session();
    let outgoing = session.start::<QueryStatus>(&()).unwrap();
    session.abandon(outgoing.id);
    assert_eq!(session.in_flight(), 0);
    session.push_bytes(b"{\"return\": {\"running\": true, \"status\": \"running\"}, \"id\": 2}\r\n");
    assert!(outputs(&mut session).is_empty());
    // A second reply with the same id is no longer expected by anyone.
    session.push_bytes(b"{\"return\": {}, \"id\": 2}\r\n");
    assert!(matches!(outputs(&mut session)[..], [Ok(QmpOutput::Unmatched(_))]));
}

#[test]
fn close_returns_the_commands_still_in_flight() {
    let mut session = ready_session();
    session.start_command("query-block", None).unwrap();
    session.start_command("query-jobs", None).unwrap();
    let mut lost = session.close();
    lost.sort();
    assert_eq!(lost, vec![(2, "query-block".to_string()), (3, "query-jobs".to_string())]);
    assert_eq!(session.state(), QmpState::Closed);
    assert!(session.start_command("query-status", None).is_err());
}

#[test]
fn rejected_capabilities_close_the_session() {
    let mut session = QmpSession::new();
    session.push_bytes(GREETING);
    session.push_bytes(b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"nope\"}, \"id\": 1}\n");
    let out: Vec<_> = std::iter::from_fn(|| session.poll_output()).collect();
    assert!(matches!(&out[..], [Err(ProtocolError::CapabilitiesRejected(e))] if e.desc == "nope"));
    assert_eq!(session.state(), QmpState::Closed);
}

#[test]
fn garbage_before_the_greeting_closes_the_session() {
    let mut session = QmpSession::new();
    session.push_bytes(b"HTTP/1.1 400 Bad Request\r\n");
    assert!(matches!(session.poll_output(), Some(Err(ProtocolError::Decode(_)))));
    assert_eq!(session.state(), QmpState::Closed);
}

#[test]
fn reply_before_the_greeting_is_unexpected() {
    let mut session = QmpSession::new();
    session.push_bytes(b"{\"return\": {}}\n");
    let error = session.poll_output().unwrap().unwrap_err();
    assert_eq!(
        error.to_string(),
        "unexpected reply message while the session is waiting for the QMP greeting"
    );
}

#[test]
fn garbage_line_when_ready_is_reported_and_the_session_carries_on() {
    let mut session = ready_session();
    session.start_command("query-status", None).unwrap();
    session.push_bytes(b"}}garbage{{\r\n{\"surprise\": 1}\r\n{\"return\": {}, \"id\": 2}\r\n");
    let out = outputs(&mut session);
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(out[0].as_ref().unwrap_err().contains("could not decode"));
    assert!(out[1].as_ref().unwrap_err().contains("unrecognised"));
    assert!(matches!(out[2], Ok(QmpOutput::Reply { id: 2, .. })));
    assert_eq!(session.state(), QmpState::Ready);
}

#[test]
fn an_event_before_the_greeting_is_surfaced_and_the_handshake_goes_on() {
    // QEMU 7.2 can write an event emitted while a client connects before the greeting
    // (the race fixed by "qmp: Fix thread race", December 2025).
    let mut session = QmpSession::new();
    session.push_bytes(b"{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"RESUME\"}\r\n");
    let out = outputs(&mut session);
    let [Ok(QmpOutput::Event(event))] = &out[..] else { panic!("{out:?}") };
    assert_eq!(event.event, Event::Resume);
    assert_eq!(session.state(), QmpState::AwaitingGreeting);
    session.push_bytes(GREETING);
    assert!(outputs(&mut session).is_empty());
    assert_eq!(sent(&session.take_transmit()), json!({"execute": "qmp_capabilities", "id": 1}));
    session.push_bytes(b"{\"return\": {}, \"id\": 1}\r\n");
    assert!(matches!(outputs(&mut session)[..], [Ok(QmpOutput::Ready(_))]));
}

#[test]
fn second_greeting_is_unexpected() {
    let mut session = ready_session();
    session.push_bytes(GREETING);
    assert!(matches!(session.poll_output(), Some(Err(ProtocolError::Unexpected { kind: "greeting", .. }))));
}

#[test]
fn known_events_are_typed_and_others_kept_raw() {
    let mut session = ready_session();
    session.push_bytes(concat!(
        "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\n",
        "{\"event\": \"JOB_STATUS_CHANGE\", \"data\": {\"id\": \"commit0\", \"status\": \"concluded\"}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\n",
        "{\"event\": \"NIC_RX_FILTER_CHANGED\", \"data\": {\"path\": \"/x\"}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\n",
        "{\"event\": \"RESET\", \"data\": {\"guest\": \"not a bool\"}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\n",
        "{\"event\": \"RESUME\"}\n",
        // As QEMU 7.2 sends it for a -blockdev disk on a full host file system.
        "{\"event\": \"BLOCK_IO_ERROR\", \"data\": {\"device\": \"\", \"nospace\": true, \"node-name\": \"fmt-data\", \"reason\": \"No space left on device\", \"operation\": \"write\", \"action\": \"stop\"}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\n",
    ).as_bytes());
    let events: Vec<Event> = outputs(&mut session)
        .into_iter()
        .map(|o| match o {
            Ok(QmpOutput::Event(e)) => e.event,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        events,
        vec![
            Event::Shutdown(GuestCause { guest: true, reason: ShutdownCause::GuestShutdown }),
            Event::JobStatusChange(JobStatusChange { id: "commit0".into(), status: JobStatus::Concluded }),
            Event::Other { name: "NIC_RX_FILTER_CHANGED".into(), data: json!({"path": "/x"}) },
            Event::Other { name: "RESET".into(), data: json!({"guest": "not a bool"}) },
            Event::Resume,
            Event::BlockIoError(BlockIoError {
                device: String::new(),
                node_name: Some("fmt-data".into()),
                operation: "write".into(),
                action: BlockErrorAction::Stop,
                nospace: true,
                reason: "No space left on device".into(),
            }),
        ]
    );
}

#[test]
fn unknown_enum_values_from_a_newer_qemu_still_decode() {
    let status: super::types::StatusInfo =
        serde_json::from_value(json!({"running": false, "status": "some-future-state"})).unwrap();
    assert_eq!(status.status, super::types::RunState::Unknown);
    let empty: Empty = serde_json::from_value(json!({"unexpected": 1})).unwrap();
    assert_eq!(empty, Empty {});
}

#[test]
fn malformed_event_name_is_a_protocol_error() {
    let mut session = ready_session();
    session.push_bytes(b"{\"event\": 42}\n");
    assert!(matches!(session.poll_output(), Some(Err(ProtocolError::Malformed { kind: "event", .. }))));
}

#[test]
fn transaction_actions_without_a_variant_pass_through_unchanged() {
    let raw = json!({"type": "block-dirty-bitmap-clear", "data": {"node": "n0", "name": "b0"}});
    let args = TransactionArgs {
        actions: vec![
            TransactionAction::BlockDirtyBitmapAdd { node: "n0".into(), name: "b0".into(), persistent: None },
            TransactionAction::Abort {},
            TransactionAction::Other(raw.clone()),
        ],
        properties: None,
    };
    let encoded = serde_json::to_value(&args).unwrap();
    assert_eq!(
        encoded["actions"],
        json!([
            {"type": "block-dirty-bitmap-add", "data": {"node": "n0", "name": "b0"}},
            {"type": "abort", "data": {}},
            raw,
        ])
    );
    let decoded: TransactionArgs = serde_json::from_value(encoded).unwrap();
    assert_eq!(decoded, args);
}
