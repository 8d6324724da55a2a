//! Feeds arbitrary bytes, in arbitrary chunks, to the QGA decoder (with its
//! 0xFF sentinel and resync mode) and to the guest agent session.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmsnap_qemu::codec::{Framing, LineDecoder};
use vmsnap_qemu::qga::QgaSession;

const MAX_LINE: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let chunk_size = usize::from(control >> 2).max(1);
    let mut decoder = LineDecoder::with_max_line(Framing::Qga, MAX_LINE);
    if control & 1 == 1 {
        decoder.resync();
    }
    let mut session = QgaSession::with_decoder(LineDecoder::with_max_line(Framing::Qga, MAX_LINE));
    session.begin_sync(u64::from(control));
    for (i, chunk) in input.chunks(chunk_size).enumerate() {
        decoder.push(chunk);
        while decoder.next_message().is_some() {}
        assert!(decoder.buffered() <= MAX_LINE + chunk.len());

        session.push_bytes(chunk);
        while session.poll_output().is_some() {}
        if control & 2 == 2 && i % 3 == 0 {
            let _ = session.start_command("guest-ping", None);
        }
    }
});
