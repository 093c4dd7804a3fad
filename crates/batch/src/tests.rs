//! Splitting each format: the records come back as the sender's exact bytes, per-record
//! problems stay per record, framing problems refuse the whole batch.

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message;

use super::*;

const LIMITS: Limits = Limits {
    max_records: 1000,
    max_record_bytes: 64,
};

fn records(pieces: Vec<Piece>) -> Vec<Result<String, &'static str>> {
    pieces
        .into_iter()
        .map(|p| {
            p.map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(|e| e.code())
        })
        .collect()
}

fn split_text(
    format: BatchFormat,
    body: &str,
) -> Result<Vec<Result<String, &'static str>>, BatchError> {
    split(format, &Bytes::copy_from_slice(body.as_bytes()), LIMITS).map(records)
}

#[test]
fn ndjson_lines_are_records_and_a_bad_line_is_refused_alone() {
    let body = "{\"id\":1}\r\n\n  \nnot json\n[1, 2]\n{\"id\":\"x\"}";
    assert_eq!(
        split_text(BatchFormat::Ndjson, body).expect("split"),
        vec![
            Ok("{\"id\":1}".into()),
            Err("record_not_json"),
            Ok("[1, 2]".into()),
            Ok("{\"id\":\"x\"}".into()),
        ]
    );
}

#[test]
fn a_json_array_keeps_each_element_byte_for_byte() {
    let body = "[ {\"b\": 1,  \"a\":2.50}, \"text\",\n{\"big\":\"0123456789012345678901234567890123456789012345678901234567890123456789\"} ]";
    assert_eq!(
        split_text(BatchFormat::JsonArray, body).expect("split"),
        vec![
            Ok("{\"b\": 1,  \"a\":2.50}".into()),
            Ok("\"text\"".into()),
            Err("record_too_large"),
        ]
    );
}

#[test]
fn bodies_that_cannot_be_split_refuse_the_whole_batch() {
    for (format, body, code) in [
        (BatchFormat::Ndjson, "", "batch_empty"),
        (BatchFormat::Ndjson, "\n \r\n", "batch_empty"),
        (BatchFormat::JsonArray, "[]", "batch_empty"),
        (BatchFormat::JsonArray, "{\"id\":1}", "batch_malformed"),
        (
            BatchFormat::JsonArray,
            "[{\"id\":1}, nope]",
            "batch_malformed",
        ),
        (BatchFormat::JsonArray, "[1,2", "batch_malformed"),
        (BatchFormat::ProtobufDelimited, "", "batch_empty"),
    ] {
        let refused = split_text(format, body).expect_err(body);
        assert_eq!(refused.code(), code, "{body:?}: {refused}");
    }
}

#[test]
fn more_records_than_the_cap_refuse_the_batch() {
    let limits = Limits {
        max_records: 2,
        max_record_bytes: 64,
    };
    let body = Bytes::from_static(b"1\n2\n3\n");
    assert_eq!(
        split(BatchFormat::Ndjson, &body, limits),
        Err(BatchError::TooManyRecords { max: 2 })
    );
    let array = Bytes::from_static(b"[1, 2, 3, 4]");
    assert_eq!(
        split(BatchFormat::JsonArray, &array, limits),
        Err(BatchError::TooManyRecords { max: 2 })
    );
    // A body of empty frames stops at the cap rather than at its end.
    let zeros = Bytes::from(vec![0u8; 1_000_000]);
    assert_eq!(
        split(BatchFormat::ProtobufDelimited, &zeros, limits),
        Err(BatchError::TooManyRecords { max: 2 })
    );
}

/// Frames as prost writes them (`encode_length_delimited`, the library's own encoder).
fn delimited(messages: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for message in messages {
        message
            .encode_length_delimited(&mut out)
            .expect("a Vec grows");
    }
    out
}

#[test]
fn protobuf_frames_written_by_prost_split_into_its_messages() {
    let messages = vec!["meter-1".to_owned(), String::new(), "x".repeat(300)];
    let body = Bytes::from(delimited(&messages));
    let pieces = split(BatchFormat::ProtobufDelimited, &body, LIMITS).expect("split");
    assert_eq!(pieces.len(), 3);
    let first = pieces[0].clone().expect("first fits");
    assert_eq!(String::decode(first).expect("decodes"), "meter-1");
    // An empty string is an empty message: a zero-length frame is a record.
    assert_eq!(pieces[1].as_ref().map(Bytes::len), Ok(0));
    assert_eq!(
        pieces[2].as_ref().map_err(RecordError::code),
        Err("record_too_large")
    );
}

#[test]
fn a_truncated_frame_refuses_the_batch_and_says_where() {
    let mut body = delimited(&["first".into(), "second record".into()]);
    body.truncate(body.len() - 3);
    let refused =
        split(BatchFormat::ProtobufDelimited, &Bytes::from(body), LIMITS).expect_err("truncated");
    assert_eq!(refused.code(), "batch_malformed");
    // The first frame: its length (1 byte), the string's tag and length (2), "first" (5).
    assert!(
        matches!(
            refused,
            BatchError::BadFrame {
                index: 1,
                offset: 8,
                ..
            }
        ),
        "{refused:?}"
    );
    // A prefix that never ends (every byte has its continuation bit) is no length at all.
    let refused = split(
        BatchFormat::ProtobufDelimited,
        &Bytes::from(vec![0xff; 11]),
        LIMITS,
    )
    .expect_err("not a varint");
    assert!(refused.to_string().contains("not a varint"), "{refused}");
}

proptest! {
    #[test]
    fn no_body_makes_a_split_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let body = Bytes::from(body);
        for format in [BatchFormat::Ndjson, BatchFormat::JsonArray, BatchFormat::ProtobufDelimited] {
            if let Ok(pieces) = split(format, &body, LIMITS) {
                prop_assert!(!pieces.is_empty() && pieces.len() <= LIMITS.max_records);
            }
        }
    }

    #[test]
    fn every_format_gives_back_what_was_framed(
        values in proptest::collection::vec(any::<u32>(), 1..40),
    ) {
        let texts: Vec<String> = values.iter().map(|v| format!("{{\"id\":{v}}}")).collect();
        let ndjson = texts.join("\n");
        let array = format!("[{}]", texts.join(","));
        for (format, body) in [
            (BatchFormat::Ndjson, ndjson.into_bytes()),
            (BatchFormat::JsonArray, array.into_bytes()),
            (BatchFormat::ProtobufDelimited, delimited(&texts)),
        ] {
            let pieces = split(format, &Bytes::from(body), LIMITS).expect("split");
            let got: Vec<String> = pieces
                .into_iter()
                .map(|p| {
                    let bytes = p.expect("every record fits");
                    if format == BatchFormat::ProtobufDelimited {
                        String::decode(bytes).expect("decodes")
                    } else {
                        String::from_utf8(bytes.to_vec()).expect("utf-8")
                    }
                })
                .collect();
            prop_assert_eq!(&got, &texts);
        }
    }
}
