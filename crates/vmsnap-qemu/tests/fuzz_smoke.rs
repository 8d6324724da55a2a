//! Deterministic "fuzz smoke": thousands of pseudo-random inputs through the
//! decoders and sessions, asserting no panic, bounded buffers, and that how the
//! bytes are chunked never changes which messages come out. The real fuzzers
//! live in `fuzz/` (cargo-fuzz).

use serde_json::Value;
use vmsnap_qemu::codec::{Framing, LineDecoder};
use vmsnap_qemu::qga::QgaSession;
use vmsnap_qemu::qmp::QmpSession;

const CASES: usize = 4000;
const MAX_LINE: usize = 256;

/// xorshift64*: tiny, deterministic, good enough to shake a parser.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Fragments that look like the real protocol, so inputs reach deep states.
const FRAGMENTS: &[&[u8]] = &[
    b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": []}}\r\n",
    b"{\"return\": {}, \"id\": 1}\r\n",
    b"{\"return\": {}, \"id\": 2}\r\n",
    b"{\"return\": 17}\n",
    b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"x\"}, \"id\": 2}\r\n",
    b"{\"error\": {\"class\": 5}}\n",
    b"{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\n",
    b"{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": 1}}\n",
    b"{\"event\": null}\n",
    b"{\"QMP\": 3}\n",
    b"[1, 2]\n",
    b"\xff",
    b"\r\n",
    b"\n",
    b"{\"return\": ",
    b"}}}}",
    b"\"\\u00e9\\ud800\"",
    b"\xc3\x28",
    b"{\"a\": \"0123456789012345678901234567890123456789012345678901234567890123456789\"}",
];

fn random_input(rng: &mut Rng) -> Vec<u8> {
    let mut input = Vec::new();
    for _ in 0..rng.below(24) {
        if rng.below(4) == 0 {
            input.extend((0..rng.below(40)).map(|_| rng.next() as u8));
        } else {
            input.extend_from_slice(FRAGMENTS[rng.below(FRAGMENTS.len())]);
        }
    }
    input
}

fn random_chunks<'a>(rng: &mut Rng, mut bytes: &'a [u8]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    while !bytes.is_empty() {
        let (chunk, rest) = bytes.split_at(1 + rng.below(bytes.len().min(64)));
        chunks.push(chunk);
        bytes = rest;
    }
    chunks
}

fn decoded_messages(framing: Framing, chunks: &[&[u8]]) -> Vec<Value> {
    let mut decoder = LineDecoder::with_max_line(framing, MAX_LINE);
    let mut messages = Vec::new();
    for chunk in chunks {
        decoder.push(chunk);
        while let Some(message) = decoder.next_message() {
            messages.extend(message.ok().map(Value::Object));
        }
        assert!(decoder.buffered() <= MAX_LINE + chunk.len(), "buffer outgrew the line limit");
    }
    messages
}

#[test]
fn decoders_never_panic_and_chunking_never_changes_the_messages() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut decoded = 0;
    for _ in 0..CASES {
        let input = random_input(&mut rng);
        let chunks = random_chunks(&mut rng, &input);
        for framing in [Framing::Qmp, Framing::Qga] {
            let whole = decoded_messages(framing, &[&input]);
            let piecewise = decoded_messages(framing, &chunks);
            assert_eq!(whole, piecewise, "framing {framing:?}, input {:?}", String::from_utf8_lossy(&input));
            decoded += whole.len();
        }
    }
    assert!(decoded > CASES * 4, "the generator should produce mostly decodable lines, got {decoded}");
}

#[test]
fn sessions_never_panic_on_random_input() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for _ in 0..CASES {
        let input = random_input(&mut rng);
        let mut qmp = QmpSession::with_decoder(LineDecoder::with_max_line(Framing::Qmp, MAX_LINE));
        let mut qga = QgaSession::with_decoder(LineDecoder::with_max_line(Framing::Qga, MAX_LINE));
        let mut outputs = 0usize;
        for chunk in random_chunks(&mut rng, &input) {
            qmp.push_bytes(chunk);
            outputs += std::iter::from_fn(|| qmp.poll_output()).count();
            let _ = qmp.take_transmit();
            if qmp.start_command("query-status", None).is_ok() && rng.below(2) == 0 {
                qmp.abandon(u64::try_from(rng.below(4)).unwrap());
            }
            match rng.below(3) {
                0 => drop(qga.begin_sync(17)),
                1 => drop(qga.start_command("guest-ping", None)),
                _ => {}
            }
            qga.push_bytes(chunk);
            outputs += std::iter::from_fn(|| qga.poll_output()).count();
        }
        assert!(outputs <= input.len() * 2 + 2, "more outputs than lines");
    }
}
