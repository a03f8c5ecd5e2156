//! An admitted upgrade (a WebSocket) inside a tunnel — decrypted, or plain
//! HTTP found in a CONNECT: forwarded on the tunnel's origin connection;
//! anything but `101` is an ordinary response, a `101` hands both
//! connections to a relay under the tunnel's idle timeout and hard stop,
//! and the request's one line is written when the relay ends, with the
//! bytes both ways.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::inner::{answer, exchange, respond, Ctx};
use crate::accesslog::AccessRecord;
use crate::body::ResponseBody;
use crate::forward::{headers, upgrade};
use crate::outcome::{ExceptionId, SAction};
use crate::tunnel::relay::End;

/// The `x-rule` of an upgrade the proxy itself refuses.
pub(super) const UPGRADE_RULE: &str = "builtin:upgrade";

/// Forwards the upgrade request `req` (already judged and admitted) and
/// answers with the origin's response.
pub(super) async fn forward(
    ctx: &Arc<Ctx>,
    mut req: Request<Incoming>,
    mut r: AccessRecord,
) -> Response<ResponseBody> {
    let client = hyper::upgrade::on(&mut req);
    let method = req.method().clone();
    let (mut resp, cs_bytes) = match exchange(ctx, req, &mut r).await {
        Ok(x) => x,
        Err(e) => {
            let rule = r.rule.take();
            return answer(ctx, r, e, rule);
        }
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return respond(ctx, &method, resp, cs_bytes, &mut r);
    }
    let server = hyper::upgrade::on(&mut resp);
    let (mut parts, _) = resp.into_parts();
    let kept = upgrade::Kept::from(&parts.headers);
    headers::strip_hop_by_hop(&mut parts.headers);
    kept.restore(&mut parts.headers);
    headers::add_via(&mut parts.headers, parts.version, &ctx.via);
    parts.version = http::Version::HTTP_11;
    r.status = StatusCode::SWITCHING_PROTOCOLS.as_u16();
    r.action = SAction::TcpNcMiss;
    let (log, idle, stop) = (ctx.log.clone(), ctx.idle_timeout, ctx.hard_stop.clone());
    ctx.relays.spawn(async move {
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
        match out {
            Some(out) => {
                r.cs_bytes = sent + out.client_to_server;
                r.sc_bytes = out.server_to_client;
                if out.end == End::Idle {
                    r.exception_id = Some(ExceptionId::TunnelIdleTimeout);
                }
            }
            None => {
                r.cs_bytes = sent;
                r.action = SAction::TcpErrMiss;
                r.exception_id = Some(ExceptionId::TcpError);
            }
        }
        log.write(r);
    });
    Response::from_parts(parts, ResponseBody::full(bytes::Bytes::new()))
}
