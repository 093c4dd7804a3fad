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
    format!("00-{}-{}-01", to_hex(&trace_id), to_hex(&span_id))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    }
}
