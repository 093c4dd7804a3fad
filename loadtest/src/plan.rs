//! What each request is: the mix of valid, duplicate, tampered and stale requests, and the body
//! sizes. Seeded, so a run can be repeated request for request.

use std::collections::VecDeque;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::signing::SignedSource;

/// How far back a stale request's timestamp lies: far outside any replay window.
const STALE_SECONDS: i64 = 3600;
/// Valid requests kept for duplicates to repeat.
const RECENT: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A new event, correctly signed: 202 expected.
    Valid,
    /// An exact repeat of an earlier valid request (a sender's retry): 200, or 503 `in_flight`
    /// while the original is being written.
    Duplicate,
    /// Signed with the wrong key: 401 expected.
    Tampered,
    /// Signed long ago: 400 expected (sources whose scheme signs no timestamp get tampered
    /// requests instead).
    Stale,
}

/// How the summary keys an answer: its status, and for a 503 `in_flight` (a right answer to
/// a duplicate, unlike a shed 503) its code too.
pub fn outcome_key(status: u16, code: Option<&str>) -> String {
    match code {
        Some("in_flight") if status == 503 => "503 in_flight".to_owned(),
        _ => status.to_string(),
    }
}

// === impl Kind ===

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Duplicate => "duplicate",
            Self::Tampered => "tampered",
            Self::Stale => "stale",
        }
    }

    /// Whether `status` (with the answer's error `code`) is a right answer to a request of
    /// this kind. A duplicate sent on another connection can overtake its original: then the
    /// duplicate is accepted (202) and the original answered as the duplicate (503
    /// `in_flight`, or 200). Any other 503 (a shed) is not a right answer. `--verify` still
    /// catches an event wrongly answered as a duplicate: it is acknowledged but missing from
    /// Kafka.
    pub fn is_expected(self, status: u16, code: Option<&str>) -> bool {
        let in_flight = status == 503 && code == Some("in_flight");
        match self {
            Self::Valid => matches!(status, 202 | 200) || in_flight,
            Self::Duplicate => matches!(status, 200 | 202) || in_flight,
            Self::Tampered => status == 401,
            Self::Stale => status == 400,
        }
    }

    /// [`Kind::is_expected`] of an outcome as the summary keys it ([`outcome_key`]); None
    /// for a failure without an answer.
    pub fn is_expected_outcome(self, outcome: &str) -> Option<bool> {
        let (status, code) = match outcome.split_once(' ') {
            Some((status, code)) => (status, Some(code)),
            None => (outcome, None),
        };
        Some(self.is_expected(status.parse().ok()?, code))
    }

    /// The status a request of this kind should get, for the summary.
    pub fn expected(self) -> &'static str {
        match self {
            Self::Valid => "202 (200 or 503 in_flight when its duplicate overtook it)",
            Self::Duplicate => "200 (or 503 in_flight while the original is in flight)",
            Self::Tampered => "401",
            Self::Stale => "400",
        }
    }
}

/// The share of each kind besides valid, and the body sizes.
#[derive(Debug, Clone)]
pub struct Mix {
    pub duplicates: f64,
    pub tampered: f64,
    pub stale: f64,
    pub body_sizes: BodySizes,
}

/// Body sizes in bytes with their weights.
#[derive(Debug, Clone, PartialEq)]
pub struct BodySizes(Vec<(usize, f64)>);

impl std::str::FromStr for BodySizes {
    type Err = String;

    /// `1024`, or `512:50,1024:30,16384:20` (size:weight).
    fn from_str(text: &str) -> Result<Self, String> {
        let mut sizes = Vec::new();
        for part in text.split(',') {
            let (size, weight) = part.split_once(':').unwrap_or((part, "1"));
            let size: usize = size
                .trim()
                .parse()
                .map_err(|_| format!("{size:?} is not a size in bytes"))?;
            let weight: f64 = weight
                .trim()
                .parse()
                .map_err(|_| format!("{weight:?} is not a weight"))?;
            if weight <= 0.0 {
                return Err(format!("weight {weight} must be positive"));
            }
            sizes.push((size, weight));
        }
        Ok(Self(sizes))
    }
}

impl BodySizes {
    fn pick(&self, rng: &mut StdRng) -> usize {
        let total: f64 = self.0.iter().map(|(_, w)| w).sum();
        let mut at = rng.random::<f64>() * total;
        for (size, weight) in &self.0 {
            if at < *weight {
                return *size;
            }
            at -= weight;
        }
        self.0.last().map(|(s, _)| *s).unwrap_or(1024)
    }
}

/// One request to send.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The event's sequence number in the run; a duplicate carries its original's.
    pub seq: u64,
    pub kind: Kind,
    /// Index into the sources.
    pub source: usize,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// Makes the requests of one run, in order.
#[derive(Debug)]
pub struct Planner {
    sources: Vec<SignedSource>,
    mix: Mix,
    run_id: String,
    rng: StdRng,
    next_seq: u64,
    recent: VecDeque<Planned>,
}

// === impl Planner ===

impl Planner {
    pub fn new(sources: Vec<SignedSource>, mix: Mix, run_id: &str, seed: u64) -> Self {
        Self {
            sources,
            mix,
            run_id: run_id.to_owned(),
            rng: StdRng::seed_from_u64(seed),
            next_seq: 0,
            recent: VecDeque::with_capacity(RECENT),
        }
    }

    pub fn sources(&self) -> &[SignedSource] {
        &self.sources
    }

    /// The next request, signed at `now` (Unix seconds).
    pub fn next(&mut self, now: i64) -> Planned {
        let roll: f64 = self.rng.random();
        let mix = &self.mix;
        let kind = if roll < mix.duplicates {
            // Nothing to repeat yet: a new event instead.
            if self.recent.is_empty() {
                Kind::Valid
            } else {
                Kind::Duplicate
            }
        } else if roll < mix.duplicates + mix.tampered {
            Kind::Tampered
        } else if roll < mix.duplicates + mix.tampered + mix.stale {
            Kind::Stale
        } else {
            Kind::Valid
        };
        if kind == Kind::Duplicate {
            let pick = self.rng.random_range(0..self.recent.len());
            let mut again = self.recent[pick].clone();
            again.kind = Kind::Duplicate;
            return again;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let source = usize::try_from(seq).unwrap_or(0) % self.sources.len().max(1);
        let size = self.mix.body_sizes.pick(&mut self.rng);
        let id = format!("evt_{}_{seq}", &self.run_id[..8.min(self.run_id.len())]);
        let body = body(&self.run_id, seq, &id, size);
        let signer = &self.sources[source].signer;
        let (kind, headers) = match kind {
            Kind::Stale if signer.scheme().signs_timestamp() => {
                (Kind::Stale, signer.headers(&id, now - STALE_SECONDS, &body))
            }
            Kind::Stale | Kind::Tampered => (
                Kind::Tampered,
                signer.headers_with_key(b"not-the-secret", &id, now, &body),
            ),
            _ => (Kind::Valid, signer.headers(&id, now, &body)),
        };
        let planned = Planned {
            seq,
            kind,
            source,
            headers,
            body,
        };
        if kind == Kind::Valid {
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back(planned.clone());
        }
        planned
    }
}

/// A JSON event of about `size` bytes naming its run and sequence number, so that it can be
/// found in Kafka afterwards. `id` is the provider's event id (Stripe's dedupe key), `device`
/// a partition key for device fleets.
pub fn body(run_id: &str, seq: u64, id: &str, size: usize) -> Bytes {
    let head = format!(
        r#"{{"run":"{run_id}","seq":{seq},"id":"{id}","type":"load.test","device":"meter-{}","pad":""#,
        seq % 100
    );
    let pad = size.saturating_sub(head.len() + 2);
    let mut text = String::with_capacity(head.len() + pad + 2);
    text.push_str(&head);
    text.extend(std::iter::repeat_n('x', pad));
    text.push_str("\"}");
    Bytes::from(text)
}

/// The run and sequence number of a body this generator made.
pub fn run_and_seq(body: &[u8]) -> Option<(String, u64)> {
    #[derive(serde::Deserialize)]
    struct Marked {
        run: String,
        seq: u64,
    }
    let marked: Marked = serde_json::from_slice(body).ok()?;
    Some((marked.run, marked.seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planner(duplicates: f64, tampered: f64) -> Planner {
        let config: spillway_config::Config = spillway_config::parse_str(
            "kafka: { brokers: x }\nsources:\n  acme:\n    verify: { scheme: standard-webhooks }\n    dedupe: { from: none }\n    secrets: [{ id: a, env: SPILLWAY_PLAN_TEST_SECRET }]\n",
        )
        .unwrap();
        std::env::set_var(
            "SPILLWAY_PLAN_TEST_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        );
        let sources = SignedSource::from_config(&config).unwrap();
        let mix = Mix {
            duplicates,
            tampered,
            stale: 0.0,
            body_sizes: "1024".parse().unwrap(),
        };
        Planner::new(sources, mix, "run-1", 11)
    }

    #[test]
    fn the_mix_holds_its_shares_and_duplicates_repeat_earlier_requests() {
        let mut p = planner(0.5, 0.0);
        let planned: Vec<Planned> = (0..2000).map(|_| p.next(1_800_000_000)).collect();
        assert!(
            planned.iter().all(|r| r.kind != Kind::Tampered),
            "no tampering was asked for"
        );
        let duplicates: Vec<&Planned> = planned
            .iter()
            .filter(|r| r.kind == Kind::Duplicate)
            .collect();
        assert!(
            (800..1200).contains(&duplicates.len()),
            "{}",
            duplicates.len()
        );
        for dup in duplicates {
            let original = planned
                .iter()
                .find(|r| r.kind == Kind::Valid && r.seq == dup.seq)
                .expect("the original was sent before");
            assert_eq!(
                (&original.headers, &original.body),
                (&dup.headers, &dup.body)
            );
        }
        let mut p = planner(0.0, 0.25);
        let tampered = (0..2000)
            .filter(|_| p.next(1_800_000_000).kind == Kind::Tampered)
            .count();
        assert!((400..600).contains(&tampered), "{tampered}");
    }

    #[test]
    fn body_sizes_parse_and_bodies_have_their_size() {
        assert_eq!(
            "1024".parse::<BodySizes>(),
            Ok(BodySizes(vec![(1024, 1.0)]))
        );
        assert_eq!(
            "512:3, 16384:1".parse::<BodySizes>(),
            Ok(BodySizes(vec![(512, 3.0), (16384, 1.0)]))
        );
        assert!("big".parse::<BodySizes>().is_err());
        assert!("512:0".parse::<BodySizes>().is_err());
        for size in [200, 1024, 65536] {
            let b = body("run-1", 7, "evt_1", size);
            assert_eq!(b.len(), size);
            assert_eq!(run_and_seq(&b), Some(("run-1".into(), 7)));
        }
    }
}
