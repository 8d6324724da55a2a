//! Feeds arbitrary bytes, in arbitrary chunks, to the QMP decoder and session.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmsnap_qemu::codec::{Framing, LineDecoder};
use vmsnap_qemu::qmp::QmpSession;

const MAX_LINE: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk_size, input)) = data.split_first() else {
        return;
    };
    let chunk_size = usize::from(chunk_size).max(1);
    let mut decoder = LineDecoder::with_max_line(Framing::Qmp, MAX_LINE);
    let mut session = QmpSession::with_decoder(LineDecoder::with_max_line(Framing::Qmp, MAX_LINE));
    for chunk in input.chunks(chunk_size) {
        decoder.push(chunk);
        while decoder.next_message().is_some() {}
        assert!(decoder.buffered() <= MAX_LINE + chunk.len());

        session.push_bytes(chunk);
        while session.poll_output().is_some() {}
        session.take_transmit();
        if let Ok(outgoing) = session.start_command("query-status", None)
            && outgoing.id % 2 == 0
        {
            session.abandon(outgoing.id);
        }
    }
});
