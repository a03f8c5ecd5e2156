//! Phase 6, HTTP: forward the request to the planned address and log the
//! transaction when its response body is done.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use super::{Failed, Proxy};
use crate::accesslog::AccessRecord;
use crate::body::{Finish, ResponseBody};
use crate::conn::InFlight;
use crate::forward::{self, headers};
use crate::outcome::SAction;

#[allow(clippy::too_many_arguments)]
pub(super) async fn forward(
    proxy: &Proxy,
    up: forward::Upstream<'_>,
    req: Request<Incoming>,
    target: forward::Target,
    addr: SocketAddr,
    mut r: AccessRecord,
    in_flight: InFlight,
) -> Result<Response<ResponseBody>, Failed> {
    let method = req.method().clone();
    r.remote_ip = Some(addr.ip());
    let cs_bytes = Arc::new(AtomicU64::new(0));
    let config = proxy.config.load_full();
    let cfg = &config.forward;
    let (resp, pinned) = match forward::forward(up, cfg, req, &target, addr, cs_bytes.clone()).await
    {
        Ok(resp) => resp,
        Err(e) => return Err((e, r, in_flight)),
    };
    r.status = resp.status().as_u16();
    // Squid: what a pinned (per-user) connection brings is never cacheable.
    r.action = if !pinned && headers::cacheable(&method, resp.headers()) {
        SAction::TcpMiss
    } else {
        SAction::TcpNcMiss
    };
    let finish = Finish {
        record: r,
        log: proxy.log.clone(),
        cs_bytes: Some(cs_bytes),
    };
    Ok(resp.map(|b| b.logged(finish).in_flight(in_flight)))
}
