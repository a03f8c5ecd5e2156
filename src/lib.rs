//! Gatehouse: an authenticating HTTP forward proxy for corporate networks.
//!
//! A request's path, as the modules show it:
//! `listener` (accept, limits, framing) → `proxy` (the phases) → `policy`
//! (decision) → `forward` (HTTP) or `tunnel` (CONNECT, relay) → `accesslog`.
#![forbid(unsafe_code)]

pub mod accesslog;
pub mod auth;
pub mod body;
pub mod config;
pub mod conn;
pub mod directory;
pub mod error;
pub mod forward;
pub mod limit;
pub mod listener;
pub mod outcome;
pub mod policy;
pub mod proxy;
pub mod resolve;
pub mod server;
pub mod settings;
pub mod tunnel;
