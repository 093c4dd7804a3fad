//! Each process reads only the secrets and files it uses: the ingress never a subscription's
//! secret, a worker never a source's secret nor the ingress's TLS files, `check-config` all of
//! them. Naming mistakes are still reported by every process.

use std::path::Path;

use figment::Jail;
use spillway_core::key::KeySource;

use super::messages::{set_secret_env, EVERYTHING_WRONG, EVERYTHING_WRONG_MESSAGES};
use crate::{load, load_for, Config, ConfigError, Process, SourceRoute};

/// A source and a subscription whose secrets are files: `{source}` and `{subscription}`.
fn with_secret_files(source: &str, subscription: &str) -> String {
    format!(
        r#"
kafka: {{ brokers: "127.0.0.1:9092" }}
redis: {{ nodes: ["redis://127.0.0.1:7000"] }}
sources:
  github:
    verify: {{ scheme: github }}
    secrets: [ {{ id: gh, file: {source} }} ]
subscriptions:
  - id: billing
    url: https://billing.example.com/hooks
    secrets: [ {{ id: s1, file: {subscription} }} ]
"#
    )
}

const SUBSCRIPTION_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n";

fn validated(config: &Config, process: Process) -> Vec<String> {
    config
        .validate_for(process)
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn invalid(result: Result<Config, ConfigError>) -> Vec<String> {
    match result {
        Err(ConfigError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
        Err(e) => vec![e.to_string()],
        Ok(_) => Vec::new(),
    }
}

#[test]
fn the_ingress_validates_without_the_subscriptions_secrets() {
    Jail::expect_with(|jail| {
        jail.create_file("github.secret", "It's a Secret to Everybody\n")?;
        // The ingress pod does not mount the subscription's secret.
        jail.create_file(
            "spillway.yaml",
            &with_secret_files("github.secret", "absent/billing"),
        )?;
        let path = Path::new("spillway.yaml");
        let config = load_for(path, Process::Ingress).map_err(|e| e.to_string())?;
        assert_eq!(validated(&config, Process::Ingress), Vec::<String>::new());
        let missing = "subscriptions[0].secrets[0]: file: cannot read absent/billing: \
                       No such file or directory (os error 2)";
        assert_eq!(validated(&config, Process::Worker), [missing]);
        assert_eq!(validated(&config, Process::All), [missing]);
        assert_eq!(invalid(load_for(path, Process::Worker)), [missing]);
        assert_eq!(invalid(load(path)), [missing], "load is load_for(All)");
        // What the ingress serves with is whole.
        let sources = config.resolve_sources().map_err(|e| format!("{e:?}"))?;
        assert_eq!(sources[0].verifier.scheme().name(), "github");
        Ok(())
    });
}

#[test]
fn a_worker_validates_and_routes_without_the_sources_secrets() {
    Jail::expect_with(|jail| {
        jail.create_file("billing.secret", SUBSCRIPTION_SECRET)?;
        // The worker pod does not mount the provider's secret.
        jail.create_file(
            "spillway.yaml",
            &with_secret_files("absent/github", "billing.secret"),
        )?;
        let path = Path::new("spillway.yaml");
        let config = load_for(path, Process::Worker).map_err(|e| e.to_string())?;
        let missing = "sources.github.secrets[0]: file: cannot read absent/github: \
                       No such file or directory (os error 2)";
        assert_eq!(validated(&config, Process::Worker), Vec::<String>::new());
        assert_eq!(validated(&config, Process::Ingress), [missing]);
        assert_eq!(invalid(load_for(path, Process::Ingress)), [missing]);
        assert_eq!(invalid(load(path)), [missing]);

        let routes = config
            .resolve_source_routes()
            .map_err(|e| format!("{e:?}"))?;
        assert_eq!(
            routes,
            [SourceRoute {
                name: "github".into(),
                topic: "spillway.github".into(),
                forward_headers: vec![
                    "x-hub-signature-256".into(),
                    "x-github-delivery".into(),
                    "x-github-event".into(),
                    "x-github-hook-id".into(),
                    "x-github-hook-installation-target-type".into(),
                ],
                event_type: Some(KeySource::Header {
                    name: "x-github-event".into()
                }),
                schema: None,
            }]
        );
        let sources = config
            .resolve_sources()
            .map(|_| ())
            .map_err(|e| e.iter().map(ToString::to_string).collect::<Vec<_>>());
        assert_eq!(sources, Err(vec![missing.to_owned()]));
        let subs = config
            .resolve_subscriptions()
            .map_err(|e| format!("{e:?}"))?;
        assert_eq!(subs[0].secrets.len(), 1);
        Ok(())
    });
}

#[test]
fn a_worker_does_not_need_the_ingress_tls_files() {
    Jail::expect_with(|jail| {
        jail.set_env("GH_SECRET", "s");
        jail.create_file(
            "spillway.yaml",
            "ingress:\n  tls: { cert_file: absent/tls.crt, key_file: absent/tls.key }\n\
             kafka: { brokers: k:9092 }\nredis: { nodes: [\"redis://r:7000\"] }\n\
             sources:\n  github:\n    verify: { scheme: github }\n    \
             secrets: [ { id: k, env: GH_SECRET } ]\n",
        )?;
        let path = Path::new("spillway.yaml");
        assert_eq!(
            invalid(load_for(path, Process::Worker)),
            Vec::<String>::new()
        );
        let ingress = invalid(load_for(path, Process::Ingress));
        assert_eq!(invalid(load(path)), ingress);
        assert_eq!(
            ingress,
            [
                "ingress.tls.cert_file: absent/tls.crt: No such file or directory (os error 2)",
                "ingress.tls.key_file: absent/tls.key: No such file or directory (os error 2)",
            ]
        );
        Ok(())
    });
}

#[test]
fn only_processes_loading_as_a_worker_check_for_its_extra_roots() {
    Jail::expect_with(|jail| {
        jail.set_env("GH_SECRET", "s");
        let config = |roots: &str| {
            format!(
                "kafka: {{ brokers: k:9092 }}\nredis: {{ nodes: [\"redis://r:7000\"] }}\n\
                 worker: {{ extra_roots: {roots} }}\n\
                 sources:\n  github:\n    verify: {{ scheme: github }}\n    \
                 secrets: [ {{ id: k, env: GH_SECRET }} ]\n"
            )
        };
        jail.create_file("spillway.yaml", &config("absent/ca.pem"))?;
        let path = Path::new("spillway.yaml");
        assert_eq!(
            invalid(load_for(path, Process::Ingress)),
            Vec::<String>::new(),
            "the ingress does not deliver"
        );
        let worker = invalid(load_for(path, Process::Worker));
        assert_eq!(worker, ["worker.extra_roots: absent/ca.pem is not a file"]);
        assert_eq!(invalid(load(path)), worker);
        jail.create_file("ca.pem", "-----BEGIN CERTIFICATE-----\n")?;
        jail.create_file("spillway.yaml", &config("ca.pem"))?;
        let config = load_for(path, Process::Worker).map_err(|e| e.to_string())?;
        assert_eq!(
            config.worker.extra_roots.as_deref(),
            Some(Path::new("ca.pem"))
        );
        Ok(())
    });
}

/// The pinned messages of `check-config`, without those only reading the other side's
/// secrets or files would find: naming mistakes (an empty id, an inline value, both or neither
/// of env and file) stay errors for every process.
#[test]
fn each_process_reports_every_mistake_but_the_reads_it_skips() {
    Jail::expect_with(|jail| {
        set_secret_env(jail);
        let config = crate::parse_str(EVERYTHING_WRONG).map_err(|e| e.to_string())?;
        let all_but = |skipped: &[&str]| -> Vec<String> {
            EVERYTHING_WRONG_MESSAGES
                .iter()
                .filter(|m| !skipped.iter().any(|s| m.starts_with(s)))
                .map(|m| (*m).to_owned())
                .collect()
        };
        assert_eq!(validated(&config, Process::All), all_but(&[]));
        assert_eq!(
            validated(&config, Process::Ingress),
            all_but(&[
                "subscriptions[1].secrets[0]: file: cannot read",
                "subscriptions[1].secrets[3]: secret is not valid base64",
                "subscriptions[1].secrets[4]: env: environment variable",
            ])
        );
        assert_eq!(
            validated(&config, Process::Worker),
            all_but(&[
                "ingress.tls.cert_file:",
                "ingress.tls.key_file:",
                "redis.tls.client_cert_file:",
                "sources.stripe.secrets[0]: env: environment variable",
                "sources.stripe.secrets[5]: file: cannot read",
                "sources.stripe.secrets[6]: secret is empty",
                "sources.topical.secrets[0]: secret is not valid base64",
            ])
        );
        Ok(())
    });
}

#[test]
fn the_routes_are_the_routes_of_the_resolved_sources() {
    Jail::expect_with(|jail| {
        jail.set_env("GH_SECRET", "It's a Secret to Everybody");
        jail.set_env("SW_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        jail.create_file(
            "spillway.yaml",
            r#"
kafka: { brokers: "k:9092", topic_prefix: "hooks." }
redis: { nodes: ["redis://r:7000"] }
sources:
  github:
    verify: { scheme: github }
    secrets: [ { id: k, env: GH_SECRET } ]
  acme:
    verify: { scheme: standard-webhooks }
    secrets: [ { id: k, env: SW_SECRET } ]
    topic: acme-events
    forward_headers: [Webhook-Id, X-Kind]
    event_type: { from: header, name: X-Kind }
  meters:
    verify: { scheme: none }
    dedupe: { from: none }
"#,
        )?;
        let config = load(Path::new("spillway.yaml")).map_err(|e| e.to_string())?;
        let resolved = config.resolve_sources().map_err(|e| format!("{e:?}"))?;
        let routes = config
            .resolve_source_routes()
            .map_err(|e| format!("{e:?}"))?;
        let expected: Vec<SourceRoute> = resolved.iter().map(|s| s.route()).collect();
        assert_eq!(routes, expected);
        let acme = routes.iter().find(|r| r.name == "acme").ok_or("acme")?;
        assert_eq!(acme.topic, "acme-events");
        assert_eq!(acme.forward_headers, ["webhook-id", "x-kind"]);
        let meters = routes.iter().find(|r| r.name == "meters").ok_or("meters")?;
        assert_eq!(
            (meters.topic.as_str(), &meters.event_type),
            ("hooks.meters", &None)
        );
        Ok(())
    });
}
