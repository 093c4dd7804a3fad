//! The limits checked against each other, at their edges: bodies against the body budget, the
//! memory limit and Kafka's largest record; the claim against the produce; the librdkafka
//! properties Spillway sets itself. The defaults pass them all.

use figment::Jail;

use super::messages::messages;
use crate::{
    parse_str, Config, Process, CONNECTION_BYTES, DEFAULT_MESSAGE_MAX_BYTES, MEMORY_HEADROOM_BYTES,
    RECORD_OVERHEAD_BYTES,
};

/// One source that does not deduplicate (so no Redis is needed), with `source` added to it,
/// and `top` added at the top level (a `kafka` section there replaces the default one).
fn config(top: &str, source: &str) -> Config {
    let kafka = if top.contains("kafka:") {
        ""
    } else {
        "kafka: { brokers: k:9092 }"
    };
    let text = format!(
        "{kafka}\n{top}\nsources:\n  a:\n    verify: {{ scheme: none }}\n    \
         dedupe: {{ from: none }}\n{source}"
    );
    parse_str(&text).expect("parses")
}

fn errors(config: &Config, process: Process) -> Vec<String> {
    config
        .validate_for(process)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn the_defaults_pass_every_limit() {
    let defaults = config("", "");
    assert_eq!(errors(&defaults, Process::All), Vec::<String>::new());
    assert!(
        defaults.sources["a"].max_body(false) + RECORD_OVERHEAD_BYTES <= DEFAULT_MESSAGE_MAX_BYTES
    );
    // The chart's ingress limit (512Mi), as the downward API gives it.
    let in_a_pod = config("ingress: { memory_limit: 536870912 }", "");
    assert_eq!(errors(&in_a_pod, Process::Ingress), Vec::<String>::new());
    // 2 x the default budget, the default connections and the headroom, exactly.
    let ingress = &in_a_pod.ingress;
    let exact = 2 * ingress.max_body_memory
        + ingress.max_connections as u64 * CONNECTION_BYTES
        + MEMORY_HEADROOM_BYTES;
    let tight = config(&format!("ingress: {{ memory_limit: {exact} }}"), "");
    assert_eq!(errors(&tight, Process::Ingress), Vec::<String>::new());
    let short = config(&format!("ingress: {{ memory_limit: {} }}", exact - 1), "");
    let found = errors(&short, Process::Ingress);
    assert!(
        found.len() == 1 && found[0].contains("does not hold 2 x 64 MiB"),
        "{found:?}"
    );
    // Fewer connections make room for it.
    let fewer = config(
        &format!(
            "ingress: {{ memory_limit: {}, max_connections: {} }}",
            exact - 1,
            ingress.max_connections - 1
        ),
        "",
    );
    assert_eq!(errors(&fewer, Process::Ingress), Vec::<String>::new());
}

#[test]
fn the_largest_body_fits_kafkas_largest_record_for_every_process() {
    let fits = DEFAULT_MESSAGE_MAX_BYTES - RECORD_OVERHEAD_BYTES;
    let at_edge = config("", &format!("    max_body_bytes: {fits}\n"));
    assert_eq!(errors(&at_edge, Process::Ingress), Vec::<String>::new());
    let over = config("", &format!("    max_body_bytes: {}\n", fits + 1));
    for process in [Process::Ingress, Process::Worker, Process::All] {
        let found = errors(&over, process);
        assert!(
            found.len() == 1
                && found[0].starts_with("sources.a.max_body_bytes: 983617 + 16384")
                && found[0].contains("raise kafka.properties message.max.bytes"),
            "{process:?}: {found:?}"
        );
    }
    // A larger message.max.bytes (from properties or properties_file) lets it through.
    let raised = config(
        "kafka: { brokers: k:9092, properties: { message.max.bytes: \"2000000\" } }",
        "    max_body_bytes: 1048576\n",
    );
    assert_eq!(errors(&raised, Process::Ingress), Vec::<String>::new());
}

#[test]
fn the_message_max_bytes_comes_from_the_properties_file_too() {
    Jail::expect_with(|jail| {
        jail.create_file("client.properties", "message.max.bytes=2000000\n")?;
        let with = |properties: &str| {
            format!(
                "kafka: {{ brokers: k:9092{properties} }}\nsources:\n  a: {{ verify: {{ scheme: none }}, \
                 dedupe: {{ from: none }}, max_body_bytes: 1048576 }}\n"
            )
        };
        jail.create_file("file.yaml", &with(", properties_file: client.properties"))?;
        jail.create_file("none.yaml", &with(""))?;
        assert_eq!(messages("file.yaml"), Vec::<String>::new());
        assert_eq!(messages("none.yaml").len(), 1);
        Ok(())
    });
}

#[test]
fn the_body_budget_holds_the_largest_body() {
    let at_edge = config(
        "ingress: { max_body_memory: 65536 }",
        "    max_body_bytes: 65536\n",
    );
    assert_eq!(errors(&at_edge, Process::All), Vec::<String>::new());
    let under = config(
        "ingress: { max_body_memory: 65535 }",
        "    max_body_bytes: 65536\n",
    );
    assert_eq!(
        errors(&under, Process::All),
        ["ingress.max_body_memory: 65535 bytes is less than sources.a.max_body_bytes (64 KiB): a \
          body that large could never be admitted; raise max_body_memory or lower max_body_bytes"]
    );
}

#[test]
fn a_minimum_body_rate_needs_a_grace_shorter_than_the_body_timeout() {
    let off = config("ingress: { min_body_rate: 0, body_rate_grace: 0s }", "");
    assert_eq!(errors(&off, Process::All), Vec::<String>::new());
    let never = config(
        "ingress: { body_rate_grace: 30s, body_read_timeout: 30s }",
        "",
    );
    assert_eq!(
        errors(&never, Process::All),
        [
            "ingress.body_rate_grace: must be shorter than ingress.body_read_timeout (30s), or \
          min_body_rate never applies"
        ]
    );
}

#[test]
fn the_latency_target_is_at_least_10ms() {
    let fine = config("ingress: { latency_target: 10ms }", "");
    assert_eq!(errors(&fine, Process::All), Vec::<String>::new());
    let zero = config("ingress: { latency_target: 0s }", "");
    assert_eq!(
        errors(&zero, Process::All),
        ["ingress.latency_target: must be at least 10ms"]
    );
}

#[test]
fn a_claim_outlives_the_produce_and_commit_it_guards_wherever_a_source_deduplicates() {
    let deduplicating = |timings: &str| {
        parse_str(&format!(
            "kafka: {{ brokers: k:9092, delivery_timeout: 60s }}\nredis: {{ nodes: \
             [\"redis://r:7000\"]{timings} }}\nsources:\n  a: {{ verify: {{ scheme: none }} }}\n"
        ))
        .expect("parses")
    };
    // The review's case: a retry at 31 s would claim again and produce a duplicate.
    let found = errors(&deduplicating(""), Process::All);
    assert!(
        found.len() == 1
            && found[0]
                .starts_with("redis.claim_ttl: must be longer than kafka.delivery_timeout + redis.commit_delay + redis.command_timeout (60.505s)"),
        "{found:?}"
    );
    let equal = errors(&deduplicating(", claim_ttl: 60s"), Process::All);
    assert_eq!(equal.len(), 1, "{equal:?}");
    // The commit lands after the produce, the commit delay and its round trip.
    let within_the_commit = errors(&deduplicating(", claim_ttl: 60500ms"), Process::All);
    assert_eq!(within_the_commit.len(), 1, "{within_the_commit:?}");
    let longer = deduplicating(", claim_ttl: 61s");
    assert_eq!(errors(&longer, Process::All), Vec::<String>::new());
    // Without deduplication no claim is taken.
    let no_dedupe = config("kafka: { brokers: k:9092, delivery_timeout: 60s }", "");
    assert_eq!(errors(&no_dedupe, Process::All), Vec::<String>::new());
}

#[test]
fn properties_that_spillway_sets_itself_are_refused_and_others_pass() {
    let with = |key: &str| {
        config(
            &format!("kafka: {{ brokers: k:9092, properties: {{ {key}: \"1\" }} }}"),
            "",
        )
    };
    for (key, field) in [
        ("message.timeout.ms", Some("kafka.delivery_timeout")),
        ("delivery.timeout.ms", Some("kafka.delivery_timeout")),
        ("linger.ms", Some("kafka.linger")),
        ("queue.buffering.max.ms", Some("kafka.linger")),
        (
            "queue.buffering.max.messages",
            Some("kafka.max_queued_messages"),
        ),
        ("bootstrap.servers", Some("kafka.brokers")),
        ("metadata.broker.list", Some("kafka.brokers")),
        ("transactional.id", None),
        ("acks", None),
    ] {
        let found = errors(&with(key), Process::All);
        assert!(
            found.len() == 1
                && found[0].starts_with(&format!("kafka.properties.{key}: "))
                && field.is_none_or(|f| found[0].contains(f)),
            "{key}: {found:?}"
        );
    }
    for key in [
        "compression.type",
        "batch.num.messages",
        "security.protocol",
    ] {
        assert_eq!(
            errors(&with(key), Process::All),
            Vec::<String>::new(),
            "{key}"
        );
    }
}

#[test]
fn the_worker_s_record_memory_and_prefetch_fit_its_memory_limit() {
    const MIB: u64 = 1 << 20;
    // A prefetch that is set: 2 x 64 MiB + 2 x 16 MiB + 64 MiB = 224 MiB.
    let set = |limit: u64| {
        config(
            &format!(
                "worker: {{ memory_limit: {limit}, consumer_prefetch_bytes: {} }}",
                16 * MIB
            ),
            "",
        )
    };
    assert_eq!(errors(&set(224 * MIB), Process::All), Vec::<String>::new());
    assert_eq!(
        errors(&set(224 * MIB - 1), Process::All),
        [
            "worker.memory_limit: 223 MiB cannot hold 2 x worker.max_record_memory + 2 x the \
             prefetch (worker.consumer_prefetch_bytes, 16 MiB) + 64 MiB = 224 MiB: lower those \
             or raise the limit"
        ]
    );
    // A prefetch sized from the limit shrinks to fit, down to 1 MiB: 2 x 64 + 2 x 1 + 64.
    let sized = |limit: u64| config(&format!("worker: {{ memory_limit: {limit} }}"), "");
    assert_eq!(
        errors(&sized(194 * MIB), Process::All),
        Vec::<String>::new()
    );
    assert_eq!(
        errors(&sized(194 * MIB - 1), Process::All),
        [
            "worker.memory_limit: 193 MiB cannot hold 2 x worker.max_record_memory + 2 x the \
             prefetch (worker.consumer_prefetch_bytes, 1 MiB, the least it is sized to) + 64 MiB \
             = 194 MiB: lower those or raise the limit"
        ]
    );
    let tiny = config(
        "worker: { max_record_memory: 1000, consumer_prefetch_bytes: 1000 }",
        "",
    );
    assert_eq!(
        errors(&tiny, Process::All),
        [
            "worker.max_record_memory: must be at least 1 MiB",
            "worker.consumer_prefetch_bytes: must be at least 1 MiB"
        ]
    );
}

#[test]
fn the_prefetch_is_sized_from_the_memory_limit_unless_it_is_set() {
    const MIB: u64 = 1 << 20;
    let prefetch = |worker: &str| {
        config(&format!("worker: {worker}"), "")
            .worker
            .prefetch_bytes()
    };
    assert_eq!(prefetch("{}"), 16 * MIB, "without a limit");
    // The chart's default container: (256 - 64 - 2 x 64) / 4.
    assert_eq!(
        prefetch(&format!("{{ memory_limit: {} }}", 256 * MIB)),
        16 * MIB
    );
    assert_eq!(
        prefetch(&format!("{{ memory_limit: {} }}", 1024 * MIB)),
        64 * MIB,
        "at most 64 MiB"
    );
    assert_eq!(
        prefetch(&format!("{{ memory_limit: {} }}", 100 * MIB)),
        MIB,
        "at least 1 MiB"
    );
    assert_eq!(
        prefetch(&format!(
            "{{ memory_limit: {}, max_record_memory: {} }}",
            256 * MIB,
            32 * MIB
        )),
        32 * MIB,
        "fewer bytes of records leave more to read ahead: (256 - 64 - 2 x 32) / 4"
    );
    assert_eq!(
        prefetch(&format!(
            "{{ memory_limit: {}, consumer_prefetch_bytes: {} }}",
            1024 * MIB,
            2 * MIB
        )),
        2 * MIB,
        "a prefetch that is set wins"
    );
}

#[test]
fn a_subscription_s_timeout_is_bounded_and_its_headers_cannot_replace_the_worker_s() {
    let text = |timeout: &str, header: &str| {
        format!(
            "worker: {{ max_subscription_timeout: 30s }}\nsubscriptions:\n  - id: s\n    \
             url: https://example.com/\n    secrets: [{{ id: a, env: SUB_SECRET }}]\n    \
             timeout: {timeout}\n    headers: {{ {header}: x }}\n"
        )
    };
    Jail::expect_with(|jail| {
        jail.set_env("SUB_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let fine = config(&text("30s", "x-team"), "");
        assert_eq!(errors(&fine, Process::Worker), Vec::<String>::new());
        let long = config(&text("31s", "Host"), "");
        assert_eq!(
            errors(&long, Process::Worker),
            [
                "subscriptions[0].headers.Host: set by the worker itself (Host, framing, \
                 Standard Webhooks and spillway- headers cannot be overridden)",
                "subscriptions[0].timeout: must be greater than zero and at most \
                 worker.max_subscription_timeout (30s): a delivery in hand holds retry \
                 capacity and its partition's offsets"
            ]
        );
        for reserved in ["webhook-signature", "Content-Length", "spillway-dedupe-key"] {
            let refused = config(&text("1s", reserved), "");
            assert_eq!(errors(&refused, Process::Worker).len(), 1, "{reserved}");
        }
        Ok(())
    });
}

#[test]
fn by_default_topics_are_replicated_and_no_producer_is_replaced_after_a_timeout() {
    let defaults = config("", "");
    // H-5: three replicas, checked at start with a warning.
    assert_eq!(defaults.kafka.replication_factor, 3);
    assert!(!defaults.kafka.single_replica);
    assert_eq!(defaults.kafka.topic_check, crate::TopicCheck::Warn);
    // M-4: replacing the producer after a timeout is for tansu only.
    assert!(!defaults.kafka.recreate_producer_on_timeout);
    let single = config("kafka: { brokers: k:9092, replication_factor: 1 }", "");
    assert_eq!(
        errors(&single, Process::All),
        [
            "kafka.replication_factor: 1 keeps every accepted event on one broker's disk: set \
          kafka.single_replica: true to allow it (development only)"
        ]
    );
    let development = config(
        "kafka: { brokers: k:9092, replication_factor: 1, single_replica: true }",
        "",
    );
    assert_eq!(errors(&development, Process::All), Vec::<String>::new());
}

#[test]
fn large_bodies_go_to_object_storage_with_their_own_limits() {
    let dir = tempfile::tempdir().expect("dir");
    let objects = format!(
        "objects: {{ url: \"file://{}/bodies\" }}",
        dir.path().display()
    );
    let offloaded = config(&objects, "");
    assert_eq!(errors(&offloaded, Process::All), Vec::<String>::new());
    let source = &offloaded.sources["a"];
    assert_eq!(source.max_body(true), 10 * 1024 * 1024, "10 MiB by default");
    assert_eq!(source.inline_max(true), Some(512 * 1024));
    let resolved = offloaded.resolve_sources().expect("resolves");
    assert_eq!(resolved[0].max_body_bytes, 10 * 1024 * 1024);
    assert_eq!(resolved[0].inline_max_bytes, Some(512 * 1024));

    // Kafka's record limit bounds the inline bodies, not the largest.
    let large_inline = config(&objects, "    inline_max_bytes: 2000000\n");
    assert!(
        errors(&large_inline, Process::All)
            .iter()
            .any(|e| e.starts_with("sources.a.inline_max_bytes: 2000000 + 16384")),
        "{:?}",
        errors(&large_inline, Process::All)
    );

    assert_eq!(
        errors(&config("", "    inline_max_bytes: 1024\n"), Process::All),
        ["sources.a.inline_max_bytes: needs `objects:` configured: larger bodies go to object storage"]
    );
    let batch = config(
        &objects,
        "    batch: { format: ndjson }\n    inline_max_bytes: 1024\n",
    );
    assert!(errors(&batch, Process::All)
        .iter()
        .any(|e| e.starts_with("sources.a.inline_max_bytes: a batch source's records")));
    assert_eq!(
        batch.sources["a"].max_body(true),
        960 * 1024,
        "a batch stays in memory"
    );

    let s3 = config(
        "objects: { url: s3://bucket/p, part_bytes: 1048576 }\ningress: { max_body_memory: 2097152 }",
        "    max_body_bytes: 1048576\n",
    );
    assert_eq!(
        errors(&s3, Process::All),
        [
            "ingress.max_body_memory: 2 MiB is less than one upload to object storage holds (3 MiB: three of objects.part_bytes); raise max_body_memory or lower objects.part_bytes",
            "objects.part_bytes: must be at least 5242880 (5 MiB), the smallest part cloud stores take",
        ]
    );
    let bad = config("objects: { url: \"ftp://x/y\" }", "");
    assert!(errors(&bad, Process::All)
        .iter()
        .any(|e| e.starts_with("objects: objects.url \"ftp://x/y\"")));
}

#[test]
fn a_source_with_a_schema_keeps_its_bodies_in_its_records() {
    let dir = tempfile::tempdir().expect("dir");
    let schema = dir.path().join("s.json");
    std::fs::write(&schema, r#"{"type":"object"}"#).expect("schema");
    let objects = format!(
        "objects: {{ url: \"file://{}/bodies\" }}",
        dir.path().display()
    );
    let with_schema = format!("    schema: {{ json_schema: \"{}\" }}\n", schema.display());
    let kept = config(&objects, &with_schema);
    assert_eq!(errors(&kept, Process::All), Vec::<String>::new());
    assert_eq!(kept.sources["a"].inline_max(true), None);
    assert_eq!(kept.sources["a"].max_body(true), 960 * 1024);
    let asked = config(
        &objects,
        &format!("{with_schema}    inline_max_bytes: 1024\n"),
    );
    assert!(errors(&asked, Process::All)
        .iter()
        .any(|e| e.starts_with("sources.a.inline_max_bytes: a source with a schema")));
}
