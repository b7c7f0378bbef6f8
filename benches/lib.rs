//! Benchmarks of `presence-tracker` (`cargo bench -p presence-benches`) and the memory
//! measurement (`cargo run --release --example memory`). See BENCHMARKS.md.
