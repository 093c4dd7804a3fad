//! W3C trace context for records. The ingress starts a new trace per event; an inbound
//! `traceparent` from an outside sender is not trusted as a parent.

use rand::RngCore;

/// A fresh `traceparent` value (version 00, sampled) with random trace and span ids.
pub fn new_traceparent() -> String {
    let mut rng = rand::rng();
    let mut trace_id = [0u8; 16];
    let mut span_id = [0u8; 8];
    // All-zero ids are invalid in W3C trace context; a random draw of zero is astronomically
    // unlikely, but the spec is cheap to honour.
    while trace_id == [0u8; 16] {
        rng.fill_bytes(&mut trace_id);
    }
    while span_id == [0u8; 8] {
        rng.fill_bytes(&mut span_id);
    }
    // One allocation per request: this runs for every accepted event.
    let mut value = [0u8; TRACEPARENT_LEN];
    value[..3].copy_from_slice(b"00-");
    write_hex(&trace_id, &mut value[3..35]);
    value[35] = b'-';
    write_hex(&span_id, &mut value[36..52]);
    value[52..].copy_from_slice(b"-01");
    value.iter().map(|&b| char::from(b)).collect()
}

/// `00-` + 32 hex digits + `-` + 16 hex digits + `-01`.
const TRACEPARENT_LEN: usize = 55;

fn write_hex(bytes: &[u8], out: &mut [u8]) {
    // `hex::encode_to_slice` only fails on a length mismatch, which the callers rule out.
    let written = hex::encode_to_slice(bytes, out);
    debug_assert!(
        written.is_ok(),
        "{} bytes do not fit {} hex digits",
        bytes.len(),
        out.len()
    );
    if written.is_err() {
        out.fill(b'0');
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn traceparent_has_the_w3c_shape() {
        let tp = super::new_traceparent();
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1].len(), 32);
        assert_eq!(parts[2].len(), 16);
        assert_eq!(parts[3], "01");
        assert!(tp
            .bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
}
