//! Compressed request bodies (`Content-Encoding: gzip` or `zstd`): decoded before the
//! signature is checked (senders sign what they mean, the decoded body) and stored decoded,
//! with the decoded size capped like the wire size, so a decompression bomb costs at most
//! `max_body_bytes` of memory before it is answered 413.

use std::io::Read;

use bytes::Bytes;
use http::{header, HeaderMap};

/// How a body is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("Content-Encoding {0:?} is not supported (gzip, zstd or identity)")]
    Unsupported(String),
    #[error("the decompressed body is larger than this source's limit of {0} bytes")]
    TooLarge(u64),
    #[error("the {0} body cannot be decompressed: {1}")]
    Corrupt(&'static str, String),
    /// The memory the decoded body needs could not be had now.
    #[error("no memory for the decompressed body now")]
    NoRoom,
}

/// The request's encoding; one coding at most (stacked codings are refused).
pub fn encoding_of(headers: &HeaderMap) -> Result<Encoding, DecodeError> {
    let mut codings = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("\u{fffd}").split(','))
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity");
    let encoding = match codings.next().as_deref() {
        None => Encoding::Identity,
        Some("gzip" | "x-gzip") => Encoding::Gzip,
        Some("zstd") => Encoding::Zstd,
        Some(other) => return Err(DecodeError::Unsupported(other.to_owned())),
    };
    match codings.next() {
        None => Ok(encoding),
        Some(_) => Err(DecodeError::Unsupported("more than one coding".to_owned())),
    }
}

/// Decodes `body`, refusing to produce more than `cap` bytes. `grow` is asked for every byte
/// of capacity the output takes, before it is used, and may refuse it (the body budget).
pub fn decode(
    encoding: Encoding,
    body: Bytes,
    cap: u64,
    mut grow: impl FnMut(usize) -> bool,
) -> Result<Bytes, DecodeError> {
    let (name, reader): (&'static str, Box<dyn Read + '_>) = match encoding {
        Encoding::Identity => return Ok(body),
        Encoding::Gzip => (
            "gzip",
            Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
        ),
        Encoding::Zstd => (
            "zstd",
            Box::new(
                zstd::stream::read::Decoder::new(&body[..])
                    .map_err(|e| DecodeError::Corrupt("zstd", e.to_string()))?,
            ),
        ),
    };
    // One byte past the cap tells "exactly at the limit" from "over it".
    let mut reader = reader.take(cap.saturating_add(1));
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = [0u8; DECODE_CHUNK];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DecodeError::Corrupt(name, e.to_string())),
        };
        if out.len() + n > out.capacity() {
            // Grow the way Vec would (doubling), but ask first.
            let want = (out.len() + n).max(out.capacity() * 2);
            if !grow(want - out.capacity()) {
                return Err(DecodeError::NoRoom);
            }
            out.reserve_exact(want - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
    if out.len() as u64 > cap {
        return Err(DecodeError::TooLarge(cap));
    }
    Ok(Bytes::from(out))
}

/// The decoder's read size: small enough for the stack, large enough to be few calls.
const DECODE_CHUNK: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Bytes {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).expect("write");
        Bytes::from(e.finish().expect("finish"))
    }

    fn zstd(data: &[u8]) -> Bytes {
        Bytes::from(zstd::encode_all(data, 3).expect("zstd"))
    }

    fn with_encoding(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::CONTENT_ENCODING, v.parse().expect("value"));
        }
        h
    }

    #[test]
    fn encodings_are_recognised_and_others_refused() {
        assert_eq!(encoding_of(&HeaderMap::new()), Ok(Encoding::Identity));
        assert_eq!(
            encoding_of(&with_encoding(&["identity"])),
            Ok(Encoding::Identity)
        );
        assert_eq!(encoding_of(&with_encoding(&["GZIP"])), Ok(Encoding::Gzip));
        assert_eq!(encoding_of(&with_encoding(&["zstd"])), Ok(Encoding::Zstd));
        assert!(matches!(
            encoding_of(&with_encoding(&["br"])),
            Err(DecodeError::Unsupported(c)) if c == "br"
        ));
        assert!(encoding_of(&with_encoding(&["gzip, zstd"])).is_err());
        assert!(encoding_of(&with_encoding(&["gzip", "gzip"])).is_err());
    }

    #[test]
    fn bodies_round_trip_up_to_the_cap() {
        let body = br#"{"id":"evt_1","type":"reading"}"#.repeat(100);
        let n = body.len() as u64;
        assert_eq!(
            decode(Encoding::Gzip, gzip(&body), n, |_| true).expect("gzip"),
            body
        );
        assert_eq!(
            decode(Encoding::Zstd, zstd(&body), n, |_| true).expect("zstd"),
            body
        );
        assert_eq!(
            decode(Encoding::Gzip, gzip(&body), n - 1, |_| true),
            Err(DecodeError::TooLarge(n - 1))
        );
    }

    #[test]
    fn a_bomb_is_refused_without_inflating_it() {
        // 64 MiB of zeros compress to a few dozen KiB.
        let zeros = vec![0u8; 64 << 20];
        for (encoding, bomb) in [
            (Encoding::Gzip, gzip(&zeros)),
            (Encoding::Zstd, zstd(&zeros)),
        ] {
            assert!(bomb.len() < 1 << 20);
            assert_eq!(
                decode(encoding, bomb, 1 << 20, |_| true),
                Err(DecodeError::TooLarge(1 << 20))
            );
        }
    }

    #[test]
    fn garbage_is_corrupt() {
        for encoding in [Encoding::Gzip, Encoding::Zstd] {
            assert!(matches!(
                decode(
                    encoding,
                    Bytes::from_static(b"not compressed"),
                    1024,
                    |_| true
                ),
                Err(DecodeError::Corrupt(..))
            ));
        }
    }

    #[test]
    fn the_output_grows_only_with_room_and_never_past_what_was_granted() {
        let body = vec![b'a'; 100_000];
        let mut granted = 0;
        let decoded = decode(Encoding::Gzip, gzip(&body), 1 << 20, |n| {
            granted += n;
            true
        })
        .expect("decoded");
        assert_eq!(decoded.len(), 100_000);
        assert!((100_000..=2 * 100_000).contains(&granted), "{granted}");
        let refused = decode(Encoding::Gzip, gzip(&body), 1 << 20, |n| n <= DECODE_CHUNK);
        assert_eq!(refused, Err(DecodeError::NoRoom));
    }
}
