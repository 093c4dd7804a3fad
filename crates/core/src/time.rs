//! Milliseconds, the unit of every timestamp Spillway writes (record headers, Redis values).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `d` in whole milliseconds, saturating at `u64::MAX`.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds since the Unix epoch at `t`; 0 for a time before it (a clock set far back).
pub fn millis_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(millis).unwrap_or(0)
}

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> u64 {
    millis_since_epoch(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_truncate_and_saturate() {
        assert_eq!(millis(Duration::from_micros(1_999)), 1);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }

    #[test]
    fn a_time_before_the_epoch_reads_as_zero() {
        let before = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(millis_since_epoch(before), 0);
        assert_eq!(
            millis_since_epoch(UNIX_EPOCH + Duration::from_millis(1_500)),
            1_500
        );
    }
}
