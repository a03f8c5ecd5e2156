//! The real-clients matrix: each client as its users set it up — proxy
//! credentials where they enter them, the CA where they put it — through
//! one proxy, in three modes (plain HTTP, a CONNECT judged by protocol
//! detection, an intercepted CONNECT), and with a wrong password, which
//! must fail within [`lab::FAIL_FAST`] (the time and the proxy's count of
//! 407s are printed: `cargo test --test clients -- --nocapture`).
//!
//! A case is `<client>::<mode>`, e.g. `wget::intercept`, and its failure
//! names the client and mode. `surrogate::` runs Java's default HttpClient
//! through an IP surrogate, with proxies of its own. docs/clients.md
//! describes each client's settings and traps.

#[path = "../common/mod.rs"]
mod common;

mod docroot;
mod files;
mod lab;
mod process;

mod apt;
mod curl;
mod git;
mod go;
mod java;
mod node;
mod pip;
mod python;
mod surrogate;
mod wget;
