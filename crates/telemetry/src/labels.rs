//! The label values the metrics take from the code: what became of a request, and which
//! Redis command ran.

/// What became of one request; the `outcome` label of `spillway_http_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Duplicate,
    InFlight,
    Unauthorized,
    BadRequest,
    UnknownSource,
    MethodNotAllowed,
    TooLarge,
    BodyTimeout,
    /// `ingress.max_in_flight` reached.
    Overloaded,
    /// `ingress.max_body_memory` has not got the bytes the body needs now.
    MemoryFull,
    /// The client address has `ingress.max_requests_per_client` requests open.
    ClientLimit,
    KafkaUnavailable,
    RedisUnavailable,
    LoopDetected,
    /// The client address is not in the source's `allow_cidrs`.
    Forbidden,
    /// The source's `rate_limit` is used up for this window.
    RateLimited,
    /// The client failed verification too often and is blocked for a while.
    Blocked,
    /// A `Content-Encoding` other than gzip, zstd or identity.
    UnsupportedEncoding,
    /// `GET /robots.txt`.
    RobotsTxt,
    /// A provider's registration handshake, answered at the edge.
    Handshake,
    /// A URL the message names (an SNS signing certificate or SubscribeURL) could not be
    /// fetched in time: 503, the provider retries.
    ProviderUnreachable,
    /// Object storage did not take a body over its source's `inline_max_bytes`: 503, the
    /// sender retries.
    ObjectsUnavailable,
    /// A bug: the request's task failed. Never expected; alert on any.
    Internal,
}

// === impl Outcome ===

impl Outcome {
    pub const ALL: [Outcome; 24] = [
        Self::Accepted,
        Self::Duplicate,
        Self::InFlight,
        Self::Unauthorized,
        Self::BadRequest,
        Self::UnknownSource,
        Self::MethodNotAllowed,
        Self::TooLarge,
        Self::BodyTimeout,
        Self::Overloaded,
        Self::MemoryFull,
        Self::ClientLimit,
        Self::KafkaUnavailable,
        Self::RedisUnavailable,
        Self::LoopDetected,
        Self::Forbidden,
        Self::RateLimited,
        Self::Blocked,
        Self::UnsupportedEncoding,
        Self::RobotsTxt,
        Self::Handshake,
        Self::ProviderUnreachable,
        Self::ObjectsUnavailable,
        Self::Internal,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::InFlight => "in_flight",
            Self::Unauthorized => "unauthorized",
            Self::BadRequest => "bad_request",
            Self::UnknownSource => "unknown_source",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::TooLarge => "too_large",
            Self::BodyTimeout => "body_timeout",
            Self::Overloaded => "overloaded",
            Self::MemoryFull => "memory_full",
            Self::ClientLimit => "client_limit",
            Self::KafkaUnavailable => "kafka_unavailable",
            Self::RedisUnavailable => "redis_unavailable",
            Self::LoopDetected => "loop_detected",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::Blocked => "blocked",
            Self::UnsupportedEncoding => "unsupported_encoding",
            Self::RobotsTxt => "robots_txt",
            Self::Handshake => "handshake",
            Self::ProviderUnreachable => "provider_unreachable",
            Self::ObjectsUnavailable => "objects_unavailable",
            Self::Internal => "internal",
        }
    }
}

/// A dedupe store command, the `command` label of the Redis metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisCommand {
    Claim,
    Commit,
    Release,
    /// The count of a source's rate-limit window.
    RateLimit,
    /// Looking up whether a client address is blocked.
    BlockCheck,
    /// Counting a client's failed verification, and blocking it past the limit.
    BlockCount,
}

impl RedisCommand {
    pub const ALL: [RedisCommand; 6] = [
        Self::Claim,
        Self::Commit,
        Self::Release,
        Self::RateLimit,
        Self::BlockCheck,
        Self::BlockCount,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Claim => "claim",
            Self::Commit => "commit",
            Self::Release => "release",
            Self::RateLimit => "rate_limit",
            Self::BlockCheck => "block_check",
            Self::BlockCount => "block_count",
        }
    }
}
