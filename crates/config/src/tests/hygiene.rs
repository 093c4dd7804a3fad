//! Secrets kept out of what the crate prints (`Debug`, load errors), and the warnings
//! `check-config` prints: blocking behind an unknown proxy, secret files others can read.

use std::error::Error as _;
use std::path::Path;

use figment::Jail;

use super::MINIMAL;
use crate::{
    is_secret_key, load, load_with_warnings, parse_str, redact_url_credentials, Config,
    ConfigError, Process,
};

const PASSWORD: &str = "hunter2-Zq9";

fn warnings(config: &Config, process: Process) -> Vec<String> {
    config
        .warnings_for(process)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn secret_keys_and_url_credentials_are_recognised() {
    for key in [
        "sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "sasl.oauthbearer.client.secret",
        "SASL.PASSWORD",
        "my.api.token",
        "sasl.oauthbearer.config",
    ] {
        assert!(is_secret_key(key), "{key}");
    }
    for key in [
        "sasl.username",
        "security.protocol",
        "ssl.ca.location",
        "linger.ms",
    ] {
        assert!(!is_secret_key(key), "{key}");
    }
    for (text, redacted) in [
        ("redis://:pw@r:7000", "redis://<redacted>@r:7000"),
        (
            "found string \"rediss://user:p/w@x@r:7000,redis://:b@s:1\" here",
            "found string \"rediss://<redacted>@r:7000,redis://<redacted>@s:1\" here",
        ),
        (
            "redis://r:7000 and user@example.com",
            "redis://r:7000 and user@example.com",
        ),
        ("no url at all", "no url at all"),
    ] {
        assert_eq!(redact_url_credentials(text), redacted);
    }
}

#[test]
fn debug_hides_secret_properties_and_redis_credentials() {
    let config = parse_str(&format!(
        r#"
kafka:
  brokers: k:9092
  properties:
    security.protocol: SASL_SSL
    sasl.username: spillway
    sasl.password: "{PASSWORD}"
    ssl.key.password: "{PASSWORD}"
    ssl.keystore.password: "{PASSWORD}"
    sasl.oauthbearer.client.secret: "{PASSWORD}"
    custom.token: "{PASSWORD}"
redis:
  nodes: ["redis://:{PASSWORD}@redis:6379"]
worker:
  consumer_properties: {{ sasl.password: "{PASSWORD}", fetch.min.bytes: "1" }}
sources:
  a: {{ verify: {{ scheme: none }} }}
"#
    ))
    .expect("parses");
    let printed = format!("{config:?}");
    assert!(!printed.contains(PASSWORD), "{printed}");
    for shown in [
        "\"security.protocol\": \"SASL_SSL\"",
        "\"sasl.username\": \"spillway\"",
        "\"sasl.password\": <redacted>",
        "\"redis://<redacted>@redis:6379\"",
        "\"fetch.min.bytes\": \"1\"",
    ] {
        assert!(printed.contains(shown), "{shown} in {printed}");
    }
    assert!(!format!("{:#?}", config.kafka).contains(PASSWORD));
}

/// L-7: `SPILLWAY_REDIS__NODES` set to a string instead of a list: figment's error names the
/// value it found, which holds the password.
#[test]
fn a_load_error_does_not_echo_a_password() {
    Jail::expect_with(|jail| {
        jail.create_file("spillway.yaml", MINIMAL)?;
        jail.set_env("GH_SECRET", "s");
        jail.set_env(
            "SPILLWAY_REDIS__NODES",
            format!("redis://:{PASSWORD}@redis:6379"),
        );
        let e = load(Path::new("spillway.yaml")).expect_err("a string is not a list");
        assert!(matches!(e, ConfigError::Parse { .. }));
        let mut printed = vec![e.to_string(), format!("{e:?}")];
        let mut source = e.source();
        while let Some(s) = source {
            printed.push(s.to_string());
            source = s.source();
        }
        for text in &printed {
            assert!(!text.contains(PASSWORD), "{text}");
        }
        assert!(
            printed[0].contains("redis://<redacted>@redis:6379")
                && printed[0].contains("REDIS.NODES")
                && printed[0].contains("`SPILLWAY_` environment variable"),
            "still says what and where: {}",
            printed[0]
        );
        Ok(())
    });
}

#[test]
fn a_load_error_under_a_secret_key_hides_the_value_whole() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "inline.yaml",
            &format!(
                "kafka: {{ brokers: k:9092 }}\nsources:\n  a:\n    verify: {{ scheme: github }}\n    \
                 secrets: \"whsec_{PASSWORD}\"\n"
            ),
        )?;
        jail.create_file(
            "numeric.yaml",
            "kafka: { brokers: k:9092, properties: { sasl.password: 918273645 } }\n\
             sources:\n  a: { verify: { scheme: none } }\n",
        )?;
        for (file, value) in [
            ("inline.yaml", format!("whsec_{PASSWORD}")),
            ("numeric.yaml", "918273645".to_owned()),
        ] {
            let e = load(Path::new(file)).expect_err("a value of the wrong type");
            let printed = format!("{e} {e:?}");
            assert!(!printed.contains(&value), "{printed}");
            assert!(printed.contains("a value (<redacted>)"), "{printed}");
        }
        Ok(())
    });
}

#[test]
fn blocking_without_trusted_proxies_is_a_warning_for_the_ingress() {
    let with = |ingress: &str| {
        parse_str(&format!(
            "ingress: {ingress}\nkafka: {{ brokers: k:9092 }}\nredis: {{ nodes: [\"redis://r:1\"] }}\n\
             sources:\n  a: {{ verify: {{ scheme: none }} }}\n"
        ))
        .expect("parses")
    };
    let blocking = with("{ block_failing_clients: {} }");
    assert!(blocking.validate().is_empty(), "legal");
    for process in [Process::Ingress, Process::All] {
        let found = warnings(&blocking, process);
        assert!(
            found.len() == 1
                && found[0].starts_with(
                    "ingress.block_failing_clients: on while ingress.trusted_proxies is empty"
                ),
            "{found:?}"
        );
    }
    assert_eq!(warnings(&blocking, Process::Worker), Vec::<String>::new());
    let proxied = with("{ block_failing_clients: {}, trusted_proxies: [10.0.0.0/8] }");
    assert_eq!(warnings(&proxied, Process::All), Vec::<String>::new());
    let default = with("{}");
    assert_eq!(
        default.ingress.block_failing_clients, None,
        "off by default"
    );
    assert_eq!(warnings(&default, Process::All), Vec::<String>::new());
}

#[test]
fn a_preset_that_signs_the_url_without_public_url_is_a_warning() {
    let with = |extra: &str| {
        parse_str(&format!(
            "kafka: {{ brokers: k:9092 }}\nredis: {{ nodes: [\"redis://r:1\"] }}\n\
             sources:\n  calls: {{ verify: {{ scheme: twilio }}{extra} }}\n"
        ))
        .expect("parses")
    };
    let found = warnings(&with(""), Process::Ingress);
    assert!(
        found.len() == 1
            && found[0].starts_with("sources.calls.public_url: scheme twilio signs the URL"),
        "{found:?}"
    );
    let set = with(", public_url: \"https://hooks.example.com\"");
    assert_eq!(warnings(&set, Process::Ingress), Vec::<String>::new());
    assert_eq!(warnings(&with(""), Process::Worker), Vec::<String>::new());
}

#[cfg(unix)]
fn chmod(path: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[cfg(unix)]
#[test]
fn secret_files_others_can_read_are_warned_about_for_the_process_that_reads_them() {
    Jail::expect_with(|jail| {
        jail.create_file("github.secret", "s\n")?;
        jail.create_file("billing.secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n")?;
        jail.create_file("client.properties", "sasl.password=p\n")?;
        jail.create_file(
            "spillway.yaml",
            "kafka: { brokers: k:9092, properties_file: client.properties }\n\
             redis: { nodes: [\"redis://r:1\"] }\n\
             sources:\n  github: { verify: { scheme: github }, secrets: [ { id: g, file: github.secret } ] }\n\
             subscriptions:\n  - { id: billing, url: \"https://b.example.com\", secrets: [ { id: b, file: billing.secret } ] }\n",
        )?;
        chmod("github.secret", 0o644);
        chmod("billing.secret", 0o600);
        chmod("client.properties", 0o640);
        let loaded = load_with_warnings(Path::new("spillway.yaml"), Process::Ingress)
            .map_err(|e| e.to_string())?;
        let found: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            [
                "sources.github.secrets[0].file: github.secret holds a secret and its mode 0644 \
                 lets group or others read it: chmod 600 it (or 640 for a group of its own)",
                "kafka.properties_file: client.properties holds a secret and its mode 0640 lets \
                 group or others read it: chmod 600 it (or 640 for a group of its own)",
            ]
        );
        chmod("billing.secret", 0o604);
        let worker = warnings(&loaded.config, Process::Worker);
        assert!(
            worker.len() == 2
                && worker[0].starts_with("subscriptions[0].secrets[0].file: billing.secret"),
            "the worker reads the subscription's, not the source's: {worker:?}"
        );
        chmod("github.secret", 0o600);
        chmod("billing.secret", 0o400);
        chmod("client.properties", 0o600);
        assert_eq!(warnings(&loaded.config, Process::All), Vec::<String>::new());
        Ok(())
    });
}

#[cfg(unix)]
#[test]
fn a_config_file_others_can_read_is_warned_about_only_when_it_holds_secrets() {
    Jail::expect_with(|jail| {
        jail.set_env("GH_SECRET", "s");
        let inline = MINIMAL.replace(
            "brokers: 127.0.0.1:9092",
            "brokers: 127.0.0.1:9092\n  properties: { sasl.password: p }",
        );
        jail.create_file("plain.yaml", MINIMAL)?;
        jail.create_file("inline.yaml", &inline)?;
        chmod("plain.yaml", 0o644);
        chmod("inline.yaml", 0o644);
        let of = |path: &str| -> Result<Vec<String>, String> {
            let loaded =
                load_with_warnings(Path::new(path), Process::All).map_err(|e| e.to_string())?;
            Ok(loaded.warnings.iter().map(ToString::to_string).collect())
        };
        assert_eq!(of("plain.yaml")?, Vec::<String>::new());
        assert_eq!(
            of("inline.yaml")?,
            ["inline.yaml: holds secrets (kafka.properties.sasl.password) and its mode 0644 lets \
              group or others read it: chmod 600 it, or move them out (kafka.properties_file, \
              SPILLWAY_REDIS__NODES from a Secret)"]
        );
        chmod("inline.yaml", 0o600);
        assert_eq!(of("inline.yaml")?, Vec::<String>::new());
        Ok(())
    });
}

#[test]
fn storing_handshakes_where_none_is_authenticated_is_a_warning() {
    let with = |scheme: &str| {
        parse_str(&format!(
            "kafka: {{ brokers: k:9092 }}\nredis: {{ nodes: [\"redis://r:1\"] }}\n\
             sources:\n  s: {{ verify: {{ scheme: {scheme} }}, store_handshakes: true }}\n"
        ))
        .expect("parses")
    };
    let found = warnings(&with("dropbox"), Process::Ingress);
    assert!(
        found.len() == 1
            && found[0].starts_with(
                "sources.s.store_handshakes: scheme dropbox has no authenticated handshake"
            ),
        "{found:?}"
    );
    assert_eq!(
        warnings(&with("slack"), Process::Ingress),
        Vec::<String>::new()
    );
    // Okta's handshake is token-checked at admission, bodiless: never stored either.
    assert_eq!(warnings(&with("okta"), Process::Ingress).len(), 1);
}
