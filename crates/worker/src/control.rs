//! The headers of the records the workers read and park: the control header names (kept with
//! the other record headers in [`spillway_core::headers::control`] and re-exported here), a
//! parked record's headers, and what a record's headers say (their text, its event type).

use http::{HeaderMap, HeaderName, HeaderValue};
use rdkafka::message::{Headers, Message, OwnedMessage};
use spillway_config::SourceRoute;
use spillway_core::key::{Fields, KeyInput, KeySource};

// The names moved to the core crate with every other `spillway-*` header; re-exported so
// `spillway_worker::control::SUBSCRIPTION` and the like keep working.
pub use spillway_core::headers::control::*;

/// The original record's headers without earlier control headers, then the new ones.
pub(crate) fn parked_headers(
    message: &OwnedMessage,
    control: &[(&str, String)],
) -> Vec<(String, Vec<u8>)> {
    with_control(header_pairs(message), control)
}

/// A record's headers as (name, value) pairs; a header without a value reads as empty.
pub(crate) fn header_pairs(message: &OwnedMessage) -> Vec<(&str, &[u8])> {
    message
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| (h.key, h.value.unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// A parked record's headers: the original ones without earlier control headers, then the
/// new control headers. Used for retries, dead letters, redrives and replays alike.
pub(crate) fn with_control<'a>(
    original: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    control: &[(&str, String)],
) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = original
        .into_iter()
        .filter(|(k, _)| !ALL.contains(k))
        .map(|(k, v)| (k.to_owned(), v.to_vec()))
        .collect();
    out.extend(
        control
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone().into_bytes())),
    );
    out
}

/// The text of the first header `name` of a record, when it has a UTF-8 value.
pub(crate) fn header_text(message: &OwnedMessage, name: &str) -> Option<String> {
    header_str(message, name).map(str::to_owned)
}

/// The text of the record's first header named `name`, borrowed.
pub(crate) fn header_str<'m>(message: &'m OwnedMessage, name: &str) -> Option<&'m str> {
    let hs = message.headers()?;
    hs.iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// The event type of a record of `source`, read as the source's `event_type` says (from the
/// record's headers, its JSON body or its Protobuf fields, or, for a body in object storage,
/// from the `spillway-event-type` header the ingress wrote); `None` when the source has none
/// or the record lacks it.
pub fn event_type<'a>(
    source: &SourceRoute,
    record_headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    body: &[u8],
) -> Option<String> {
    let key = source.event_type.as_ref()?;
    let mut map = HeaderMap::new();
    for (name, value) in record_headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            map.append(name, value);
        }
    }
    // A record whose body is in object storage carries the type the ingress read from it.
    if let Some(stored) = map.get(spillway_core::headers::EVENT_TYPE) {
        return String::from_utf8(stored.as_bytes().to_vec()).ok();
    }
    // A Protobuf field is read from the record decoded as the source's message type.
    let decoded = match key {
        KeySource::ProtobufField { .. } => Some(source.schema.as_ref()?.schema.read(body)?),
        _ => None,
    };
    let fields = decoded.as_ref().map(|d| d as &dyn Fields);
    key.extract(&KeyInput::new(&map, body, None).with_fields(fields))
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use spillway_core::headers;

    use super::*;
    use crate::test_support::{github_source, record};

    #[test]
    fn earlier_control_headers_are_replaced_and_the_others_kept_in_order() {
        let original: [(&str, &[u8]); 5] = [
            (headers::EVENT_ID, b"e-1"),
            (ATTEMPT, b"2"),
            ("x-github-event", b"push"),
            (DEAD_REASON, b"target_refused"),
            (LAST_STATUS, b"500"),
        ];
        let out = with_control(
            original,
            &[(SUBSCRIPTION, "s1".into()), (ATTEMPT, "3".into())],
        );
        let names: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [headers::EVENT_ID, "x-github-event", SUBSCRIPTION, ATTEMPT]
        );
        assert_eq!(out[3].1, b"3");
        assert_eq!(out[1].1, b"push");
    }

    #[test]
    fn every_control_header_is_stripped() {
        let original: Vec<(&str, &[u8])> = ALL.iter().map(|n| (*n, b"old".as_slice())).collect();
        assert!(with_control(original, &[]).is_empty());
        assert_eq!(ALL.len(), 8, "a new control header must be listed in ALL");
    }

    #[test]
    fn a_record_header_reads_as_text_when_it_is_utf8() {
        let message = record(
            "t",
            0,
            &[("a", b"one"), ("a", b"two"), ("bin", &[0xff, 0xfe])],
            b"{}",
        );
        assert_eq!(header_text(&message, "a").as_deref(), Some("one"));
        assert_eq!(header_text(&message, "bin"), None);
        assert_eq!(header_text(&message, "missing"), None);
        let bare = OwnedMessage::new(
            None,
            None,
            "t".into(),
            rdkafka::Timestamp::NotAvailable,
            0,
            0,
            None,
        );
        assert_eq!(header_text(&bare, "a"), None);
        assert!(header_pairs(&bare).is_empty());
    }

    #[test]
    fn a_header_without_a_value_pairs_as_empty() {
        let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
            key: "empty",
            value: None::<&[u8]>,
        });
        let message = OwnedMessage::new(
            None,
            None,
            "t".into(),
            rdkafka::Timestamp::NotAvailable,
            0,
            0,
            Some(headers),
        );
        assert_eq!(header_pairs(&message), [("empty", b"".as_slice())]);
    }

    #[test]
    fn parked_headers_keep_the_record_and_replace_its_control() {
        let message = record(
            "t",
            3,
            &[
                (headers::EVENT_ID, b"e-1"),
                (NOT_BEFORE, b"1"),
                (LAST_ERROR, b"old"),
            ],
            b"{}",
        );
        let out = parked_headers(&message, &[(LAST_ERROR, "new".into())]);
        assert_eq!(
            out,
            [
                (headers::EVENT_ID.to_owned(), b"e-1".to_vec()),
                (LAST_ERROR.to_owned(), b"new".to_vec()),
            ]
        );
    }

    #[test]
    fn the_event_type_comes_from_where_the_source_says() {
        let github = github_source();
        let pushed: [(&str, &[u8]); 1] = [("x-github-event", b"push")];
        assert_eq!(event_type(&github, pushed, b"{}").as_deref(), Some("push"));
        assert_eq!(
            event_type(&github, [], b"{}"),
            None,
            "the header is missing"
        );
        let untyped = SourceRoute {
            event_type: None,
            ..github
        };
        assert_eq!(event_type(&untyped, pushed, b"{}"), None);
        // A record whose body is in object storage: the type the ingress read from the body.
        let stripe = SourceRoute {
            event_type: Some(KeySource::JsonPointer {
                pointer: "/type".into(),
            }),
            ..github_source()
        };
        let stored: [(&str, &[u8]); 1] = [(headers::EVENT_TYPE, b"invoice.paid")];
        assert_eq!(
            event_type(&stripe, stored, b"").as_deref(),
            Some("invoice.paid")
        );
        assert_eq!(event_type(&stripe, [], b"").as_deref(), None);
    }

    #[test]
    fn a_protobuf_event_type_is_read_from_the_decoded_record() {
        let yaml = format!(
            "kafka: {{ brokers: k:9092 }}\nredis: {{ nodes: [\"redis://r:7000\"] }}\nsources:\n  \
             meters:\n    verify: {{ scheme: none }}\n    batch: {{ format: protobuf_delimited }}\n    \
             event_type: {{ from: protobuf_field, field: kind }}\n    \
             schema: {{ protobuf: {{ descriptor_set: \"{SCHEMAS}/fleet.desc\", message: fleet.v1.Reading }} }}\n"
        );
        let config = spillway_config::parse_str(&yaml).expect("config");
        let meters = config.resolve_source_routes().expect("routes").remove(0);
        // protoc's encoding of a reading of kind ENERGY (dev/fleet-schemas/valid.txtpb).
        let record = std::fs::read(format!("{SCHEMAS}/valid.bin")).expect("record");
        assert_eq!(event_type(&meters, [], &record).as_deref(), Some("ENERGY"));
        assert_eq!(
            event_type(&meters, [], &[0x48, 0x01]),
            None,
            "not a reading"
        );
    }

    const SCHEMAS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dev/fleet-schemas");
}
