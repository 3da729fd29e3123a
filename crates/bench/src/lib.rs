#![forbid(unsafe_code)]
//! Shared parts of the benchmarks (see the binaries): an emulated cluster
//! seeded with Warehouses, the release binaries run as separate processes
//! (so their memory is their own), and a plain HTTP client.
//!
//! Benchmarks print numbers and assert nothing: CI builds them
//! (`cargo build --all-targets`) but never runs them.

pub mod cluster;
pub mod http;
pub mod process;
