//! Phase 6, CONNECT: dial the planned addresses, answer `200`, and hand the
//! socket to a [`session`] that runs detection (if planned) and the relay.
//! The session's one [`TunnelEnd`] is logged here, once.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::judged::{Judged, Under};
use super::transaction::TunnelTx;
use super::tunnels::Open;
use super::Proxy;
use crate::accesslog::{AccessRecord, FilterResult};
use crate::body::ResponseBody;
use crate::config::Config;
use crate::conn::ConnState;
use crate::error::ProxyError;
use crate::listener::guard::GuardedStream;
use crate::outcome::ExceptionId;
use crate::snapshot::Snapshot;
use crate::stream::ClientStream;
use crate::tunnel::detect::Protocol;
use crate::tunnel::handshake::Check;
use crate::tunnel::inspect::Inspector;
use crate::tunnel::session::{self, Detection, Ended, HandedOver, RelaySettings, TunnelEnd};
use crate::tunnel::settings::{DetectionConfig, OnSilence};
use crate::tunnel::{self, relay};

/// How the tunnel is relayed after its `200`.
pub(super) enum Mode {
    /// Raw.
    Raw,
    /// With protocol detection, judged again on what it finds.
    Detect,
    /// Decrypted, each request inside judged.
    Intercept,
}

/// A CONNECT as its plan decided it: the addresses to dial, the mode, and
/// the facts it was judged on (judged again on each reload, and for each
/// request inside). The tunnel keeps its transaction's snapshot to its
/// end, whatever a reload swaps in meanwhile.
pub(super) struct Tunnel {
    /// The resolved addresses the policy judged.
    pub dial: Vec<SocketAddr>,
    /// Raw, detected or intercepted.
    pub mode: Mode,
    /// The CONNECT's facts.
    pub judged: Judged,
}

/// Dials the planned addresses within `tunnel.connect_timeout`.
pub(super) async fn dial(t: &Tunnel, config: &Config) -> Result<TcpStream, ProxyError> {
    let name = format!("{}:{}", t.judged.host, t.judged.port);
    tunnel::dial(&t.dial, &name, config.tunnel.connect_timeout).await
}

/// Answers `200` and spawns the session in its mode; the tunnel logs its
/// transaction when it ends.
pub(super) fn open(
    proxy: &Arc<Proxy>,
    conn: &ConnState,
    mut req: Request<Incoming>,
    tunnel: Tunnel,
    server: TcpStream,
    tx: TunnelTx,
) -> Response<ResponseBody> {
    let Tunnel { mode, judged, .. } = tunnel;
    let TunnelTx {
        snapshot,
        mut record,
        in_flight,
    } = tx;
    record.remote_ip = server.peer_addr().ok().map(|a| a.ip());
    let on_upgrade = hyper::upgrade::on(&mut req);
    // A CONNECT stream of an HTTP/2 connection holds its own places under
    // the connection limits (listener/h2.rs) for as long as its tunnel.
    let place = req
        .extensions_mut()
        .remove::<crate::listener::h2::TunnelPlace>();
    record.status = 200;
    let proxy2 = proxy.clone();
    proxy.tunnels.spawn(async move {
        let _in_flight = in_flight;
        let _place = place;
        // The rule that judged what detection found, when one did.
        let judged_by = OnceLock::new();
        let proxy = proxy2;
        // In the registry while it is open: judged again on each reload,
        // closed by `gatehouse revoke`.
        let registered = proxy
            .open
            .register(Arc::new(judged), proxy.hard_stop.child_token());
        let open = &registered.open;
        proxy.judged_since_reload(open).await;
        // Take the raw socket back from hyper (with any bytes already read),
        // so detection and the relay work on the socket itself.
        let upgraded = on_upgrade
            .await
            .map(|u| u.downcast::<TokioIo<GuardedStream>>());
        let client = match upgraded {
            Ok(Ok(parts)) => {
                let (client, held) = parts.io.into_inner().into_parts();
                // Copy out the few bytes pending and free both buffers now:
                // they are 8-32 KiB each, and an idle tunnel must not keep them.
                let mut pending = parts.read_buf.to_vec();
                pending.extend_from_slice(&held);
                drop((held, parts.read_buf));
                Some((client, pending))
            }
            // A CONNECT on an HTTP/2 stream: the stream is the client's side.
            Ok(Err(stream)) => Some((ClientStream::H2(Box::new(TokioIo::new(stream))), Vec::new())),
            Err(_) => None,
        };
        let end = match client {
            Some((client, pending)) => {
                let how = Settled { mode, snapshot };
                let ends = Ends {
                    open,
                    judged_by: &judged_by,
                };
                run(&proxy, client, pending, server, how, ends, &mut record).await
            }
            None => {
                tracing::warn!("CONNECT upgrade failed");
                TunnelEnd::broken(None, 0)
            }
        };
        if let Some(rule) = judged_by.into_inner() {
            record.rule = Some(rule.to_string());
        }
        let mut end = end;
        if let Some(rule) = open.revoked_by() {
            record.rule = Some(rule.to_string());
            end.exception = Some(ExceptionId::TunnelRevoked);
            end.refused = true;
        }
        drop(registered);
        log_end(&proxy, record, end);
    });
    conn.answer_connect(true);
    // No more HTTP on this connection: a pinned upstream has no further use.
    conn.pinned.clear();
    let mut resp = Response::new(ResponseBody::full(bytes::Bytes::new()));
    *resp.status_mut() = StatusCode::OK;
    resp
}

/// A tunnel's mode and the snapshot it keeps.
struct Settled {
    mode: Mode,
    snapshot: Arc<Snapshot>,
}

/// Where a tunnel's session says how it is going: its registry entry (what
/// detection found; the token that stops it) and the rule that judged what
/// detection found.
struct Ends<'a> {
    open: &'a Open,
    judged_by: &'a OnceLock<Arc<str>>,
}

async fn run(
    proxy: &Arc<Proxy>,
    client: ClientStream,
    pending: Vec<u8>,
    server: TcpStream,
    how: Settled,
    ends: Ends<'_>,
    record: &mut AccessRecord,
) -> TunnelEnd {
    let Settled { mode, snapshot } = how;
    let config = &snapshot.config;
    let Ends { open, judged_by } = ends;
    // Closed before it began (a reload between its decision and now):
    // not a byte sent on. The caller logs it `tunnel_revoked`.
    if open.stop.is_cancelled() {
        return TunnelEnd::broken(None, 0);
    }
    let cfg = &config.tunnel;
    let relay = RelaySettings {
        idle_timeout: cfg.idle_timeout,
        transfer: if cfg.splice {
            relay::Transfer::splice_if_available()
        } else {
            relay::Transfer::Buffered
        },
        hard_stop: open.stop.clone(),
    };
    let judged = open.judged.clone();
    let intercepting = match mode {
        Mode::Raw => {
            let raw = None::<Detection<'_, Judge>>;
            return match session::run(client, pending, server, raw, &relay).await {
                Ended::Done(end) => end,
                // Only detection hands over.
                Ended::Intercept(_) | Ended::Http(_) => TunnelEnd::broken(None, 0),
            };
        }
        Mode::Detect => false,
        Mode::Intercept => true,
    };
    // A tunnel the CONNECT's rules intercept is not let through silent:
    // whatever `on_silence` says for detected tunnels.
    let silence_denied;
    let detection_cfg = if intercepting {
        silence_denied = DetectionConfig {
            on_silence: OnSilence::Deny,
            ..config.detection.clone()
        };
        &silence_denied
    } else {
        &config.detection
    };
    // Judged by the policy in force when detection decides, and recorded
    // for the reloads after.
    let judge = |p: &Protocol| {
        let now = proxy.snapshot();
        let categories = judged.categories_under(&now);
        let under = Under {
            policy: &now.policy,
            identity: judged.identity.as_deref(),
            categories: &categories,
        };
        let (says, rule) = judged.detected(&under, p);
        open.found(p);
        if let Some(rule) = rule {
            let _ = judged_by.set(rule);
        }
        says
    };
    // The checker of the tunnel's snapshot, even if a reload swaps it meanwhile.
    let detection = Detection {
        inspector: Inspector { cfg: detection_cfg },
        tls: Check {
            cfg: &config.detection,
            checker: &snapshot.checker,
            host: &judged.host,
        },
        judge,
    };
    match session::run(client, pending, server, Some(detection), &relay).await {
        Ended::Done(end) => end,
        // Boxed: the session inside (TLS, HTTP/1.1 both ways) is a large
        // future, and every raw or detected tunnel would carry its size.
        Ended::Intercept(t) => {
            record.intercepted = true;
            let how = (judged, &*snapshot, open);
            Box::pin(inside(proxy, t, how, record, Inside::Decrypted)).await
        }
        Ended::Http(t) => {
            let how = (judged, &*snapshot, open);
            Box::pin(inside(proxy, t, how, record, Inside::Plain)).await
        }
    }
}

/// What the requests inside a handed-over tunnel are.
#[derive(PartialEq)]
enum Inside {
    /// TLS the policy intercepts.
    Decrypted,
    /// Plain HTTP detection found.
    Plain,
}

/// A tunnel handed over by detection with nothing sent on, whose requests
/// are each judged, forwarded and logged: decrypted, or plain HTTP. The
/// CONNECT's record is each inner line's template.
async fn inside(
    proxy: &Arc<Proxy>,
    t: HandedOver,
    (judged, snapshot, open): (Arc<Judged>, &Snapshot, &Open),
    record: &AccessRecord,
    what: Inside,
) -> TunnelEnd {
    let cfg = &snapshot.config;
    let host = judged.host.clone();
    let session = crate::intercept::session::Session {
        host: &host,
        port: judged.port,
        judge: super::judged::judge(proxy.clone(), judged.clone()),
        template: record.clone(),
        log: proxy.log.clone(),
        via: cfg.forward.via_pseudonym.clone(),
        response_timeout: cfg.forward.response_timeout,
        hello_timeout: cfg.detection.timeout,
        handshake_timeout: cfg.detection.check_timeout,
        max_hello: cfg.detection.max_bytes,
        header_timeout: cfg.listener.header_read_timeout,
        max_header_bytes: cfg.listener.max_header_bytes,
        hard_stop: open.stop.clone(),
        idle_timeout: cfg.tunnel.idle_timeout,
    };
    let HandedOver {
        client,
        held,
        server,
    } = t;
    if what == Inside::Plain {
        return crate::intercept::session::run_http(session, client, held, server).await;
    }
    // The CA in force when detection handed over, as the policy that chose
    // interception is (a reload that adds or rotates the CA applies).
    let now = proxy.snapshot();
    let Some(interceptor) = &now.interceptor else {
        // Start-up refuses an intercepting policy without a CA; fail closed anyway.
        return crate::intercept::session::unavailable();
    };
    crate::intercept::session::run(session, interceptor, client, held, server).await
}

/// The judge type of an undetected session (never called).
type Judge = fn(&Protocol) -> crate::tunnel::inspect::PolicySays;

/// The tunnel's one log line.
fn log_end(proxy: &Proxy, mut record: AccessRecord, end: TunnelEnd) {
    if let Some(p) = &end.protocol {
        record.protocol = Some(p.name());
        if let Protocol::Tls(h) = p {
            record.sni.clone_from(&h.sni);
            record.ja3n = Some(h.ja3n.clone());
            record.ja4 = Some(h.ja4.clone());
        }
    }
    record.action = end.action;
    record.exception_id = end.exception;
    if end.refused {
        record.filter_result = FilterResult::Denied;
    }
    record.cs_bytes = end.cs_bytes;
    record.sc_bytes = end.sc_bytes;
    proxy.log.write(record);
}
