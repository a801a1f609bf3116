//! Criterion benchmarks live beside this crate root: `cargo bench -p boxoffice-benches`.
