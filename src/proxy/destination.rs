//! Phases 1 and 5: where the request goes (the canonical host and port, and
//! for HTTP the forward target), and its addresses, resolved once.

use std::net::IpAddr;

use http::{Method, Request};
use hyper::body::Incoming;

use crate::accesslog::AccessRecord;
use crate::error::ProxyError;
use crate::forward;
use crate::resolve::Host;
use crate::tunnel;

/// Where a request goes: its canonical host and port, and for HTTP the
/// forward target.
pub(super) struct Destination {
    pub host: Host,
    pub port: u16,
    pub target: Option<forward::Target>,
}

/// Reads the destination from the request target (authority-form for
/// CONNECT, absolute-form otherwise); malformed targets are a 400.
pub(super) fn destination(req: &Request<Incoming>) -> Result<Destination, ProxyError> {
    if req.method() == Method::CONNECT {
        let (host, port) = tunnel::connect_target(req.uri())?;
        return Ok(Destination {
            host,
            port,
            target: None,
        });
    }
    // aiohttp and others write a WebSocket's target `ws://…`: judged and
    // forwarded as the `http://…` it stands for (RFC 6455 §3).
    let t = match forward::upgrade::ws_as_http(req.uri(), req.headers()) {
        Some(uri) => forward::target(&uri)?,
        None => forward::target(req.uri())?,
    };
    Ok(Destination {
        host: t.host.clone(),
        port: t.port,
        target: Some(t),
    })
}

/// Resolves the destination, within the connect timeout: the addresses the
/// policy judges and the only ones dialled.
pub(super) async fn resolve(
    snapshot: &crate::snapshot::Snapshot,
    dest: &Destination,
) -> Result<Vec<IpAddr>, ProxyError> {
    let name = || dest.host.authority(dest.port);
    let wait = if dest.target.is_some() {
        snapshot.config.forward.connect_timeout
    } else {
        snapshot.config.tunnel.connect_timeout
    };
    let resolver = &snapshot.resolver;
    match tokio::time::timeout(wait, resolver.resolve(&dest.host)).await {
        Ok(Ok(a)) => Ok(a),
        Ok(Err(e)) => {
            tracing::info!(host = %dest.host, error = %e, "cannot resolve the destination");
            Err(ProxyError::DnsFailure(name()))
        }
        Err(_) => {
            tracing::info!(host = %dest.host, ?wait, "resolving the destination timed out");
            Err(ProxyError::UpstreamTimeout(name()))
        }
    }
}

/// Request fields for the log, filled before anything can fail.
pub(super) fn describe(r: &mut AccessRecord, req: &Request<Incoming>) {
    r.request(req);
    let uri = req.uri();
    r.scheme = uri.scheme_str().map(|s| {
        if s.eq_ignore_ascii_case("http")
            || forward::upgrade::ws_as_http(uri, req.headers()).is_some()
        {
            "http"
        } else {
            "other"
        }
    });
    if let Some(a) = uri.authority() {
        r.host = a.host().to_owned(); // never the userinfo
        r.port = a.port_u16().unwrap_or(if req.method() == Method::CONNECT {
            0
        } else {
            80
        });
    }
    if req.method() == Method::CONNECT {
        r.scheme = Some("tcp");
    }
}
