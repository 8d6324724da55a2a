//! The fake QEMU monitor.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use super::script::{Behavior, parse_request, reply_line};
use super::{Fake, Outgoing, Peer, Shared, killed};
use crate::codec::{DecodeError, Framing, LineDecoder};

/// The QMP protocol, for [`super::FakeQmp`].
#[derive(Debug)]
pub enum Qmp {}

/// The VM state a [`super::FakeQmp`] simulates: `stop`/`cont` change it, `query-status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeVmState {
    /// Whether the vCPUs run.
    pub running: bool,
    /// The run state reported by `query-status`.
    pub status: String,
}

impl Default for FakeVmState {
    fn default() -> Self {
        Self { running: true, status: "running".into() }
    }
}

impl Peer for Qmp {
    type State = FakeVmState;

    fn serve(shared: Arc<Shared<Self>>, stream: UnixStream) -> impl Future<Output = ()> + Send {
        serve(shared, stream)
    }
}

impl Fake<Qmp> {
    /// Sends an event to every connected client, as QEMU does.
    pub fn emit_event(&self, name: &str, data: Value) {
        broadcast_event(self.shared(), name, data);
    }
}

const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "vmsnap-fake"}, "capabilities": ["oob"]}}"#;

async fn serve(shared: Arc<Shared<Qmp>>, stream: UnixStream) {
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = unbounded_channel();
    let mut greeting = GREETING.as_bytes().to_vec();
    greeting.extend_from_slice(b"\r\n");
    let _ = tx.send(Outgoing::Bytes(greeting));
    let mut kill = shared.kill_signal();
    let mut decoder = LineDecoder::new(Framing::Qmp);
    let mut negotiated = false;
    let mut buf = vec![0; 64 * 1024];
    loop {
        tokio::select! {
            () = killed(&mut kill) => return,
            out = rx.recv() => match out {
                Some(Outgoing::Bytes(bytes)) => {
                    if writer.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Some(Outgoing::Close) | None => return,
            },
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(read) => {
                    decoder.push(&buf[..read]);
                    while let Some(message) = decoder.next_message() {
                        handle(&shared, &tx, &mut negotiated, message);
                    }
                }
            },
        }
    }
}

fn handle(
    shared: &Shared<Qmp>,
    tx: &UnboundedSender<Outgoing>,
    negotiated: &mut bool,
    message: Result<Map<String, Value>, DecodeError>,
) {
    let send = |bytes| drop(tx.send(Outgoing::Bytes(bytes)));
    let message = match message {
        Ok(message) => message,
        Err(error) => {
            return send(reply_line(Err(("GenericError", &format!("JSON parse error, {error}"))), None));
        }
    };
    let Some((name, args, id)) = parse_request(&message) else {
        return send(reply_line(Err(("GenericError", "QMP input lacks member 'execute'")), None));
    };
    let scripted = shared.script().record(&name, &args);
    let behavior = match (*negotiated, name.as_str(), scripted) {
        (_, _, Some(behavior)) => behavior,
        (false, "qmp_capabilities", None) => Behavior::Reply(json!({})),
        (false, _, None) => Behavior::Error {
            class: "CommandNotFound".into(),
            desc: "Expecting capabilities negotiation with 'qmp_capabilities'".into(),
        },
        (true, _, None) => match default_behavior(shared, &name, tx, id.clone()) {
            Some(behavior) => behavior,
            None => return,
        },
    };
    if !*negotiated && name == "qmp_capabilities" && matches!(behavior, Behavior::Reply(_)) {
        // Like QEMU, events only go to monitors in command mode.
        *negotiated = true;
        shared.outlets().push(tx.clone());
    }
    apply(behavior, id, tx.clone());
}

/// QEMU's answer to `name`, with its side effects; `None` when already fully answered.
fn default_behavior(
    shared: &Shared<Qmp>,
    name: &str,
    tx: &UnboundedSender<Outgoing>,
    id: Option<Value>,
) -> Option<Behavior> {
    let set_running = |running: bool, status: &str| {
        let mut state = shared.state();
        state.running = running;
        state.status = status.into();
    };
    let reply = match name {
        "qmp_capabilities" => {
            return Some(Behavior::Error {
                class: "CommandNotFound".into(),
                desc: "Capabilities negotiation is already complete, command ignored".into(),
            });
        }
        "query-status" => {
            let state = shared.state();
            json!({ "running": state.running, "singlestep": false, "status": state.status })
        }
        "stop" => {
            set_running(false, "paused");
            broadcast_event(shared, "STOP", Value::Null);
            json!({})
        }
        "cont" => {
            set_running(true, "running");
            broadcast_event(shared, "RESUME", Value::Null);
            json!({})
        }
        "system_powerdown" => {
            broadcast_event(shared, "POWERDOWN", Value::Null);
            json!({})
        }
        "system_reset" => {
            broadcast_event(shared, "RESET", json!({ "guest": false, "reason": "host-qmp-system-reset" }));
            json!({})
        }
        "quit" => {
            set_running(false, "shutdown");
            broadcast_event(shared, "SHUTDOWN", json!({ "guest": false, "reason": "host-qmp-quit" }));
            let _ = tx.send(Outgoing::Bytes(reply_line(Ok(json!({})), id)));
            let _ = tx.send(Outgoing::Close);
            return None;
        }
        "query-block" | "query-named-block-nodes" | "query-jobs" | "query-chardev" => json!([]),
        _ => json!({}),
    };
    Some(Behavior::Reply(reply))
}

fn apply(behavior: Behavior, id: Option<Value>, tx: UnboundedSender<Outgoing>) {
    let outgoing = match behavior {
        Behavior::Reply(value) => Outgoing::Bytes(reply_line(Ok(value), id)),
        Behavior::Error { class, desc } => Outgoing::Bytes(reply_line(Err((&class, &desc)), id)),
        Behavior::Hang | Behavior::NoReply => return,
        Behavior::Disconnect => Outgoing::Close,
        Behavior::Raw(bytes) => Outgoing::Bytes(bytes),
        Behavior::Delay(delay, then) => {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                apply(*then, id, tx);
            });
            return;
        }
    };
    let _ = tx.send(outgoing);
}

fn broadcast_event(shared: &Shared<Qmp>, name: &str, data: Value) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut event = json!({
        "event": name,
        "timestamp": { "seconds": now.as_secs(), "microseconds": now.subsec_micros() },
    });
    if !data.is_null() {
        event["data"] = data;
    }
    let mut line = serde_json::to_vec(&event).unwrap_or_default();
    line.extend_from_slice(b"\r\n");
    shared.outlets().retain(|outlet| outlet.send(Outgoing::Bytes(line.clone())).is_ok());
}
