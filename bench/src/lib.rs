//! Empty: the benchmark is benches/provider.rs (run by scripts/bench-provider.sh).
