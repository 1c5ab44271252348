//! The storage test suite, one binary (one link) for all of it:
//! - `conformance`: behaviour every `Disk` must give the store, run on `FsDisk` and `SimDisk`;
//! - `crash_points`: a crash after each disk step of append, truncate, rotation, snapshot
//!   write and snapshot install, on `SimDisk`;
//! - `random`: seeded random operations and crashes checked against a model;
//! - `identity`: the identity file on both disks, and its crash-safe replacement;
//! - `faults`: fsync failure and full disk on `SimDisk`, corruption;
//! - `power_loss`: unsynced pages persisted out of order (`CrashMode::Pages`), damage to
//!   synced records, a WAL of the previous format;
//! - `real_fs`: SIGKILL of a child process in a loop, and ENOSPC on a small tmpfs.

mod common;
mod conformance;
mod crash_points;
mod faults;
mod identity;
mod power_loss;
mod random;
mod real_fs;
