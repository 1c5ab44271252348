//! MapReduce tests with real processes, run the way a user would run them: the `shardkv`
//! binary as a coordinator and several workers on loopback TCP, sharing a directory.
//!
//! They cover at least the MIT 6.5840 lab's `test-mr.sh` cases. Each checks an outcome
//! (output equal to a sequential run, marker-file counts), never timing; every process has
//! a hard run-time limit and every polling loop a deadline. A failing test keeps its
//! directory (under the cargo target's tmp dir) with one log per process.

mod crash;
mod harness;
mod jobs;
mod parallelism;
mod streaming;
#[path = "../common/wait.rs"]
mod wait;
