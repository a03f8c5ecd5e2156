//! Phase 6 for an admitted upgrade (a WebSocket) on plain HTTP: the
//! origin's answer to the forwarded request decides. Anything but `101` is
//! an ordinary response ([`Transaction::respond`]); a `101` goes back to
//! the client and the transaction becomes a tunnel
//! ([`Transaction::into_tunnel`]): both upgraded connections are relayed
//! under the tunnel's idle timeout and the shutdown's hard stop, and the
//! one log line is written when the relay ends, with the bytes both ways.

use std::sync::Arc;

use http::{Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::forward::Forwarded;
use super::transaction::{Transaction, TunnelTx};
use super::Proxy;
use crate::body::ResponseBody;
use crate::forward::upgrade::{self, HANDOVER};
use crate::listener::guard::GuardedStream;
use crate::outcome::SAction;

/// The `x-rule` of an upgrade the proxy itself refuses (`h2c`, or a
/// protocol no rule's `upgrade` condition allows).
pub(super) const UPGRADE_RULE: &str = "builtin:upgrade";

/// Answers with the origin's response to an upgrade request; after a
/// `101` the relay runs on in the proxy's tunnel tracker (shutdown waits
/// for it, then its hard stop ends it).
pub(super) fn carry(
    proxy: &Arc<Proxy>,
    client: OnUpgrade,
    mut f: Forwarded,
    tx: Transaction,
) -> Response<ResponseBody> {
    if f.resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return tx.respond(proxy, f);
    }
    let server = hyper::upgrade::on(&mut f.resp);
    let TunnelTx {
        snapshot,
        mut record,
        in_flight,
    } = tx.into_tunnel();
    record.status = StatusCode::SWITCHING_PROTOCOLS.as_u16();
    record.action = SAction::TcpNcMiss;
    let idle = snapshot.config.tunnel.idle_timeout;
    let stop = proxy.hard_stop.child_token();
    let log = proxy.log.clone();
    let head_bytes = f.cs_bytes;
    proxy.tunnels.spawn(async move {
        let _in_flight = in_flight;
        // Both sides let go of their sockets once the `101` is through; a
        // client that never reads it holds nothing past this deadline.
        let both = tokio::time::timeout(HANDOVER, async { tokio::try_join!(client, server) });
        let out = match both.await {
            Ok(Ok((client, server))) => {
                let server = TokioIo::new(server);
                // The raw client socket, past the framing guard: the bytes
                // now are the upgraded protocol's, not HTTP requests.
                match client.downcast::<TokioIo<GuardedStream>>() {
                    Ok(parts) => {
                        let (client, held) = parts.io.into_inner().into_parts();
                        let mut pending = parts.read_buf.to_vec();
                        pending.extend_from_slice(&held);
                        Some(upgrade::relay(client, pending, server, idle, stop).await)
                    }
                    Err(client) => {
                        let client = TokioIo::new(client);
                        Some(upgrade::relay(client, Vec::new(), server, idle, stop).await)
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "upgrade hand-over failed");
                None
            }
            Err(_) => {
                tracing::debug!("upgrade hand-over timed out");
                None
            }
        };
        let sent = head_bytes.load(std::sync::atomic::Ordering::Relaxed);
        upgrade::ended(&mut record, sent, out);
        log.write(record);
    });
    let mut resp = f.resp;
    *resp.body_mut() = ResponseBody::full(bytes::Bytes::new());
    resp
}
