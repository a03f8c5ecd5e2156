//! Gatehouse: an authenticating HTTP forward proxy.
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod listener;
