//! Transport benchmarks (filled in with the transport).
fn main() {}
