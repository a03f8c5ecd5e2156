//! Gatehouse: an authenticating HTTP forward proxy for corporate networks.
//!
//! A request's path, as the modules show it (the README draws the same):
//! `listener` (accept, limits, framing) → `proxy` (the phases: destination,
//! loop check, then [`proxy::plan`] — a pure decision, shared with
//! `gatehouse explain` — asking for `auth` against the `directory`, for one
//! resolution (`resolve`), and finally refusing, forwarding (`forward`) or
//! tunnelling (`tunnel::session`: detection, relay)) → `accesslog`, once per
//! transaction, in the words of `outcome`.
//!
//! Start-up: `config` layers the settings each module owns;
//! [`server::runtime::Runtime::build`] compiles them once for `run`, `check`,
//! `explain` and reload.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod accesslog;
mod admin;
mod answer;
pub mod auth;
mod body;
pub mod config;
mod conn;
pub mod directory;
mod error;
pub mod forward;
pub mod http2;
pub mod intercept;
mod limit;
pub mod listener;
mod metrics;
mod outcome;
pub mod policy;
pub mod protocol;
pub mod proxy;
pub mod replay;
pub mod resolve;
pub mod server;
pub mod settings;
pub mod snapshot;
mod stream;
pub mod tunnel;
pub mod upgrade;
