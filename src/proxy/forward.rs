//! Phase 6, HTTP: forward the request to the planned address. The
//! response goes back to the transaction, which logs it when its body is
//! done.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::body::ResponseBody;
use crate::config::Config;
use crate::error::ProxyError;
use crate::forward::{self, headers};
use crate::outcome::SAction;

/// The origin's answer, on its way back.
pub(super) struct Forwarded {
    pub resp: Response<ResponseBody>,
    /// Request body bytes, counted while they stream up.
    pub cs_bytes: Arc<AtomicU64>,
    /// `TCP_MISS` or, never cacheable, `TCP_NC_MISS`.
    pub action: SAction,
}

pub(super) async fn forward(
    config: &Config,
    up: forward::Upstream<'_>,
    req: Request<Incoming>,
    target: forward::Target,
    addr: SocketAddr,
) -> Result<Forwarded, ProxyError> {
    let method = req.method().clone();
    let cs_bytes = Arc::new(AtomicU64::new(0));
    let cfg = &config.forward;
    let (resp, pinned) = forward::forward(up, cfg, req, &target, addr, cs_bytes.clone()).await?;
    // Squid: what a pinned (per-user) connection brings is never cacheable.
    let action = if !pinned && headers::cacheable(&method, resp.headers()) {
        SAction::TcpMiss
    } else {
        SAction::TcpNcMiss
    };
    Ok(Forwarded {
        resp,
        cs_bytes,
        action,
    })
}
