//! `vmsnap console VM`: the VM's serial console over the API server's WebSocket
//! (`GET .../virtualmachineinstances/NAME/console`), with the terminal in raw mode; Ctrl-] leaves.
//!
//! The WebSocket goes through the kube client's connection, so it is authenticated and verified
//! exactly like every other API call (bearer token, CA from the kubeconfig).

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use futures::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use vmsnap_api::kubevirt::VirtualMachine;

use super::client::{ConnectionArgs, Session};
use super::errors::{CliError, CliResult, Exit, Kind, status_error};

/// Ctrl-], the escape byte.
const ESCAPE: u8 = 0x1d;

/// `vmsnap console`.
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  vmsnap console db          # press Ctrl-] to leave")]
pub struct ConsoleArgs {
    /// The VM.
    vm: String,
}

/// Runs `vmsnap console`.
pub async fn run(args: ConsoleArgs, conn: &ConnectionArgs) -> CliResult<ExitCode> {
    let session = conn.connect().await?;
    session.get::<VirtualMachine>(Kind::Vm, &args.vm).await?;
    let ws = connect(&session, &args.vm).await?;
    errln!("Connected to the console of VM \"{}\". Press Ctrl-] to leave.", args.vm);
    let raw = RawMode::enable();
    let result = bridge(ws).await;
    drop(raw);
    err!("\n");
    result.map(|()| ExitCode::SUCCESS)
}

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Opens the console WebSocket through the kube client.
async fn connect(session: &Session, vm: &str) -> CliResult<Socket> {
    let key = generate_key();
    let url = format!(
        "/apis/subresources.kubevirt.io/v1/namespaces/{}/virtualmachineinstances/{vm}/console",
        session.namespace
    );
    let request = http::Request::get(url)
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "websocket")
        .header(http::header::SEC_WEBSOCKET_VERSION, "13")
        .header(http::header::SEC_WEBSOCKET_KEY, &key)
        .body(kube::client::Body::from(Vec::new()))
        .map_err(|e| CliError::new(Exit::Error, format!("cannot build the console request: {e}")))?;
    let response = session
        .client
        .send(request)
        .await
        .map_err(|e| session.error(e, "open the console of", Kind::Vmi, vm))?;
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        let code = response.status().as_u16();
        let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let status: kube::core::Status =
            serde_json::from_slice(&body).unwrap_or_else(|_| kube::core::Status {
                code,
                message: String::from_utf8_lossy(&body).into_owned(),
                ..Default::default()
            });
        return Err(status_error(
            &status,
            "open the console of",
            &session.target(Kind::Vmi, vm),
            &session.server,
        ));
    }
    let accepted = response.headers().get(http::header::SEC_WEBSOCKET_ACCEPT).and_then(|v| v.to_str().ok());
    if accepted != Some(derive_accept_key(key.as_bytes()).as_str()) {
        return Err(CliError::new(
            Exit::Error,
            "the API server answered the console request with a bad WebSocket handshake",
        ));
    }
    let upgraded = hyper::upgrade::on(response).await.map_err(|e| {
        CliError::new(Exit::Connection, format!("cannot open the console of VM \"{vm}\": {e}"))
    })?;
    Ok(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await)
}

/// Input read from the terminal.
enum Input {
    Bytes(Vec<u8>),
    /// Ctrl-] was typed.
    Escape,
    /// End of input (a pipe closed).
    End,
}

/// Copies stdin to the console and the console to stdout until Ctrl-], the end of a piped input
/// (after one quiet second), or the server closing the console.
async fn bridge(ws: Socket) -> CliResult<()> {
    let (mut sink, mut source) = ws.split();
    let mut input = stdin_reader();
    let mut stdout = std::io::stdout();
    let mut ended = false;
    loop {
        let quiet =
            tokio::time::sleep(if ended { Duration::from_secs(1) } else { Duration::from_secs(86_400) });
        tokio::select! {
            message = source.next() => match message {
                Some(Ok(Message::Binary(bytes))) => write_out(&mut stdout, &bytes),
                Some(Ok(Message::Text(text))) => write_out(&mut stdout, text.as_bytes()),
                Some(Ok(Message::Close(_))) | None => {
                    err!("\r\nThe console was closed by the server.");
                    return Ok(());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(CliError::new(Exit::Connection, format!("the console connection broke: {e}"))),
            },
            read = input.recv(), if !ended => match read {
                Some(Input::Bytes(bytes)) => {
                    if let Err(e) = sink.send(Message::Binary(bytes.into())).await {
                        return Err(CliError::new(Exit::Connection, format!("the console connection broke: {e}")));
                    }
                }
                Some(Input::Escape) => {
                    let _ = sink.send(Message::Close(None)).await;
                    return Ok(());
                }
                Some(Input::End) | None => ended = true,
            },
            _ = quiet => {
                let _ = sink.send(Message::Close(None)).await;
                return Ok(());
            }
        }
    }
}

fn write_out(stdout: &mut std::io::Stdout, bytes: &[u8]) {
    let _ = stdout.write_all(bytes);
    let _ = stdout.flush();
}

/// Reads stdin on a plain thread (a blocking read must not hold up the runtime's shutdown).
fn stdin_reader() -> mpsc::Receiver<Input> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 1024];
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.blocking_send(Input::End);
                    return;
                }
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            match chunk.iter().position(|&b| b == ESCAPE) {
                Some(i) => {
                    if i > 0 {
                        let _ = tx.blocking_send(Input::Bytes(chunk[..i].to_vec()));
                    }
                    let _ = tx.blocking_send(Input::Escape);
                    return;
                }
                None => {
                    if tx.blocking_send(Input::Bytes(chunk.to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// The terminal in raw mode (keys go to the guest as typed, Ctrl-C included) while it lives.
struct RawMode(Option<Termios>);

impl RawMode {
    fn enable() -> RawMode {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return RawMode(None);
        }
        let Ok(saved) = tcgetattr(&stdin) else { return RawMode(None) };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        match tcsetattr(&stdin, SetArg::TCSANOW, &raw) {
            Ok(()) => RawMode(Some(saved)),
            Err(_) => RawMode(None),
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, saved);
        }
    }
}
