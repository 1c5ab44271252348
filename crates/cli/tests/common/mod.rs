//! Helpers shared by the real-process KV tests (each test binary uses a different subset).
#![allow(dead_code)]

pub mod cluster;
pub mod history;
pub mod ports;
pub mod redis;
pub mod up;
pub mod wait;
