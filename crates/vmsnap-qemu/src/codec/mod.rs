//! Newline-delimited JSON framing shared by QMP and QGA.
//!
//! Both protocols exchange one JSON object per line. QEMU terminates its lines
//! with `\r\n`; clients may use a bare `\n`. [`LineDecoder`] accepts arbitrary
//! byte chunks (a read may end in the middle of a line or of a UTF-8 sequence)
//! and yields one decoded object per complete line. It never panics on input:
//! bad lines become a [`DecodeError`] and decoding carries on with the next line.
//!
//! QGA adds one twist: the reply to `guest-sync-delimited` is preceded by a
//! `0xFF` byte, a value that never occurs in UTF-8 JSON. With
//! [`Framing::Qga`] the decoder treats that byte as "forget any partial line",
//! and in resync mode ([`LineDecoder::resync`]) it drops everything up to and
//! including the next `0xFF`.

use serde::Serialize;
use serde_json::{Map, Value};

#[cfg(test)]
mod tests;

/// The largest line accepted by default: 16 MiB, above QGA's own 16 MB cap on captured `guest-exec` output.
pub const DEFAULT_MAX_LINE: usize = 16 * 1024 * 1024;

/// The byte `guest-sync-delimited` puts before its reply (and clients put before the request).
pub const SENTINEL: u8 = 0xFF;

/// How many bytes of an offending line an error message quotes.
const PREVIEW_LEN: usize = 120;

/// Which protocol's framing rules a [`LineDecoder`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// QMP: plain newline-delimited JSON; a `0xFF` byte is just invalid input.
    Qmp,
    /// QGA: newline-delimited JSON where `0xFF` resets the partial line.
    Qga,
}

/// Why one line of input could not be turned into a message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A line grew past the size limit; it was dropped up to its newline.
    #[error("a message line exceeded the limit of {limit} bytes and was discarded")]
    LineTooLong {
        /// The limit in force, in bytes.
        limit: usize,
    },
    /// A complete line was not valid JSON.
    #[error("a message line is not valid JSON: {preview:?}")]
    InvalidJson {
        /// The start of the offending line.
        preview: String,
        /// What the JSON parser objected to.
        #[source]
        source: serde_json::Error,
    },
    /// A complete line was valid JSON but not an object, which both protocols require.
    #[error("a message line is JSON but not an object: {preview:?}")]
    NotAnObject {
        /// The start of the offending line.
        preview: String,
    },
}

/// Incremental decoder from bytes to JSON objects, one per line.
#[derive(Debug)]
pub struct LineDecoder {
    framing: Framing,
    max_line: usize,
    /// Bytes received and not yet returned as a message.
    buf: Vec<u8>,
    /// How much of `buf` is known to contain no newline, so a scan never repeats.
    scanned: usize,
    /// A too-long line is being dropped up to its newline.
    discarding: bool,
    /// QGA only: everything up to and including the next `0xFF` is dropped.
    resyncing: bool,
}

impl LineDecoder {
    /// A decoder with the default line limit ([`DEFAULT_MAX_LINE`]).
    pub fn new(framing: Framing) -> Self {
        Self::with_max_line(framing, DEFAULT_MAX_LINE)
    }

    /// A decoder that rejects lines longer than `max_line` bytes (at least 1).
    pub fn with_max_line(framing: Framing, max_line: usize) -> Self {
        Self {
            framing,
            max_line: max_line.max(1),
            buf: Vec::new(),
            scanned: 0,
            discarding: false,
            resyncing: false,
        }
    }

    /// The framing this decoder applies.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// How many received bytes are buffered and not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether the decoder is dropping input until the next `0xFF` sentinel.
    pub fn is_resyncing(&self) -> bool {
        self.resyncing
    }

    /// Enters resync mode: drops all buffered input and everything that follows
    /// up to and including the next `0xFF`. Has no effect on QMP framing, which
    /// has no sentinel.
    pub fn resync(&mut self) {
        if self.framing == Framing::Qga {
            self.resyncing = true;
            self.clear();
        }
    }

    /// Adds received bytes. Call [`LineDecoder::next_message`] until it returns
    /// `None` after each push, so the buffer stays bounded by the line limit.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.framing == Framing::Qmp {
            self.buf.extend_from_slice(bytes);
            return;
        }
        let mut segments = bytes.split(|&b| b == SENTINEL);
        if let Some(before_any_sentinel) = segments.next()
            && !self.resyncing
        {
            self.buf.extend_from_slice(before_any_sentinel);
        }
        for after_sentinel in segments {
            // The sentinel tells the reader to flush its lexer: a partial line
            // before it is stale, complete lines before it still count unless
            // the decoder was told to resync.
            if std::mem::take(&mut self.resyncing) {
                self.clear();
            } else {
                self.drop_partial_line();
            }
            self.discarding = false;
            self.buf.extend_from_slice(after_sentinel);
        }
    }

    /// Returns the next complete message, a decode error for the next bad line,
    /// or `None` when more bytes are needed.
    pub fn next_message(&mut self) -> Option<Result<Map<String, Value>, DecodeError>> {
        loop {
            let Some(offset) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') else {
                self.scanned = self.buf.len();
                return self.check_overflow();
            };
            let end = self.scanned + offset;
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            self.scanned = 0;
            if std::mem::take(&mut self.discarding) {
                continue;
            }
            if line.len() - 1 > self.max_line {
                return Some(Err(DecodeError::LineTooLong { limit: self.max_line }));
            }
            let text = line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            return Some(parse_object(text));
        }
    }

    /// Reports (once) and starts dropping a partial line that is already too long.
    fn check_overflow(&mut self) -> Option<Result<Map<String, Value>, DecodeError>> {
        if self.buf.len() <= self.max_line {
            return None;
        }
        self.clear();
        if std::mem::replace(&mut self.discarding, true) {
            None
        } else {
            Some(Err(DecodeError::LineTooLong { limit: self.max_line }))
        }
    }

    /// Drops the unterminated tail of the buffer, keeping complete lines.
    fn drop_partial_line(&mut self) {
        let keep = self.buf.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        self.buf.truncate(keep);
        self.scanned = self.scanned.min(keep);
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.scanned = 0;
    }
}

fn parse_object(text: &[u8]) -> Result<Map<String, Value>, DecodeError> {
    match serde_json::from_slice::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(DecodeError::NotAnObject { preview: preview(text) }),
        Err(source) => Err(DecodeError::InvalidJson { preview: preview(text), source }),
    }
}

/// The start of `bytes` as text, for error messages.
pub(crate) fn preview(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(PREVIEW_LEN)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if bytes.len() > PREVIEW_LEN {
        text.push('…');
    }
    text
}

/// Encodes one message as a JSON line terminated by `\n`.
pub fn encode_line(message: &impl Serialize) -> Result<Vec<u8>, serde_json::Error> {
    let mut line = serde_json::to_vec(message)?;
    line.push(b'\n');
    Ok(line)
}
