//! An OTLP/HTTP trace collector for tests: a [`TestSubscriber`] that answers 200 to every
//! export, with the protobuf bodies decoded into flat spans.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

use crate::TestSubscriber;

/// One exported span, ids in lowercase hex.
#[derive(Debug, Clone)]
pub struct ExportedSpan {
    pub service: String,
    pub name: String,
    /// `server`, `client`, `producer`, `consumer` or `internal`.
    pub kind: &'static str,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub attributes: BTreeMap<String, String>,
    /// (trace id, span id) of each link.
    pub links: Vec<(String, String)>,
    /// 2 means error (OTLP `STATUS_CODE_ERROR`).
    pub status_code: i32,
}

impl ExportedSpan {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// A collector listening on 127.0.0.1; its base URL is `collector.url("")`.
pub async fn collector() -> TestSubscriber {
    TestSubscriber::ok().await
}

/// Every span the collector received so far. Panics on a body that is not an OTLP export: a
/// Spillway process sent something else to the traces endpoint.
pub fn spans(collector: &TestSubscriber) -> Vec<ExportedSpan> {
    let mut out = Vec::new();
    for request in collector.received() {
        assert_eq!(
            request.header("content-type"),
            Some("application/x-protobuf"),
            "OTLP/HTTP exports are protobuf"
        );
        let export = ExportTraceServiceRequest::decode(request.body.as_ref())
            .expect("an OTLP ExportTraceServiceRequest");
        for resource in export.resource_spans {
            let service = resource
                .resource
                .as_ref()
                .and_then(|r| attributes(&r.attributes).remove("service.name"))
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    out.push(ExportedSpan {
                        service: service.clone(),
                        kind: match span.kind {
                            1 => "internal",
                            2 => "server",
                            3 => "client",
                            4 => "producer",
                            5 => "consumer",
                            _ => "unspecified",
                        },
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        attributes: attributes(&span.attributes),
                        links: span
                            .links
                            .iter()
                            .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                            .collect(),
                        status_code: span.status.map(|s| s.code).unwrap_or_default(),
                    });
                }
            }
        }
    }
    out
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
