//! The global allocator: jemalloc, for its memory under hostile uploads at the CPU of the others.
//!
//! Measured on 2026-12-04 on this machine, alternating release builds that differed only in
//! the allocator (docs/benchmarks.md, "The allocator"):
//! - at 2,500 requests/s the ingress used a median 155 µs of CPU per request with jemalloc,
//!   157 µs with mimalloc 3 and 148 µs with glibc's malloc (six samples each, up to 16% from
//!   their medians), and held 36, 44-66 and 31 MiB resident;
//! - the memory-pressure fault case, with two busy loops on the same two cores, peaked at
//!   78-82 MiB with jemalloc, 90-98 MiB with mimalloc (even with its purge delay at 10 ms) and
//!   70-71 MiB with glibc's malloc.
//!
//! glibc's malloc did as well here, but a long-running multi-threaded process that frees
//! bodies of every size on threads other than those that allocated them is where its arenas
//! are known to fragment; jemalloc was built for that, and returns what it does not use
//! within its decay time (10 s by default). Operators tune it through `_RJEM_MALLOC_CONF`
//! (its symbols carry that prefix, so librdkafka and the other C libraries keep glibc's).

/// jemalloc for every Rust allocation of the process.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
