//! Who is calling: a bearer token of `console.tokens` (its name and role), or the user an
//! authenticating proxy in `console.trusted_proxy.from` names in its header. Viewers read;
//! operators also act.

use std::net::IpAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use http::request::Parts;
use http::{header, StatusCode};
use sha2::{Digest, Sha256};
use spillway_config::{ConsoleConfig, ConsoleRole, CredentialConfig, TrustedProxy};
use subtle::ConstantTimeEq;

use crate::problem::ApiError;
use crate::state::Shared;

/// A caller the console knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name, or the proxied user.
    pub name: String,
    pub role: ConsoleRole,
}

impl Caller {
    /// `viewer` or `operator`, as the audit log and `/v1/me` write it.
    pub fn role_name(&self) -> &'static str {
        match self.role {
            ConsoleRole::Viewer => "viewer",
            ConsoleRole::Operator => "operator",
        }
    }
}

/// The console's callers.
#[derive(Debug, Clone)]
pub struct Auth {
    tokens: Vec<(String, Caller)>,
    proxy: Option<TrustedProxy>,
}

/// Why the console's credentials could not be read.
#[derive(Debug, thiserror::Error)]
#[error("console.tokens[{index}] ({name}): cannot read its token")]
pub struct TokenError {
    index: usize,
    name: String,
    #[source]
    source: spillway_config::ApiTokenError,
}

impl Auth {
    /// Reads every token of `config`.
    pub fn from_config(config: &ConsoleConfig) -> Result<Self, TokenError> {
        let tokens = config
            .tokens
            .iter()
            .enumerate()
            .map(|(index, t)| {
                let secret =
                    CredentialConfig::read_api_token(&t.token).map_err(|source| TokenError {
                        index,
                        name: t.name.clone(),
                        source,
                    })?;
                let caller = Caller {
                    name: t.name.clone(),
                    role: t.role,
                };
                Ok((secret, caller))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            tokens,
            proxy: config.trusted_proxy.clone(),
        })
    }

    /// The caller of a request from `peer`: the holder of its bearer token, else the user the
    /// trusted proxy names. A token that is not one of ours may be the proxy's own (oauth2-proxy
    /// can pass its ID token on): then the proxy's user is the caller.
    pub fn identify(&self, headers: &http::HeaderMap, peer: IpAddr) -> Result<Caller, ApiError> {
        let token = bearer(headers);
        if let Some(caller) = token.and_then(|t| self.holder(t)) {
            return Ok(caller.clone());
        }
        if let Some(proxy) = &self.proxy {
            // An IPv4 client of a dual-stack listener shows as ::ffff:a.b.c.d.
            let peer = peer.to_canonical();
            if proxy.from.iter().any(|net| net.contains(&peer)) {
                if let Some(user) = single(headers, &proxy.user_header).filter(|u| !u.is_empty()) {
                    return Ok(proxied(proxy, user, headers));
                }
            }
        }
        let message = if token.is_some() {
            "that token is not one of console.tokens"
        } else {
            "send a console token as `Authorization: Bearer <token>`, or come through the \
             authenticating proxy"
        };
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            message,
        ))
    }

    /// Who holds `token`. Their SHA-256 digests are compared, every one of them, so the time
    /// taken tells neither which token matched nor how long the tokens are.
    fn holder(&self, token: &str) -> Option<&Caller> {
        let given = Sha256::digest(token.as_bytes());
        let mut found = None;
        for (secret, caller) in &self.tokens {
            if bool::from(given.ct_eq(&Sha256::digest(secret.as_bytes()))) {
                found = Some(caller);
            }
        }
        found
    }
}

fn proxied(proxy: &TrustedProxy, user: &str, headers: &http::HeaderMap) -> Caller {
    let groups: Vec<&str> = proxy
        .groups_header
        .as_deref()
        .and_then(|h| single(headers, h))
        .map(|g| g.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let operator = proxy.operators.iter().any(|o| o == user)
        || groups
            .iter()
            .any(|g| proxy.operator_groups.iter().any(|o| o == g));
    Caller {
        name: user.to_owned(),
        role: if operator {
            ConsoleRole::Operator
        } else {
            ConsoleRole::Viewer
        },
    }
}

/// The header's value when it has exactly one: a proxy that appends its header to one the
/// client sent would otherwise let the client's come first.
fn single<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value.to_str().ok().map(str::trim)
}

fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme is case-insensitive (RFC 9110, section 11.1).
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// A caller who may read.
#[derive(Debug, Clone)]
pub struct Viewer(pub Caller);

/// A caller who may act.
#[derive(Debug, Clone)]
pub struct Operator(pub Caller);

fn caller_of(parts: &Parts, state: &Shared) -> Result<Caller, ApiError> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    state.auth.identify(&parts.headers, peer)
}

impl FromRequestParts<Shared> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        caller_of(parts, state).map(Viewer)
    }
}

impl FromRequestParts<Shared> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let caller = caller_of(parts, state)?;
        if caller.role < ConsoleRole::Operator {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("{} is a viewer: this needs the operator role", caller.name),
            ));
        }
        Ok(Operator(caller))
    }
}

#[cfg(test)]
mod tests;
