//! Every catalog metric exported by its process, and the values the metrics record.

use super::*;
use crate::catalog::{Process, CATALOG};

/// The metric family names in an exposition.
fn families(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect()
}

fn catalogued(process: Process) -> std::collections::BTreeSet<String> {
    CATALOG
        .iter()
        .filter(|d| d.process == process || d.process == Process::Both)
        .map(|d| d.name.to_owned())
        .collect()
}

#[test]
fn the_ingress_exports_exactly_its_part_of_the_catalog() {
    let m = IngressMetrics::new().expect("metrics");
    m.record("github", Outcome::Accepted, 0.003);
    m.record("github", Outcome::Overloaded, 0.0001);
    m.body_read("github", 2048);
    m.verify_failure("github", "signature_mismatch");
    m.dedupe_hit("github", true);
    m.claims_in_flight().inc();
    m.fail_open("github");
    m.dedupe_fallback("github");
    m.batch_records("github", "accepted", 3);
    m.invalid_record("github", "required", "quarantined");
    m.verified("github", "gh-2026");
    m.handshake("github", "slack_url_verification", "answered");
    m.client_blocked("github");
    m.redis_command(RedisCommand::Claim, 0.001, false);
    m.produce("events.github", 0.004, Some("queue_full"));
    m.set_producer_queue(3);
    let text = String::from_utf8(m.encode()).expect("utf8");
    assert_eq!(families(&text), catalogued(Process::Ingress), "\n{text}");
    for line in [
        "spillway_http_requests_total{outcome=\"accepted\",source=\"github\"} 1",
        "spillway_http_shed_requests_total{reason=\"max_in_flight\",source=\"github\"} 1",
        "spillway_http_request_body_bytes_bucket{source=\"github\",le=\"4096\"} 1",
        "spillway_dedupe_hits_total{source=\"github\",state=\"done\"} 1",
        "spillway_dedupe_in_flight_claims 1",
        "spillway_batch_records_total{result=\"accepted\",source=\"github\"} 3",
        "spillway_invalid_records_total{action=\"quarantined\",reason=\"required\",source=\"github\"} 1",
        "spillway_redis_errors_total{command=\"claim\"} 1",
        "spillway_kafka_produce_errors_total{reason=\"queue_full\",topic=\"events.github\"} 1",
        "spillway_kafka_producer_queue_messages 3",
        "spillway_http_in_flight_requests 0",
        "spillway_build_info{process=\"ingress\",version=",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    assert_eq!(m.count("github", Outcome::Accepted), 1);
}

#[test]
fn a_configured_source_starts_with_zeroes() {
    let m = IngressMetrics::new().expect("metrics");
    m.init_source("meters", "spillway.meters", &["not_acknowledged"]);
    let text = String::from_utf8(m.encode()).expect("utf8");
    for line in [
        "spillway_http_requests_total{outcome=\"kafka_unavailable\",source=\"meters\"} 0",
        "spillway_dedupe_fail_open_events_total{source=\"meters\"} 0",
        "spillway_kafka_produce_errors_total{reason=\"not_acknowledged\",topic=\"spillway.meters\"} 0",
        "spillway_redis_errors_total{command=\"release\"} 0",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

#[test]
fn direct_routes_follow_the_stores_counts_and_never_count_down() {
    let m = IngressMetrics::new().expect("metrics");
    let text = || String::from_utf8(m.encode()).expect("utf8");
    assert!(text().contains("spillway_redis_direct_commands_total 0"));
    m.sync_direct_routes(40, 2);
    m.sync_direct_routes(40, 2);
    m.sync_direct_routes(55, 2);
    let synced = text();
    for line in [
        "spillway_redis_direct_commands_total 55",
        "spillway_redis_direct_fallbacks_total 2",
    ] {
        assert!(synced.contains(line), "{line} missing from\n{synced}");
    }
    // Counts lower than those exported (not the store's, which only rise) leave them as they are.
    m.sync_direct_routes(10, 0);
    assert!(text().contains("spillway_redis_direct_commands_total 55"));
}

#[test]
fn a_forgotten_subscription_or_partition_exports_no_gauge() {
    let metrics = WorkerMetrics::new().expect("metrics");
    metrics.init_subscription("gone");
    metrics.circuit("gone", CircuitState::Open);
    metrics.lag("t", 1, 5);
    let text = |m: &WorkerMetrics| String::from_utf8(m.encode()).expect("utf-8");
    assert!(text(&metrics).contains("spillway_worker_circuit_state{subscription=\"gone\"} 2"));
    metrics.forget_subscription("gone");
    metrics.forget_lag("t", 1);
    let after = text(&metrics);
    assert!(
        !after.contains("circuit_state{subscription=\"gone\"}"),
        "{after}"
    );
    assert!(!after.contains("partition=\"1\""), "{after}");
}

#[test]
fn the_worker_exports_exactly_its_part_of_the_catalog() {
    let m = WorkerMetrics::new().expect("metrics");
    m.delivery("crm", "delivered", Some(0.02));
    m.parked("crm");
    m.dead_letter("crm", "attempts_exhausted");
    m.circuit("crm", CircuitState::Open);
    m.lag("events.github", 0, 7);
    m.reload(true);
    m.attempt_record(true);
    let text = String::from_utf8(m.encode()).expect("utf8");
    assert_eq!(families(&text), catalogued(Process::Worker), "\n{text}");
    m.init_subscription("quiet");
    let text = String::from_utf8(m.encode()).expect("utf8");
    for line in [
        "spillway_worker_dead_letters_total{reason=\"target_refused\",subscription=\"quiet\"} 0",
        "spillway_worker_retries_total{subscription=\"quiet\"} 0",
        "spillway_worker_circuit_state{subscription=\"quiet\"} 0",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    for line in [
        "spillway_worker_circuit_state{subscription=\"crm\"} 2",
        "spillway_consumer_lag_messages{partition=\"0\",topic=\"events.github\"} 7",
        "spillway_build_info{process=\"worker\",version=",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}
