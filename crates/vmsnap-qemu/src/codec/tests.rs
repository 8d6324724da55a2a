use serde_json::{Value, json};

use super::*;

fn drain(decoder: &mut LineDecoder) -> Vec<Result<Value, String>> {
    std::iter::from_fn(|| decoder.next_message())
        .map(|m| m.map(Value::Object).map_err(|e| e.to_string()))
        .collect()
}

fn decode_all(framing: Framing, bytes: &[u8]) -> Vec<Result<Value, String>> {
    let mut decoder = LineDecoder::new(framing);
    decoder.push(bytes);
    drain(&mut decoder)
}

#[test]
fn complete_crlf_line_decodes_to_one_object() {
    let out = decode_all(Framing::Qmp, b"{\"return\": {}, \"id\": 1}\r\n");
    assert_eq!(out, vec![Ok(json!({"return": {}, "id": 1}))]);
}

#[test]
fn partial_line_waits_for_its_newline() {
    let mut decoder = LineDecoder::new(Framing::Qmp);
    decoder.push(b"{\"return\": ");
    assert!(decoder.next_message().is_none());
    decoder.push(b"42}");
    assert!(decoder.next_message().is_none());
    decoder.push(b"\r\n");
    assert_eq!(drain(&mut decoder), vec![Ok(json!({"return": 42}))]);
    assert_eq!(decoder.buffered(), 0);
}

#[test]
fn byte_by_byte_feeding_gives_the_same_messages_as_one_chunk() {
    let input = "{\"event\": \"STOP\"}\r\n{\"return\": {\"a\": \"é\"}, \"id\": 2}\n\r\n{\"x\": [1, 2]}\n";
    let whole = decode_all(Framing::Qmp, input.as_bytes());
    let mut decoder = LineDecoder::new(Framing::Qmp);
    let mut piecewise = Vec::new();
    for byte in input.as_bytes() {
        decoder.push(std::slice::from_ref(byte));
        piecewise.extend(drain(&mut decoder));
    }
    assert_eq!(whole.len(), 3);
    assert_eq!(piecewise, whole);
}

#[test]
fn blank_lines_are_skipped() {
    let out = decode_all(Framing::Qmp, b"\r\n  \n\t\r\n{\"a\": 1}\n\n");
    assert_eq!(out, vec![Ok(json!({"a": 1}))]);
}

#[test]
fn invalid_json_is_an_error_and_decoding_resumes_on_the_next_line() {
    let out = decode_all(Framing::Qmp, b"{\"return\": oops}\r\n{\"return\": 1}\r\n");
    assert_eq!(out.len(), 2);
    let error = out[0].as_ref().unwrap_err();
    assert!(error.contains("not valid JSON") && error.contains("oops"), "{error}");
    assert_eq!(out[1], Ok(json!({"return": 1})));
}

#[test]
fn json_that_is_not_an_object_is_an_error() {
    let out = decode_all(Framing::Qmp, b"[1, 2]\n\"text\"\n");
    assert!(out.iter().all(|m| m.as_ref().unwrap_err().contains("not an object")), "{out:?}");
}

#[test]
fn invalid_utf8_is_an_error_not_a_panic() {
    let out = decode_all(Framing::Qmp, b"{\"a\": \"\xc3\x28\"}\n");
    assert!(out[0].as_ref().unwrap_err().contains("not valid JSON"));
}

#[test]
fn a_sentinel_byte_is_invalid_input_for_qmp() {
    let out = decode_all(Framing::Qmp, b"\xff{\"return\": 1}\n");
    assert_eq!(out.len(), 1);
    assert!(out[0].is_err());
}

#[test]
fn line_of_exactly_the_limit_is_accepted() {
    let line = br#"{"a": "xxxx"}"#;
    let mut decoder = LineDecoder::with_max_line(Framing::Qmp, line.len());
    decoder.push(line);
    decoder.push(b"\n");
    assert_eq!(drain(&mut decoder), vec![Ok(json!({"a": "xxxx"}))]);
}

#[test]
fn complete_line_over_the_limit_is_reported_and_skipped() {
    let mut decoder = LineDecoder::with_max_line(Framing::Qmp, 16);
    decoder.push(b"{\"a\": \"0123456789abcdef\"}\n{\"b\": 1}\n");
    let out = drain(&mut decoder);
    assert_eq!(out.len(), 2);
    assert!(out[0].as_ref().unwrap_err().contains("limit of 16 bytes"));
    assert_eq!(out[1], Ok(json!({"b": 1})));
}

#[test]
fn growing_line_over_the_limit_is_reported_once_and_dropped_until_its_newline() {
    let mut decoder = LineDecoder::with_max_line(Framing::Qmp, 16);
    let mut out = Vec::new();
    for _ in 0..10 {
        decoder.push(b"0123456789");
        out.extend(drain(&mut decoder));
        assert!(decoder.buffered() <= 16 + 10);
    }
    decoder.push(b"tail of the long line}\n{\"ok\": true}\n");
    out.extend(drain(&mut decoder));
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(out[0].is_err());
    assert_eq!(out[1], Ok(json!({"ok": true})));
}

#[test]
fn qga_sentinel_drops_the_partial_line_before_it() {
    let out = decode_all(Framing::Qga, b"{\"return\": {\"stale\xff{\"return\": 7}\n");
    assert_eq!(out, vec![Ok(json!({"return": 7}))]);
}

#[test]
fn qga_sentinel_keeps_complete_lines_before_it() {
    let out = decode_all(Framing::Qga, b"{\"return\": 1}\n\xff{\"return\": 2}\n");
    assert_eq!(out, vec![Ok(json!({"return": 1})), Ok(json!({"return": 2}))]);
}

#[test]
fn qga_sentinel_split_from_its_line_across_chunks_still_resets() {
    let mut decoder = LineDecoder::new(Framing::Qga);
    decoder.push(b"{\"half");
    decoder.push(b"\xff");
    decoder.push(b"{\"return\": 3}\r\n");
    assert_eq!(drain(&mut decoder), vec![Ok(json!({"return": 3}))]);
}

#[test]
fn qga_resync_discards_everything_up_to_and_including_the_sentinel() {
    let mut decoder = LineDecoder::new(Framing::Qga);
    decoder.push(b"{\"return\": \"buffered\"}\n");
    decoder.resync();
    assert!(decoder.is_resyncing());
    decoder.push(b"{\"return\": \"stale\"}\r\n{\"return\": ");
    assert!(decoder.next_message().is_none());
    assert!(decoder.is_resyncing());
    decoder.push(b"\"half\"}\xff{\"return\": 99}\r\n");
    assert!(!decoder.is_resyncing());
    assert_eq!(drain(&mut decoder), vec![Ok(json!({"return": 99}))]);
}

#[test]
fn qga_sentinel_ends_the_discarding_of_an_overlong_line() {
    let mut decoder = LineDecoder::with_max_line(Framing::Qga, 8);
    decoder.push(b"0123456789012");
    assert!(matches!(decoder.next_message(), Some(Err(DecodeError::LineTooLong { limit: 8 }))));
    decoder.push(b"345\xff{\"a\":1}\n");
    assert_eq!(drain(&mut decoder), vec![Ok(json!({"a": 1}))]);
}

#[test]
fn resync_is_a_no_op_for_qmp() {
    let mut decoder = LineDecoder::new(Framing::Qmp);
    decoder.resync();
    assert!(!decoder.is_resyncing());
    decoder.push(b"{\"a\": 1}\n");
    assert_eq!(drain(&mut decoder), vec![Ok(json!({"a": 1}))]);
}

#[test]
fn encoded_line_ends_with_newline_and_round_trips() {
    let message = json!({"execute": "query-status", "id": 3});
    let line = encode_line(&message).unwrap();
    assert_eq!(line.last(), Some(&b'\n'));
    assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
    assert_eq!(decode_all(Framing::Qmp, &line), vec![Ok(message)]);
}

#[test]
fn error_preview_is_cut_to_a_readable_length() {
    let long = format!("{{\"a\": {}}}\n", "x".repeat(1000));
    let out = decode_all(Framing::Qmp, long.as_bytes());
    let error = out[0].as_ref().unwrap_err();
    assert!(error.len() < 300, "{error}");
    assert!(error.contains('…'));
}
