//! The loader and validation as a user meets them: defaults, environment overrides, and every
//! problem named with its field path. Beside it: `messages` pins every message, `process` what
//! each process reads, `errors` the helpers' typed errors, `limits` the limits checked against
//! each other, `hygiene` secrets kept out of output and the warnings.

mod batch;
mod errors;
mod hygiene;
mod limits;
mod messages;
mod process;
mod redis_tls;
mod schema;

use std::path::Path;
use std::time::Duration;

use figment::Jail;
use spillway_core::key::KeySource;

use crate::{load, ConfigError, FailMode};

const MINIMAL: &str = r#"
kafka:
  brokers: 127.0.0.1:9092
redis:
  nodes: [redis://127.0.0.1:7000]
sources:
  github:
    verify: { scheme: github }
    secrets:
      - { id: k1, env: GH_SECRET }
"#;

fn errors_of(result: Result<crate::Config, ConfigError>) -> Vec<String> {
    match result {
        Err(ConfigError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
        Err(ConfigError::Parse { source, .. }) => vec![source.to_string()],
        Ok(_) => vec![],
    }
}

#[test]
fn minimal_config_gets_sane_defaults() {
    Jail::expect_with(|jail| {
        jail.create_file("spillway.yaml", MINIMAL)?;
        jail.set_env("GH_SECRET", "It's a Secret to Everybody");
        let config = load(Path::new("spillway.yaml")).map_err(|e| e.to_string())?;
        assert_eq!(config.redis.window, Duration::from_secs(86_400));
        assert_eq!(config.kafka.topic_prefix, "spillway.");
        assert_eq!(
            config.kafka.linger,
            Duration::from_millis(5),
            "librdkafka's own default, as docs/configuration.md says"
        );
        assert!(config.telemetry.access_log);
        assert_eq!(
            config.telemetry.otlp_endpoint, None,
            "no traces unless configured"
        );
        let sources = config.resolve_sources().map_err(|e| format!("{e:?}"))?;
        let gh = &sources[0];
        assert_eq!(gh.topic, "spillway.github");
        assert_eq!(
            gh.dedupe,
            KeySource::Header {
                name: "x-github-delivery".into()
            }
        );
        assert_eq!(gh.on_redis_unavailable, FailMode::FailClosed);
        assert_eq!(gh.max_body_bytes, 960 * 1024);
        assert!(gh
            .forward_headers
            .contains(&"x-hub-signature-256".to_string()));
        Ok(())
    });
}

#[test]
fn environment_overrides_nested_fields_and_ignores_other_spillway_vars() {
    Jail::expect_with(|jail| {
        jail.create_file("spillway.yaml", MINIMAL)?;
        jail.set_env("GH_SECRET", "s");
        jail.set_env("SPILLWAY_KAFKA__BROKERS", "10.0.0.1:9092");
        jail.set_env("SPILLWAY_SOURCES__GITHUB__MAX_BODY_BYTES", "2048");
        jail.set_env("SPILLWAY_TELEMETRY__ACCESS_LOG", "false");
        jail.set_env("SPILLWAY_WORKER__MAX_ATTEMPTS", "3");
        // A secret kept in a SPILLWAY_-prefixed variable must not be read as config.
        jail.set_env("SPILLWAY_GITHUB_SECRET", "s");
        let config = load(Path::new("spillway.yaml")).map_err(|e| e.to_string())?;
        assert_eq!(config.kafka.brokers, "10.0.0.1:9092");
        assert_eq!(config.sources["github"].max_body_bytes, Some(2048));
        assert!(!config.telemetry.access_log);
        assert_eq!(config.worker.max_attempts, 3);
        Ok(())
    });
}

#[test]
fn a_typo_names_the_field() {
    Jail::expect_with(|jail| {
        jail.create_file("spillway.yaml", &MINIMAL.replace("secrets:", "secretz:"))?;
        let errors = errors_of(load(Path::new("spillway.yaml")));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("secretz"), "{errors:?}");
        Ok(())
    });
}

#[test]
fn every_semantic_problem_is_named_with_its_path() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "spillway.yaml",
            r#"
kafka:
  brokers: 127.0.0.1:9092
  properties: { acks: "1" }
sources:
  Bad Name:
    verify: { scheme: none }
  stripe:
    verify: { scheme: stripe }
    secrets:
      - { id: a, value: whsec_inline }
      - { id: b, env: NOT_SET_ANYWHERE }
  shopify:
    verify: { scheme: shopify }
    secrets: [ { id: s, file: /nonexistent/secret } ]
    dedupe: { from: signed_id }
    forward_headers: [spillway-source]
  typed:
    verify: { scheme: github }
    secrets: [ { id: t, env: NOT_SET_ANYWHERE } ]
    forward_headers: [x-github-delivery]
  device:
    verify: { scheme: hmac, header: x-sig, encoding: hex, template: "{timestamp}.{body}" }
    secrets: [ { id: d, env: NOT_SET_ANYWHERE } ]
    dedupe: { from: json_pointer, pointer: "id" }
    rate_limit: { requests: 0, window: 10ms }
telemetry:
  otlp_endpoint: otel-collector:4318
  trace_sample_ratio: 1.5
  export_interval: 0s
"#,
        )?;
        let errors = errors_of(load(Path::new("spillway.yaml")));
        let expect = [
            "telemetry.otlp_endpoint: must be an http:// or https:// URL",
            "sources.device.rate_limit.requests: must be at least 1",
            "sources.device.rate_limit.window: must be at least 100ms",
            "telemetry.trace_sample_ratio: must be in [0, 1]",
            "telemetry.export_interval: must be greater than zero",
            "kafka.properties.acks:",
            "sources.Bad Name:",
            "sources.stripe.secrets[0]: inline secret values are not accepted",
            "sources.stripe.secrets[1]: env: environment variable NOT_SET_ANYWHERE is not set",
            "sources.shopify.secrets[0]: file: cannot read /nonexistent/secret",
            "sources.shopify.dedupe: from: signed_id needs a scheme that signs an event id",
            "sources.shopify.forward_headers[0]:",
            "sources.device.verify: template: template uses {timestamp} but no timestamp_header",
            "redis.nodes: a source deduplicates",
            "sources.typed.event_type: header \"x-github-event\" must be in forward_headers",
        ];
        for e in expect {
            assert!(
                errors.iter().any(|got| got.starts_with(e)),
                "missing {e:?} in {errors:#?}"
            );
        }
        Ok(())
    });
}

#[test]
fn secrets_come_from_files_with_expiry() {
    Jail::expect_with(|jail| {
        jail.create_file("sw.secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n")?;
        jail.create_file(
            "spillway.yaml",
            r#"
kafka: { brokers: "127.0.0.1:9092" }
redis: { nodes: ["redis://127.0.0.1:7000"] }
sources:
  sw:
    verify: { scheme: standard-webhooks }
    secrets:
      - { id: old, file: sw.secret, not_after: "2020-01-01T00:00:00Z" }
      - { id: new, file: sw.secret }
"#,
        )?;
        let config = load(Path::new("spillway.yaml")).map_err(|e| e.to_string())?;
        let sources = config.resolve_sources().map_err(|e| format!("{e:?}"))?;
        assert_eq!(sources[0].dedupe, KeySource::SignedId);
        Ok(())
    });
}

#[test]
fn missing_file_is_a_parse_error_naming_the_file() {
    let result = load(Path::new("/nonexistent/spillway.yaml"));
    assert!(matches!(result, Err(ConfigError::Parse { .. })));
    assert!(errors_of(result)[0].contains("/nonexistent/spillway.yaml"));
}

#[test]
fn subscriptions_resolve_and_their_mistakes_are_named() {
    Jail::expect_with(|jail| {
        jail.set_env("GH_SECRET", "s");
        jail.set_env("SUB_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        jail.create_file(
            "spillway.yaml",
            &format!(
                "{MINIMAL}worker:\n  allow_cidrs: [127.0.0.0/8, \"::1/128\"]\n\
                 subscriptions:\n  - id: billing\n    url: https://billing.example.com/hooks\n    \
                 sources: [github]\n    event_types: [push]\n    secrets: [{{ id: s1, env: SUB_SECRET }}]\n    \
                 headers: {{ X-Team: billing }}\n"
            ),
        )?;
        let config = load(Path::new("spillway.yaml")).map_err(|e| e.to_string())?;
        let subs = config
            .resolve_subscriptions()
            .map_err(|e| format!("{e:?}"))?;
        assert_eq!(subs[0].id, "billing");
        assert_eq!(subs[0].url.host(), Some("billing.example.com"));
        assert_eq!(
            subs[0].secrets[0].key.len(),
            24,
            "whsec_ secrets are base64-decoded"
        );
        assert_eq!(config.worker.allow_cidrs.len(), 2);
        let sources = config.resolve_sources().map_err(|e| format!("{e:?}"))?;
        assert_eq!(
            sources[0].event_type,
            Some(KeySource::Header {
                name: "x-github-event".into()
            })
        );

        jail.create_file(
            "bad.yaml",
            &format!(
                "{MINIMAL}subscriptions:\n  - {{ id: a, url: \"ftp://x\", secrets: [{{ id: s, env: SUB_SECRET }}] }}\n  \
                 - {{ id: a, url: \"http://ok\", sources: [nope], secrets: [] }}\n"
            ),
        )?;
        let errors = errors_of(load(Path::new("bad.yaml")));
        for expected in [
            "subscriptions[0].url:",
            "subscriptions[1].id: \"a\" is used by another subscription",
            "subscriptions[1].sources[0]: no source named \"nope\"",
            "subscriptions[1].secrets: at least one signing secret is required",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(expected)),
                "missing {expected:?} in {errors:#?}"
            );
        }
        jail.create_file(
            "cidr.yaml",
            &format!("{MINIMAL}worker:\n  allow_cidrs: [not-a-cidr]\n"),
        )?;
        let errors = errors_of(load(Path::new("cidr.yaml")));
        assert!(errors[0].contains("allow_cidrs"), "{errors:?}");
        Ok(())
    });
}

#[test]
fn the_worker_drain_must_end_before_its_session_times_out() {
    Jail::expect_with(|jail| {
        jail.set_env("GH_SECRET", "s");
        let with = |worker: &str| format!("{MINIMAL}worker:\n{worker}");
        jail.create_file("ok.yaml", &with("  drain_timeout: 20s\n"))?;
        assert_eq!(errors_of(load(Path::new("ok.yaml"))), Vec::<String>::new());
        jail.create_file(
            "long.yaml",
            &with(
                "  drain_timeout: 10s\n  consumer_properties: { session.timeout.ms: \"6000\" }\n",
            ),
        )?;
        let errors = errors_of(load(Path::new("long.yaml")));
        assert!(
            errors[0].starts_with("worker.drain_timeout:") && errors[0].contains("6000 ms"),
            "{errors:?}"
        );
        jail.create_file("default.yaml", &with("  drain_timeout: 50s\n"))?;
        let errors = errors_of(load(Path::new("default.yaml")));
        assert!(errors[0].contains("45000 ms"), "{errors:?}");
        Ok(())
    });
}

#[test]
fn kafka_properties_file_is_merged_over_properties() {
    Jail::expect_with(|jail| {
        jail.set_env("GH_SECRET", "s");
        jail.create_file(
            "client.properties",
            "# from a Secret\nsasl.username = spillway\nsasl.password=p=w\n\n",
        )?;
        jail.create_file(
            "spillway.yaml",
            &MINIMAL.replace(
                "brokers: 127.0.0.1:9092",
                "brokers: 127.0.0.1:9092\n  properties: { sasl.username: old, security.protocol: SASL_SSL }\n  properties_file: client.properties",
            ),
        )?;
        let config = load(Path::new("spillway.yaml")).map_err(|e| e.to_string())?;
        let props = &config.kafka.properties;
        assert_eq!(props["sasl.username"], "spillway");
        assert_eq!(props["sasl.password"], "p=w");
        assert_eq!(props["security.protocol"], "SASL_SSL");

        jail.create_file("bad.properties", "no equals sign\n")?;
        jail.create_file(
            "bad.yaml",
            &MINIMAL.replace(
                "brokers: 127.0.0.1:9092",
                "brokers: 127.0.0.1:9092\n  properties_file: bad.properties",
            ),
        )?;
        let errors = errors_of(load(Path::new("bad.yaml")));
        assert!(
            errors[0].starts_with("kafka.properties_file: bad.properties:1: expected key=value"),
            "{errors:?}"
        );
        Ok(())
    });
}

#[test]
fn a_secret_file_that_never_ends_is_refused_not_read_into_memory() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "spillway.yaml",
            &MINIMAL.replace("env: GH_SECRET", "file: /dev/zero"),
        )?;
        let errors = errors_of(load(Path::new("spillway.yaml")));
        assert!(
            errors
                .iter()
                .any(|e| e.contains("/dev/zero is larger than 1048576 bytes")),
            "{errors:?}"
        );
        Ok(())
    });
}

#[test]
fn a_client_certificate_source_needs_a_ca_to_check_against() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "spillway.yaml",
            &format!(
                "{MINIMAL}  fleet:\n    verify: {{ scheme: none }}\n    require_client_cert: true\n  \
                 loose:\n    verify: {{ scheme: none }}\n    partition_key: {{ from: client_certificate }}\n"
            ),
        )?;
        jail.set_env("GH_SECRET", "It's a Secret to Everybody");
        let errors = errors_of(load(Path::new("spillway.yaml")));
        assert!(
            errors
                .iter()
                .any(|e| e.contains("sources.fleet.require_client_cert")
                    && e.contains("client_ca_file")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("sources.loose.partition_key")
                    && e.contains("require_client_cert: true")),
            "{errors:?}"
        );
        Ok(())
    });
}

#[test]
fn an_sns_source_needs_its_topics_and_no_secret_and_the_fetches_are_bounded() {
    let parse = |text: &str| crate::parse_str(text).expect("parses");
    let base = "kafka: { brokers: k:9092 }\nredis: { nodes: [\"redis://r:1\"] }\n";
    let sns = parse(&format!(
        "{base}sources:\n  orders:\n    verify: {{ scheme: aws-sns }}\n    \
         topic_arns: [\"arn:aws:sns:eu-west-1:123456789012:orders\"]\n"
    ));
    let sources = sns.resolve_sources().expect("resolves");
    assert_eq!(
        sources[0].topic_arns,
        ["arn:aws:sns:eu-west-1:123456789012:orders"]
    );
    assert_eq!(
        sources[0].dedupe,
        KeySource::JsonPointer {
            pointer: "/MessageId".into()
        }
    );
    assert_eq!(sources[0].verifier.tolerance(), Duration::from_secs(3900));
    let problems = |text: String| -> Vec<String> {
        let config = parse(&text);
        config
            .validate_for(crate::Process::Ingress)
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    let found = problems(format!(
        "{base}sources:\n  orders:\n    verify: {{ scheme: aws-sns }}\n    \
         secrets: [{{ id: k, env: X }}]\n"
    ));
    assert!(
        found
            .iter()
            .any(|e| e.starts_with("sources.orders.topic_arns: scheme aws-sns needs"))
            && found
                .iter()
                .any(|e| e == "sources.orders.secrets: scheme aws-sns takes no secrets"),
        "{found:?}"
    );
    let found = problems(format!(
        "{base}sources:\n  orders:\n    verify: {{ scheme: aws-sns }}\n    \
         topic_arns: [\"orders\"]\n  gh:\n    verify: {{ scheme: github }}\n    \
         secrets: [{{ id: k, env: X }}]\n    topic_arns: [\"arn:aws:sns:eu-west-1:1:t\"]\n"
    ));
    assert!(
        found
            .iter()
            .any(|e| e.starts_with("sources.orders.topic_arns[0]: \"orders\" is not a topic ARN"))
            && found
                .iter()
                .any(|e| e
                    == "sources.gh.topic_arns: only scheme aws-sns takes topic_arns, not github"),
        "{found:?}"
    );
    let found = problems(format!(
        "{base}ingress:\n  sns: {{ hosts: [\"*.*\", \"https://x\"], timeout: 60s, max_certificates: 0 }}\n\
         sources:\n  orders:\n    verify: {{ scheme: aws-sns }}\n    \
         topic_arns: [\"arn:aws:sns:eu-west-1:1:t\"]\n"
    ));
    for field in [
        "ingress.sns.hosts[0]",
        "ingress.sns.hosts[1]",
        "ingress.sns.timeout",
        "ingress.sns.max_certificates",
    ] {
        assert!(
            found.iter().any(|e| e.starts_with(field)),
            "{field}: {found:?}"
        );
    }
}
