//! The `objects` section: a store that can be opened, with parts its kind accepts.

use crate::field::{err, FieldError};
use crate::model::Config;

/// S3's and GCS's smallest part (but the last) of a multipart upload.
const SMALLEST_PART_BYTES: usize = 5 * 1024 * 1024;

pub(super) fn validate(config: &Config, errors: &mut Vec<FieldError>) {
    let Some(objects) = &config.objects else {
        return;
    };
    // Opening contacts nothing: it checks the URL and the options by the store's own rules.
    if let Err(e) = spillway_objects::Objects::open(objects) {
        errors.push(err("objects", e.to_string()));
    }
    if objects.part_bytes < SMALLEST_PART_BYTES && !objects.url.starts_with("file:") {
        errors.push(err(
            "objects.part_bytes",
            format!(
                "must be at least {SMALLEST_PART_BYTES} (5 MiB), the smallest part cloud stores \
                 take"
            ),
        ));
    }
}
