//! The config loader against arbitrary files: a config is loaded or refused with errors that
//! name the problem, never a panic; a loaded one resolves its sources and topics the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &[u8]| {
    let path = std::env::temp_dir().join(format!("spillway-fuzz-{}.yaml", std::process::id()));
    if std::fs::write(&path, text).is_err() {
        return;
    }
    if let Ok(config) = spillway_config::load(&path) {
        let _ = config.resolve_sources();
        let _ = config.topics();
    }
});
