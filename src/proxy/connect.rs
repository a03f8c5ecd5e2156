//! Phase 6, CONNECT: dial the planned addresses, answer `200`, and hand the
//! socket to a [`session`] that runs detection (if planned) and the relay.
//! The session's one [`TunnelEnd`] is logged here, once.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::plan::{detected, detected_tls, judge_detected};
use super::{Failed, Proxy};
use crate::accesslog::{AccessRecord, FilterResult};
use crate::body::ResponseBody;
use crate::config::Config;
use crate::conn::{ConnState, InFlight};
use crate::directory::Identity;
use crate::intercept::session::Inner;
use crate::listener::guard::GuardedStream;
use crate::outcome::DetectionReason;
use crate::policy::{Detected, Facts, Policy, Verdict};
use crate::stream::ClientStream;
use crate::tunnel::detect::{ClientHello, Protocol};
use crate::tunnel::handshake::Check;
use crate::tunnel::inspect::{Inspector, PolicySays};
use crate::tunnel::session::{self, Detection, Ended, HandedOver, RelaySettings, TunnelEnd};
use crate::tunnel::settings::{DetectionConfig, OnSilence};
use crate::tunnel::{self, relay};

/// What a detected tunnel needs from its request to ask the policy again
/// once the protocol is known.
pub(super) struct Judged {
    pub policy: Arc<Policy>,
    pub identity: Option<Arc<Identity>>,
    pub headers: http::HeaderMap,
    pub categories: Vec<Arc<str>>,
    pub addrs: Vec<IpAddr>,
    pub host: String,
    pub port: u16,
    pub client: IpAddr,
}

impl Judged {
    fn facts<'a>(&'a self, detected: Option<Detected<'a>>) -> Facts<'a> {
        Facts {
            identity: self.identity.as_deref(),
            client: self.client,
            method: "CONNECT",
            host: &self.host,
            addrs: &self.addrs,
            port: self.port,
            headers: &self.headers,
            categories: &self.categories,
            now: jiff::Timestamp::now(),
            detected,
            url: None,
        }
    }

    /// The policy's say on what detection found, and the rule that said it.
    ///
    /// A ClientHello's SNI names the server the client will talk to, and
    /// the certificate check proves that name, not the CONNECT's. So an
    /// address CONNECT is judged by its SNI (host rules, categories), as
    /// interception judges it; a named CONNECT whose SNI names another host
    /// is refused (`ssl_sni_mismatch`) unless a rule that looks at what
    /// detection found allows it — else a `bypass` or `tunnel` rule for
    /// one name would carry a tunnel to any other.
    fn detected(&self, p: &Protocol) -> (PolicySays, Option<Arc<str>>) {
        let sni = match p {
            Protocol::Tls(h) => h
                .sni
                .as_deref()
                .filter(|s| !s.eq_ignore_ascii_case(&self.host)),
            _ => None,
        };
        let (Some(sni), Protocol::Tls(hello)) = (sni, p) else {
            return judge_detected(&self.policy, &self.facts(Some(detected(p))));
        };
        if self.host.parse::<IpAddr>().is_ok() {
            let categories = self.policy.categories.lookup(sni, &self.addrs);
            let facts = Facts {
                host: sni,
                categories: &categories,
                ..self.facts(Some(detected_tls(hello)))
            };
            return judge_detected(&self.policy, &facts);
        }
        match judge_detected(&self.policy, &self.facts(Some(detected_tls(hello)))) {
            // Interception refuses the other name itself, as domain fronting.
            said @ (PolicySays::Allow | PolicySays::Deny(_) | PolicySays::Intercept, _) => said,
            (PolicySays::Nothing, _) => (
                PolicySays::Deny(DetectionReason::SniMismatch.as_str().into()),
                Some("builtin:sni-match".into()),
            ),
        }
    }

    /// The policy on one request inside the tunnel (decrypted, or plain
    /// HTTP): the tunnel's identity and addresses, its server `name` (the
    /// SNI; its categories) and ClientHello, the request's own method,
    /// headers and full URL.
    fn inner(
        &self,
        method: &http::Method,
        url: &str,
        headers: &http::HeaderMap,
        name: &str,
        hello: Option<&ClientHello>,
    ) -> Inner {
        let categories = if name.eq_ignore_ascii_case(&self.host) {
            self.categories.clone()
        } else {
            self.policy.categories.lookup(name, &self.addrs)
        };
        let detected = hello.map_or(Detected::protocol("http"), detected_tls);
        let facts = Facts {
            method: method.as_str(),
            url: Some(url),
            host: name,
            headers,
            categories: &categories,
            ..self.facts(Some(detected))
        };
        let d = self.policy.decide(&facts);
        let rule = d.rule_names();
        match d.verdict {
            Verdict::Deny { status, reason } => Inner::Deny {
                status,
                reason,
                rule,
            },
            Verdict::Allow => Inner::Allow { rule },
        }
    }
}

/// How the tunnel is relayed after its `200`.
pub(super) enum Mode {
    /// Raw.
    Raw,
    /// With protocol detection, judged again on what it finds.
    Detect(Judged),
    /// Decrypted, each request inside judged.
    Intercept(Judged),
}

/// A CONNECT as its plan decided it: the addresses to dial, the mode, and
/// the settings the request was decided under — which the tunnel keeps to
/// its end, whatever a reload swaps in meanwhile.
pub(super) struct Tunnel {
    /// The resolved addresses the policy judged.
    pub dial: Vec<SocketAddr>,
    /// Raw, detected or intercepted.
    pub mode: Mode,
    /// The request's configuration.
    pub config: Arc<Config>,
}

/// Dials, answers `200`, and spawns the session in its mode.
pub(super) async fn connect(
    proxy: &Arc<Proxy>,
    conn: &ConnState,
    mut req: Request<Incoming>,
    tunnel: Tunnel,
    mut record: AccessRecord,
    in_flight: InFlight,
) -> Result<Response<ResponseBody>, Failed> {
    let Tunnel { dial, mode, config } = tunnel;
    let cfg = &config.tunnel;
    let name = format!("{}:{}", record.host, record.port);
    let server = match tunnel::dial(&dial, &name, cfg.connect_timeout).await {
        Ok(s) => s,
        Err(e) => return Err((e, record, in_flight)),
    };
    record.remote_ip = server.peer_addr().ok().map(|a| a.ip());
    let on_upgrade = hyper::upgrade::on(&mut req);
    record.status = 200;
    let proxy2 = proxy.clone();
    proxy.tunnels.spawn(async move {
        let _in_flight = in_flight;
        // The rule that judged what detection found, when one did.
        let judged_by = OnceLock::new();
        let proxy = proxy2;
        // Take the raw socket back from hyper (with any bytes already read),
        // so detection and the relay work on the socket itself.
        let end = match on_upgrade
            .await
            .map(|u| u.downcast::<TokioIo<GuardedStream>>())
        {
            Ok(Ok(parts)) => {
                let (client, held) = parts.io.into_inner().into_parts();
                // Copy out the few bytes pending and free both buffers now:
                // they are 8-32 KiB each, and an idle tunnel must not keep them.
                let mut pending = parts.read_buf.to_vec();
                pending.extend_from_slice(&held);
                drop((held, parts.read_buf));
                let how = Settled { mode, config };
                run(
                    &proxy,
                    client,
                    pending,
                    server,
                    how,
                    &judged_by,
                    &mut record,
                )
                .await
            }
            Ok(Err(_)) | Err(_) => {
                tracing::warn!("CONNECT upgrade failed or was not our socket");
                TunnelEnd::broken(None, 0)
            }
        };
        if let Some(rule) = judged_by.into_inner() {
            record.rule = Some(rule.to_string());
        }
        log_end(&proxy, record, end);
    });
    conn.answer_connect(true);
    // No more HTTP on this connection: a pinned upstream has no further use.
    conn.pinned.clear();
    let mut resp = Response::new(ResponseBody::full(bytes::Bytes::new()));
    *resp.status_mut() = StatusCode::OK;
    Ok(resp)
}

/// A tunnel's mode and the settings it keeps.
struct Settled {
    mode: Mode,
    config: Arc<Config>,
}

async fn run(
    proxy: &Proxy,
    client: ClientStream,
    pending: Vec<u8>,
    server: tokio::net::TcpStream,
    how: Settled,
    judged_by: &OnceLock<Arc<str>>,
    record: &mut AccessRecord,
) -> TunnelEnd {
    let Settled { mode, config } = how;
    let cfg = &config.tunnel;
    let relay = RelaySettings {
        idle_timeout: cfg.idle_timeout,
        transfer: if cfg.splice {
            relay::Transfer::splice_if_available()
        } else {
            relay::Transfer::Buffered
        },
        hard_stop: proxy.hard_stop.clone(),
    };
    let (judged, intercepting) = match mode {
        Mode::Raw => {
            let raw = None::<Detection<'_, Judge>>;
            return match session::run(client, pending, server, raw, &relay).await {
                Ended::Done(end) => end,
                // Only detection hands over.
                Ended::Intercept(_) | Ended::Http(_) => TunnelEnd::broken(None, 0),
            };
        }
        Mode::Detect(j) => (j, false),
        Mode::Intercept(j) => (j, true),
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
    let judge = |p: &Protocol| {
        let (says, rule) = judged.detected(p);
        if let Some(rule) = rule {
            let _ = judged_by.set(rule);
        }
        says
    };
    // The checker this tunnel uses, even if a reload swaps it meanwhile.
    let checker = proxy.checker.load_full();
    let detection = Detection {
        inspector: Inspector { cfg: detection_cfg },
        tls: Check {
            cfg: &config.detection,
            checker: &checker,
            host: &judged.host,
        },
        judge,
    };
    match session::run(client, pending, server, Some(detection), &relay).await {
        Ended::Done(end) => end,
        Ended::Intercept(t) => {
            record.intercepted = true;
            inside(proxy, t, (judged, &config), record, Inside::Decrypted).await
        }
        Ended::Http(t) => inside(proxy, t, (judged, &config), record, Inside::Plain).await,
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
    proxy: &Proxy,
    t: HandedOver,
    (judged, cfg): (Judged, &Config),
    record: &AccessRecord,
    what: Inside,
) -> TunnelEnd {
    let judged = Arc::new(judged);
    let host = judged.host.clone();
    let session = crate::intercept::session::Session {
        host: &host,
        port: judged.port,
        judge: {
            let judged = judged.clone();
            Box::new(move |m, url, headers, name, hello| judged.inner(m, url, headers, name, hello))
        },
        template: record.clone(),
        log: proxy.log.clone(),
        via: cfg.forward.via_pseudonym.clone(),
        response_timeout: cfg.forward.response_timeout,
        hello_timeout: cfg.detection.timeout,
        handshake_timeout: cfg.detection.check_timeout,
        max_hello: cfg.detection.max_bytes,
        header_timeout: cfg.listener.header_read_timeout,
        max_header_bytes: cfg.listener.max_header_bytes,
        hard_stop: proxy.hard_stop.clone(),
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
    let Some(interceptor) = proxy.interceptor.load_full() else {
        // Start-up refuses an intercepting policy without a CA; fail closed anyway.
        return crate::intercept::session::unavailable();
    };
    crate::intercept::session::run(session, &interceptor, client, held, server).await
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
