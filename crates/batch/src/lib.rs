//! Splits the body of a batch request into its records, for sources that declare `batch:`:
//! NDJSON (one JSON value per line), a JSON array (one record per element) or length-delimited
//! Protobuf (each message prefixed by its length as a varint, as `writeDelimitedTo` and
//! prost's `encode_length_delimited` write it).
//!
//! Each record is a slice of the body (no copy), exactly the bytes the sender wrote: a JSON
//! array's element is never re-serialised. Two kinds of error are kept apart:
//! - a [`RecordError`] refuses one record and leaves the others to be written (a line that is
//!   not JSON, a record over the size cap): the record boundaries are still known;
//! - a [`BatchError`] refuses the whole request, as nothing can be written safely without the
//!   boundaries (a truncated frame, a body that is not an array) or the batch breaks a limit.

use bytes::{Buf, Bytes};
use serde::Deserialize;
use serde_json::value::RawValue;

/// How a batch body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchFormat {
    /// Newline-delimited JSON: one JSON value per line; blank lines are skipped.
    Ndjson,
    /// One JSON array whose elements are the records.
    JsonArray,
    /// Protobuf messages, each prefixed by its length as a base-128 varint.
    ProtobufDelimited,
}

// === impl BatchFormat ===

impl BatchFormat {
    /// The name used in the config and in docs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ndjson => "ndjson",
            Self::JsonArray => "json_array",
            Self::ProtobufDelimited => "protobuf_delimited",
        }
    }

    /// Whether each record is a JSON value (so JSON pointers can reach into it).
    pub fn is_json(self) -> bool {
        !matches!(self, Self::ProtobufDelimited)
    }
}

/// The limits a batch is split under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// More records than this refuses the whole request.
    pub max_records: usize,
    /// A larger record is refused alone.
    pub max_record_bytes: usize,
}

/// One record of a batch: its bytes, or why it alone is refused.
pub type Piece = Result<Bytes, RecordError>;

/// Why one record of a batch is refused; the batch's other records are unaffected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the record is not JSON: {0}")]
    NotJson(String),
    #[error("the record is {size} bytes, more than this source's limit of {max} bytes per record")]
    TooLarge { size: usize, max: usize },
}

// === impl RecordError ===

impl RecordError {
    /// The stable code reported for the record.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotJson(_) => "record_not_json",
            Self::TooLarge { .. } => "record_too_large",
        }
    }
}

/// Why a whole batch is refused: nothing of it is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("the batch holds no record")]
    Empty,
    #[error("the batch holds more than this source's limit of {max} records")]
    TooManyRecords { max: usize },
    #[error("the body is not a JSON array of records: {0}")]
    NotArray(String),
    #[error("frame {index} at byte {offset}: {problem}")]
    BadFrame {
        index: usize,
        offset: usize,
        problem: String,
    },
}

// === impl BatchError ===

impl BatchError {
    /// The stable code of the answer.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "batch_empty",
            Self::TooManyRecords { .. } => "batch_too_many_records",
            Self::NotArray(_) | Self::BadFrame { .. } => "batch_malformed",
        }
    }
}

/// Splits `body` into its records, in order.
pub fn split(format: BatchFormat, body: &Bytes, limits: Limits) -> Result<Vec<Piece>, BatchError> {
    let mut pieces = Pieces {
        found: Vec::new(),
        limits,
        over_cap: false,
    };
    match format {
        BatchFormat::Ndjson => ndjson(body, &mut pieces)?,
        BatchFormat::JsonArray => json_array(body, &mut pieces)?,
        BatchFormat::ProtobufDelimited => protobuf_delimited(body, &mut pieces)?,
    }
    if pieces.found.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(pieces.found)
}

/// The records found so far, refused past the count limit as soon as it is passed (a body of
/// a million empty frames is not split to the end).
struct Pieces {
    found: Vec<Piece>,
    limits: Limits,
    /// A record past `max_records` was offered.
    over_cap: bool,
}

impl Pieces {
    fn push(&mut self, piece: Piece) -> Result<(), BatchError> {
        if self.found.len() >= self.limits.max_records {
            self.over_cap = true;
            return Err(BatchError::TooManyRecords {
                max: self.limits.max_records,
            });
        }
        self.found.push(piece);
        Ok(())
    }

    /// `record`, or its refusal when it is over the size cap.
    fn sized(&self, record: Bytes) -> Piece {
        if record.len() > self.limits.max_record_bytes {
            return Err(RecordError::TooLarge {
                size: record.len(),
                max: self.limits.max_record_bytes,
            });
        }
        Ok(record)
    }
}

fn ndjson(body: &Bytes, pieces: &mut Pieces) -> Result<(), BatchError> {
    let mut start = 0;
    while start < body.len() {
        let end = body[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |at| start + at);
        // A CRLF line ending is a line ending, not part of the record.
        let line_end = if end > start && body[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        let line = &body[start..line_end];
        if !line.iter().all(u8::is_ascii_whitespace) {
            let piece = pieces
                .sized(body.slice(start..line_end))
                .and_then(|record| {
                    serde_json::from_slice::<serde::de::IgnoredAny>(&record)
                        .map(|_| record)
                        .map_err(|e| RecordError::NotJson(e.to_string()))
                });
            pieces.push(piece)?;
        }
        start = end + 1;
    }
    Ok(())
}

fn json_array(body: &Bytes, pieces: &mut Pieces) -> Result<(), BatchError> {
    let mut parser = serde_json::Deserializer::from_slice(body);
    let elements = Elements { body, pieces };
    // Elements are taken one at a time, so an array of more than `max_records` is refused
    // at the first element over, never parsed whole into memory.
    let parsed =
        serde::Deserializer::deserialize_seq(&mut parser, elements).and_then(|()| parser.end());
    match parsed {
        Ok(()) => Ok(()),
        // The cap stopped the parse through serde's error type: give it back as itself.
        Err(_) if pieces.over_cap => Err(BatchError::TooManyRecords {
            max: pieces.limits.max_records,
        }),
        Err(e) => Err(BatchError::NotArray(e.to_string())),
    }
}

/// Visits a JSON array's elements as raw slices of the body, pushing each as a record.
struct Elements<'a> {
    body: &'a Bytes,
    pieces: &'a mut Pieces,
}

impl<'de> serde::de::Visitor<'de> for Elements<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array of records")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let base = self.body.as_ptr() as usize;
        while let Some(element) = seq.next_element::<&'de RawValue>()? {
            // A borrowed RawValue is a slice of the body itself: its place in the body is
            // where the record is, so the record is the sender's exact bytes.
            let text = element.get();
            let start = (text.as_ptr() as usize).saturating_sub(base);
            let end = start + text.len();
            if end > self.body.len() {
                return Err(serde::de::Error::custom("an element lies outside the body"));
            }
            let piece = self.pieces.sized(self.body.slice(start..end));
            self.pieces
                .push(piece)
                .map_err(|e| serde::de::Error::custom(e.to_string()))?;
        }
        Ok(())
    }
}

fn protobuf_delimited(body: &Bytes, pieces: &mut Pieces) -> Result<(), BatchError> {
    let mut rest = &body[..];
    let mut offset = 0usize;
    let mut index = 0usize;
    while !rest.is_empty() {
        let before = rest.remaining();
        let bad = |problem: String| BatchError::BadFrame {
            index,
            offset,
            problem,
        };
        let announced = prost::encoding::decode_varint(&mut rest)
            .map_err(|e| bad(format!("the length prefix is not a varint ({e})")))?;
        let prefix = before - rest.remaining();
        let length = usize::try_from(announced)
            .ok()
            .filter(|&length| length <= rest.len())
            .ok_or_else(|| {
                bad(format!(
                    "the frame announces {announced} bytes but only {} remain (truncated)",
                    rest.len()
                ))
            })?;
        let start = offset + prefix;
        let piece = pieces.sized(body.slice(start..start + length));
        pieces.push(piece)?;
        rest = &rest[length..];
        offset = start + length;
        index += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
