//! The global allocator (mimalloc), and how soon it hands freed memory back to the OS.
//!
//! mimalloc 3 keeps freed pages resident for a second (`purge_delay`, 1000 ms) before it
//! returns them. Under hostile traffic the ingress frees near-maximum bodies hundreds of times
//! a second, so a second of them stays resident: the memory-pressure fault case measured 77-89
//! MiB peak resident against the 72 MiB the config then promised for a 4 MiB body budget, and
//! 66-71 MiB with a 10 ms delay (mimalloc 2's default). A pod limit counts resident memory, and
//! memory the allocator still holds cannot be reclaimed by the kernel, so the ingress would be
//! killed for memory it no longer uses.
//!
//! The option is set through mimalloc's C API because mimalloc reads its environment once, when
//! the process loads, before `main` could set a variable; an operator's own
//! `MIMALLOC_PURGE_DELAY` still wins.

/// mimalloc instead of glibc's allocator: under load the ingress allocates and frees per request
/// on many threads, and glibc's arena locks showed up in profiles (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long a freed page stays resident before it is returned to the OS.
pub const PURGE_DELAY_MS: i64 = 10;

/// mimalloc's own variables for the delay (the second its older name), which it matches
/// whatever their case; when one is set, the delay is left as the operator set it.
const PURGE_DELAY_VARIABLES: [&str; 2] = ["MIMALLOC_PURGE_DELAY", "MIMALLOC_RESET_DELAY"];

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (include/mimalloc.h): the Rust bindings
/// predate it. `the_option_index_is_the_purge_delay` checks the index against its default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets the purge delay, unless the operator set `MIMALLOC_PURGE_DELAY`. Call first in `main`,
/// before any thread is started.
pub fn tune() {
    if !operator_set_the_delay() {
        set_purge_delay(PURGE_DELAY_MS);
    }
}

fn operator_set_the_delay() -> bool {
    std::env::vars_os().any(|(name, _)| {
        let name = name.to_string_lossy();
        PURGE_DELAY_VARIABLES
            .iter()
            .any(|variable| name.eq_ignore_ascii_case(variable))
    })
}

#[allow(unsafe_code)]
fn set_purge_delay(ms: i64) {
    // SAFETY: `mi_option_set` writes a `long` into mimalloc's option table, a plain store: it
    // is called before any thread is started, so nothing reads it at the same time. The index
    // names an option of the linked mimalloc (checked by the test below); the delay is read at
    // each purge, so the change takes effect at once.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms as _) }
}

#[cfg(test)]
#[allow(unsafe_code)]
fn purge_delay() -> i64 {
    // SAFETY: `mi_option_get` reads mimalloc's option table (allocating threads read it too,
    // and nothing writes it here); the index is in range.
    // `c_long` is `i64` here, but not on every target.
    #[allow(clippy::unnecessary_cast)]
    let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) } as i64;
    delay
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_index_is_the_purge_delay() {
        // mimalloc 3's default for `purge_delay` is 1000 ms (src/options.c; mimalloc 2's is
        // 10), and no other option defaults to it: if the index or the linked mimalloc
        // changed, this fails. Only read: setting it is for `main`, before any thread starts.
        if !operator_set_the_delay() {
            assert_eq!(purge_delay(), 1000);
        }
    }
}
