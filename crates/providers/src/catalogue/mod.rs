//! The presets, one module per kind of provider.

mod commerce;
mod developer;
mod messaging;
mod platforms;

use crate::Preset;

/// Every preset.
pub(crate) fn all() -> Vec<Preset> {
    let mut all = Vec::new();
    all.extend(developer::presets());
    all.extend(commerce::presets());
    all.extend(messaging::presets());
    all.extend(platforms::presets());
    all
}
