//! Tools shipped in the `recado` binary that are not the server: seeding and playing the demo, the load generator, and
//! the knowledge-base, report and backup benchmarks and relevance evaluation. They use the library as any caller would; nothing
//! in the server depends on them.

pub mod bench_backup;
pub mod bench_kb;
pub mod bench_reports;
pub mod demo;
pub mod eval;
pub mod loadgen;
pub mod play;
