//! The fake guest agent. Like qemu-ga it handles one request at a time, so a
//! hung or delayed command blocks everything behind it on that connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::script::{Behavior, parse_request, reply_line};
use super::{Peer, Shared, killed};
use crate::codec::{Framing, LineDecoder, SENTINEL};

/// The guest agent protocol, for [`super::FakeQga`].
#[derive(Debug)]
pub enum Qga {}

/// The guest state a [`super::FakeQga`] simulates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeAgentState {
    /// Whether the filesystems are frozen (`guest-fsfreeze-*` change and report it).
    pub frozen: bool,
    /// Processes started with `guest-exec` and not yet reaped: pid to argument list.
    /// `guest-exec-status` reports them as exited with code 0, echoing the arguments on stdout.
    pub processes: HashMap<i64, Vec<String>>,
    next_pid: i64,
}

impl Peer for Qga {
    type State = FakeAgentState;

    fn serve(shared: Arc<Shared<Self>>, stream: UnixStream) -> impl Future<Output = ()> + Send {
        serve(shared, stream)
    }
}

async fn serve(shared: Arc<Shared<Qga>>, stream: UnixStream) {
    let (mut reader, mut writer) = stream.into_split();
    let mut kill = shared.kill_signal();
    // The agent's own lexer also treats 0xFF as "flush the partial request".
    let mut decoder = LineDecoder::new(Framing::Qga);
    let mut buf = vec![0; 64 * 1024];
    loop {
        let read = tokio::select! {
            () = killed(&mut kill) => return,
            read = reader.read(&mut buf) => read,
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(read) => decoder.push(&buf[..read]),
        }
        while let Some(message) = decoder.next_message() {
            let (name, mut behavior) = match message.as_ref().ok().and_then(parse_request) {
                Some((name, args, _)) => {
                    let scripted = shared.script().record(&name, &args);
                    let behavior = scripted.unwrap_or_else(|| default_behavior(&shared, &name, &args));
                    (name, behavior)
                }
                None => (String::new(), Behavior::generic_error("JSON parse error or missing 'execute'")),
            };
            loop {
                let bytes = match behavior {
                    Behavior::Delay(delay, then) => {
                        tokio::select! {
                            () = killed(&mut kill) => return,
                            () = tokio::time::sleep(delay) => {}
                        }
                        behavior = *then;
                        continue;
                    }
                    Behavior::Reply(value) => {
                        let mut bytes = Vec::new();
                        if name == "guest-sync-delimited" {
                            bytes.push(SENTINEL);
                        }
                        bytes.extend(reply_line(Ok(value), None));
                        bytes
                    }
                    Behavior::Error { class, desc } => reply_line(Err((&class, &desc)), None),
                    Behavior::Raw(bytes) => bytes,
                    Behavior::NoReply => Vec::new(),
                    Behavior::Hang => return killed(&mut kill).await,
                    Behavior::Disconnect => return,
                };
                if writer.write_all(&bytes).await.is_err() {
                    return;
                }
                break;
            }
        }
    }
}

/// What qemu-ga would answer, with its effect on the simulated guest.
fn default_behavior(shared: &Shared<Qga>, name: &str, args: &Value) -> Behavior {
    let mut state = shared.state();
    let reply = match name {
        "guest-sync-delimited" | "guest-sync" => args.get("id").cloned().unwrap_or(Value::Null),
        "guest-ping" => json!({}),
        "guest-info" => json!({ "version": "7.2.0-fake", "supported_commands": supported_commands() }),
        "guest-get-osinfo" => json!({
            "id": "vmsnap-fake", "name": "vmsnap fake guest", "pretty-name": "vmsnap fake guest",
            "kernel-release": "6.1.0-fake", "machine": "x86_64",
        }),
        "guest-get-host-name" => json!({ "host-name": "fake-guest" }),
        "guest-get-time" => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            json!(now.as_nanos() as u64)
        }
        "guest-fsfreeze-status" => json!(if state.frozen { "frozen" } else { "thawed" }),
        "guest-fsfreeze-freeze" | "guest-fsfreeze-freeze-list" => {
            if state.frozen {
                return Behavior::generic_error(
                    "Command guest-fsfreeze-freeze has been disabled: already frozen",
                );
            }
            state.frozen = true;
            json!(1)
        }
        "guest-fsfreeze-thaw" => json!(i64::from(std::mem::take(&mut state.frozen))),
        "guest-get-fsinfo" => json!([{
            "name": "vda1", "mountpoint": "/", "type": "ext4",
            "used-bytes": 1_048_576, "total-bytes": 10_485_760,
            "disk": [{
                "pci-controller": { "domain": 0, "bus": 0, "slot": 4, "function": 0 },
                "bus-type": "virtio", "bus": 0, "target": 0, "unit": 0,
                "serial": "vmsnap-disk0", "dev": "/dev/vda1",
            }],
        }]),
        "guest-exec" => {
            state.next_pid += 1;
            let pid = 1000 + state.next_pid;
            let argv =
                args.get("arg").and_then(|a| serde_json::from_value(a.clone()).ok()).unwrap_or_default();
            state.processes.insert(pid, argv);
            json!({ "pid": pid })
        }
        "guest-exec-status" => {
            let pid = args.get("pid").and_then(Value::as_i64).unwrap_or_default();
            let Some(argv) = state.processes.remove(&pid) else {
                return Behavior::generic_error(&format!("Invalid parameter 'pid' {pid}"));
            };
            let stdout = format!("{}\n", argv.join(" "));
            json!({ "exited": true, "exitcode": 0, "out-data": STANDARD.encode(stdout), "err-data": "" })
        }
        "guest-shutdown" => return Behavior::NoReply,
        "guest-network-get-interfaces" => json!([{
            "name": "lo", "hardware-address": "00:00:00:00:00:00",
            "ip-addresses": [{ "ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8 }],
        }]),
        _ => {
            return Behavior::Error {
                class: "CommandNotFound".into(),
                desc: format!("The command {name} has not been found"),
            };
        }
    };
    Behavior::Reply(reply)
}

fn supported_commands() -> Vec<Value> {
    [
        "guest-sync-delimited",
        "guest-sync",
        "guest-ping",
        "guest-info",
        "guest-get-osinfo",
        "guest-get-host-name",
        "guest-get-time",
        "guest-fsfreeze-status",
        "guest-fsfreeze-freeze",
        "guest-fsfreeze-freeze-list",
        "guest-fsfreeze-thaw",
        "guest-get-fsinfo",
        "guest-exec",
        "guest-exec-status",
        "guest-shutdown",
        "guest-network-get-interfaces",
    ]
    .iter()
    .map(|name| json!({ "name": name, "enabled": true, "success-response": *name != "guest-shutdown" }))
    .collect()
}
