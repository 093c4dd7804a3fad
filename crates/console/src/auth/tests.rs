use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};

use super::*;

fn auth(proxy: Option<TrustedProxy>) -> Auth {
    Auth {
        tokens: vec![
            (
                "viewer-token-0123456789".into(),
                Caller {
                    name: "grafana".into(),
                    role: ConsoleRole::Viewer,
                },
            ),
            (
                "operator-token-0123456789".into(),
                Caller {
                    name: "oncall".into(),
                    role: ConsoleRole::Operator,
                },
            ),
        ],
        proxy,
    }
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_str(value).expect("value"));
    }
    map
}

fn proxy() -> TrustedProxy {
    TrustedProxy {
        user_header: "x-forwarded-email".into(),
        groups_header: Some("x-forwarded-groups".into()),
        operators: vec!["ada@example.com".into()],
        operator_groups: vec!["sre".into()],
        from: vec!["10.0.0.0/8".parse().expect("net")],
    }
}

const INSIDE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3));
const OUTSIDE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

#[test]
fn a_token_names_its_holder_and_role_and_an_unknown_one_is_refused() {
    let a = auth(None);
    let caller = a
        .identify(
            &headers(&[("authorization", "Bearer operator-token-0123456789")]),
            OUTSIDE,
        )
        .expect("known");
    assert_eq!(
        caller,
        Caller {
            name: "oncall".into(),
            role: ConsoleRole::Operator
        }
    );
    let caller = a
        .identify(
            &headers(&[("authorization", "bearer viewer-token-0123456789")]),
            OUTSIDE,
        )
        .expect("the scheme is case-insensitive");
    assert_eq!(caller.role, ConsoleRole::Viewer);
    for refused in [
        headers(&[("authorization", "Bearer viewer-token-012345678")]),
        headers(&[("authorization", "Basic dmlld2VyOng=")]),
        headers(&[]),
    ] {
        let e = a.identify(&refused, OUTSIDE).expect_err("refused");
        assert_eq!(
            (e.status, e.code),
            (StatusCode::UNAUTHORIZED, "unauthorized")
        );
    }
}

#[test]
fn the_proxy_s_identity_is_believed_only_from_the_proxy() {
    let a = auth(Some(proxy()));
    let from_proxy = |pairs: &[(&'static str, &str)]| a.identify(&headers(pairs), INSIDE);
    assert_eq!(
        from_proxy(&[("x-forwarded-email", "bob@example.com")]).expect("proxied"),
        Caller {
            name: "bob@example.com".into(),
            role: ConsoleRole::Viewer
        }
    );
    assert_eq!(
        from_proxy(&[("x-forwarded-email", "ada@example.com")])
            .expect("proxied")
            .role,
        ConsoleRole::Operator,
        "named an operator"
    );
    assert_eq!(
        from_proxy(&[
            ("x-forwarded-email", "cy@example.com"),
            ("x-forwarded-groups", "dev, sre")
        ])
        .expect("proxied")
        .role,
        ConsoleRole::Operator,
        "in an operator group"
    );
    assert!(
        from_proxy(&[("x-forwarded-email", "")]).is_err(),
        "an empty user is nobody"
    );
    let direct = a.identify(
        &headers(&[("x-forwarded-email", "ada@example.com")]),
        OUTSIDE,
    );
    assert_eq!(direct.expect_err("not from the proxy").code, "unauthorized");
}

#[test]
fn a_repeated_proxy_header_names_nobody_and_an_ipv4_mapped_proxy_is_the_proxy() {
    let a = auth(Some(proxy()));
    let mut twice = headers(&[("x-forwarded-email", "mallory@example.com")]);
    twice.append(
        "x-forwarded-email",
        HeaderValue::from_static("ada@example.com"),
    );
    assert_eq!(
        a.identify(&twice, INSIDE).expect_err("ambiguous").code,
        "unauthorized"
    );
    let mapped: IpAddr = "::ffff:10.1.2.3".parse().expect("ip");
    let caller = a.identify(
        &headers(&[("x-forwarded-email", "bob@example.com")]),
        mapped,
    );
    assert_eq!(caller.expect("the proxy").name, "bob@example.com");
}

#[test]
fn the_proxy_s_own_bearer_token_does_not_hide_its_user() {
    let a = auth(Some(proxy()));
    let caller = a
        .identify(
            &headers(&[
                ("authorization", "Bearer eyJ.an-id-token.sig"),
                ("x-forwarded-email", "bob@example.com"),
            ]),
            INSIDE,
        )
        .expect("the proxy's user");
    assert_eq!(caller.name, "bob@example.com");
    let outside = a.identify(
        &headers(&[("authorization", "Bearer eyJ.an-id-token.sig")]),
        OUTSIDE,
    );
    assert_eq!(
        outside.expect_err("unknown").message,
        "that token is not one of console.tokens"
    );
}

#[test]
fn a_token_wins_over_the_proxy_header() {
    let a = auth(Some(proxy()));
    let caller = a
        .identify(
            &headers(&[
                ("authorization", "Bearer viewer-token-0123456789"),
                ("x-forwarded-email", "ada@example.com"),
            ]),
            INSIDE,
        )
        .expect("known");
    assert_eq!(caller.name, "grafana");
}
