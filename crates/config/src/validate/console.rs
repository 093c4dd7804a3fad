//! Validation of the `console` section: its tokens, the proxy it trusts and its index's bounds.
//! The database URL and the tokens themselves are read by `spillway console` alone.

use std::collections::HashSet;

use crate::field::{err, FieldError};
use crate::model::ConsoleConfig;

pub(super) fn validate(console: &ConsoleConfig, errors: &mut Vec<FieldError>) {
    let mut names = HashSet::new();
    for (i, token) in console.tokens.iter().enumerate() {
        if token.name.trim().is_empty() {
            errors.push(err(
                format!("console.tokens[{i}].name"),
                "must not be empty",
            ));
        } else if !names.insert(token.name.as_str()) {
            errors.push(err(
                format!("console.tokens[{i}].name"),
                format!(
                    "`{}` names another token too: the audit log could not tell them apart",
                    token.name
                ),
            ));
        }
        if token.token.env.is_some() == token.token.file.is_some() {
            errors.push(err(
                format!("console.tokens[{i}].token"),
                "set exactly one of `env` and `file`",
            ));
        }
    }
    if let Some(proxy) = &console.trusted_proxy {
        if proxy.user_header.parse::<http::HeaderName>().is_err() {
            errors.push(err(
                "console.trusted_proxy.user_header",
                "must be a header name",
            ));
        }
        if let Some(groups) = &proxy.groups_header {
            if groups.parse::<http::HeaderName>().is_err() {
                errors.push(err(
                    "console.trusted_proxy.groups_header",
                    "must be a header name",
                ));
            }
        }
        if proxy.from.is_empty() {
            errors.push(err(
                "console.trusted_proxy.from",
                "name the proxy's addresses: without them anyone reaching the console could claim any identity",
            ));
        }
    }
    if let Some(url) = &console.database_url {
        if url.env.is_some() == url.file.is_some() {
            errors.push(err(
                "console.database_url",
                "set exactly one of `env` and `file`",
            ));
        }
    }
    if console.bulk_retry_limit == 0 {
        errors.push(err("console.bulk_retry_limit", "must be at least 1"));
    }
    if console.scan_timeout.is_zero() {
        errors.push(err("console.scan_timeout", "must be greater than zero"));
    }
    if let Some(url) = &console.prometheus_url {
        let parsed = url.parse::<http::Uri>();
        let usable = parsed
            .as_ref()
            .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
        if !usable {
            errors.push(err(
                "console.prometheus_url",
                "must be an http:// or https:// URL such as http://prometheus:9090",
            ));
        }
    }
    if console.database_pool == 0 {
        errors.push(err("console.database_pool", "must be at least 1"));
    }
    let index = &console.index;
    if index.batch_records == 0 {
        errors.push(err("console.index.batch_records", "must be at least 1"));
    }
    if index.batch_wait.is_zero() {
        errors.push(err("console.index.batch_wait", "must be greater than zero"));
    }
    if index.retention.is_zero() {
        errors.push(err("console.index.retention", "must be greater than zero"));
    }
    if index.audit_retention.is_zero() {
        errors.push(err(
            "console.index.audit_retention",
            "must be greater than zero",
        ));
    }
    if index.retention_interval.is_zero() {
        errors.push(err(
            "console.index.retention_interval",
            "must be greater than zero",
        ));
    }
    if index.group_id.is_empty() {
        errors.push(err("console.index.group_id", "must not be empty"));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn fields(console: &ConsoleConfig) -> Vec<String> {
        let mut errors = Vec::new();
        validate(console, &mut errors);
        errors.iter().map(|e| e.path.clone()).collect()
    }

    #[test]
    fn the_defaults_are_valid() {
        assert!(fields(&ConsoleConfig::default()).is_empty());
    }

    #[test]
    fn a_prometheus_url_must_be_http_with_a_host() {
        for (url, valid) in [
            ("http://prometheus:9090", true),
            ("https://metrics.example.com/prom/", true),
            ("prometheus:9090", false),
            ("ftp://prometheus", false),
            ("http://", false),
        ] {
            let console = ConsoleConfig {
                prometheus_url: Some(url.into()),
                ..ConsoleConfig::default()
            };
            let refused = fields(&console) == ["console.prometheus_url"];
            assert_eq!(!refused, valid, "{url}");
        }
    }

    #[test]
    fn zero_bounds_are_refused() {
        let console = ConsoleConfig {
            scan_timeout: Duration::ZERO,
            bulk_retry_limit: 0,
            ..ConsoleConfig::default()
        };
        assert_eq!(
            fields(&console),
            ["console.bulk_retry_limit", "console.scan_timeout"]
        );
    }
}
