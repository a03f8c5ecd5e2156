//! An admitted upgrade (a WebSocket) inside a tunnel — decrypted, or plain
//! HTTP found in a CONNECT — after the origin's `101`: the `101` goes back
//! to the client, both connections go to a relay under the tunnel's idle
//! timeout and hard stop, and the request's one line is written when the
//! relay ends, with the bytes both ways.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accesslog::{AccessLog, AccessRecord};
use crate::body::ResponseBody;
use crate::forward::{headers, upgrade};
use crate::outcome::SAction;

/// The `x-rule` of an upgrade the proxy itself refuses.
pub(super) const UPGRADE_RULE: &str = "builtin:upgrade";

/// What the relay of one tunnel's upgraded request runs under.
pub(super) struct Relaying<'a> {
    pub log: AccessLog,
    /// `forward.via_pseudonym`.
    pub via: &'a str,
    /// `tunnel.idle_timeout`.
    pub idle: Duration,
    /// The tunnel's hard stop.
    pub stop: CancellationToken,
    /// The tunnel's relays: its session waits for them.
    pub relays: &'a TaskTracker,
}

/// The origin's `101` (`resp`) to the upgrade request whose client side is
/// `client`: answered, and the relay started.
pub(super) fn switch(
    mut resp: Response<Incoming>,
    client: OnUpgrade,
    cs_bytes: Arc<AtomicU64>,
    mut r: AccessRecord,
    how: Relaying<'_>,
) -> Response<ResponseBody> {
    let server = hyper::upgrade::on(&mut resp);
    let (mut parts, _) = resp.into_parts();
    let kept = upgrade::Kept::from(&parts.headers);
    headers::strip_hop_by_hop(&mut parts.headers);
    kept.restore(&mut parts.headers);
    headers::add_via(&mut parts.headers, parts.version, how.via);
    parts.version = http::Version::HTTP_11;
    r.status = StatusCode::SWITCHING_PROTOCOLS.as_u16();
    r.action = SAction::TcpNcMiss;
    let Relaying {
        log, idle, stop, ..
    } = how;
    how.relays.spawn(async move {
        let both = tokio::time::timeout(upgrade::HANDOVER, async {
            tokio::try_join!(client, server)
        });
        let out = match both.await {
            Ok(Ok((client, server))) => {
                let (client, server) = (TokioIo::new(client), TokioIo::new(server));
                Some(upgrade::relay(client, Vec::new(), server, idle, stop).await)
            }
            _ => None,
        };
        let sent = cs_bytes.load(Ordering::Relaxed);
        upgrade::ended(&mut r, sent, out);
        log.write(r);
    });
    Response::from_parts(parts, ResponseBody::full(bytes::Bytes::new()))
}
