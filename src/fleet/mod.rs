//! Fleet: run work on many hosts with bounded concurrency, progress and per-host logs.
