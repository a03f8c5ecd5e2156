//! One request's path through the proxy. The phases, in order:
//!
//! 1. **destination** — the canonical host and port from the request target
//!    (`destination.rs`); malformed → 400.
//! 2. **loop check** — our own `Via` pseudonym in the request → 508.
//! 3. **plan** — [`plan::plan`], pure: the built-in CONNECT port check,
//!    `destinations.refuse` and this-proxy checks on resolved addresses,
//!    whether to authenticate, the access layers. It answers with the next
//!    step, and the proxy loops, carrying it out, until the plan is final:
//! 4. **authenticate** (`authenticate.rs`) when the plan asks — 407/503 on
//!    failure, the identity bound to the connection on success;
//! 5. **resolve** (`destination.rs`) when the plan asks, once: the
//!    addresses the policy judges are the only ones dialled;
//! 6. **forward** (`forward.rs`, HTTP) or **tunnel** (`connect.rs`: dial,
//!    `200`, then a [`crate::tunnel::session`] with detection if planned);
//! 7. **log** — one access record per transaction: written when a response
//!    body ends, when a tunnel's session ends, or by [`answer::answer_error`]
//!    for every refusal.
//!
//! `gatehouse explain` calls the same [`plan::plan`], so what it prints is
//! what the proxy does.

mod answer;
mod authenticate;
mod connect;
mod destination;
pub mod follow;
mod forward;
mod judged;
pub mod plan;
pub mod tunnels;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accesslog::{AccessLog, AccessRecord};
use crate::auth::{Authenticated, Authenticator};
use crate::body::ResponseBody;
use crate::config::Config;
use crate::conn::{ConnState, InFlight};
use crate::error::ProxyError;
use crate::forward::{headers, UpstreamClient};
use crate::policy::{Facts, Policy};
use crate::resolve::{self, Refused, Resolver};
use crate::tunnel::tls_check::TlsChecker;
use answer::answer_error;
use plan::{Plan, Progress, Settings};

/// Everything a request needs that outlives it.
pub struct Proxy {
    /// The running configuration; SIGHUP swaps in a new one whole (each
    /// request and tunnel keeps the one it started with).
    pub config: arc_swap::ArcSwap<Config>,
    /// The upstream HTTP client (pooled connections).
    pub client: UpstreamClient,
    /// Resolves destination names (lab names through `[resolver] hosts`);
    /// rebuilt on SIGHUP.
    pub resolver: arc_swap::ArcSwap<Resolver>,
    /// `destinations.refuse`, checked against every resolved address;
    /// rebuilt on SIGHUP.
    pub refused: arc_swap::ArcSwap<Refused>,
    /// Where every transaction's record goes.
    pub log: AccessLog,
    /// Checks credentials against the realms.
    pub auth: Authenticator,
    /// The live policy; SIGHUP swaps in a new one whole.
    pub policy: arc_swap::ArcSwap<Policy>,
    /// The SSL check for detected TLS tunnels; SIGHUP swaps in a new one
    /// when `detection.ca_file` changed.
    pub checker: arc_swap::ArcSwap<TlsChecker>,
    /// TLS interception, when `[intercept]` names a CA; SIGHUP re-reads the CA.
    pub interceptor: arc_swap::ArcSwapOption<crate::intercept::Interceptor>,
    /// Addresses we listen on, for loop detection: the proxy's listeners
    /// and the admin listener.
    pub listening: Vec<SocketAddr>,
    /// Cancelled when the shutdown grace period is over: tunnels close.
    pub hard_stop: CancellationToken,
    /// Tunnels outlive their request; shutdown waits for them here.
    pub tunnels: TaskTracker,
    /// The open tunnels, judged again on each reload ([`tunnels`]).
    pub open: tunnels::Tunnels,
    /// Odd while a reload swaps the policy and settings in: a request
    /// takes all of them from one side of a reload ([`Proxy::settled`]).
    pub generation: std::sync::atomic::AtomicU64,
}

/// What a request is decided by, all from one configuration (never the new
/// policy with the old settings, or the reverse).
pub struct Settled {
    /// The policy.
    pub policy: Arc<Policy>,
    /// The settings.
    pub config: Arc<Config>,
    /// `destinations.refuse`.
    pub refused: Arc<Refused>,
    /// The resolver.
    pub resolver: Arc<Resolver>,
}

impl Proxy {
    /// The policy and settings now in force, taken between reloads (a
    /// seqlock on `generation`: a reload swaps in microseconds, and a
    /// request that saw one happen under it takes them again).
    pub fn settled(&self) -> Settled {
        use std::sync::atomic::Ordering::SeqCst;
        loop {
            let before = self.generation.load(SeqCst);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let settled = Settled {
                policy: self.policy.load_full(),
                config: self.config.load_full(),
                refused: self.refused.load_full(),
                resolver: self.resolver.load_full(),
            };
            if self.generation.load(SeqCst) == before {
                return settled;
            }
        }
    }

    /// The request-level settings [`plan::plan`] reads, from the config and
    /// refusals the request loaded.
    pub fn plan_settings<'a>(&'a self, config: &'a Config, refused: &'a Refused) -> Settings<'a> {
        Settings {
            connect_ports: &config.tunnel.allowed_ports,
            refused,
            listening: &self.listening,
            auth_required: self.auth.required(),
            detection: config.detection.enabled,
        }
    }
}

impl crate::listener::Service for Proxy {
    fn serve(
        self: Arc<Self>,
        conn: Arc<ConnState>,
        req: Request<Incoming>,
    ) -> impl std::future::Future<Output = Result<Response<ResponseBody>, Infallible>> + Send + 'static
    {
        serve(self, conn, req)
    }
}

/// A failed phase hands back the record and in-flight guard for the answer.
type Failed = (ProxyError, AccessRecord, InFlight);

/// hyper's service function: never fails, every error is an answer.
pub async fn serve(
    proxy: Arc<Proxy>,
    conn: Arc<ConnState>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let in_flight = conn.begin_request();
    let mut record = AccessRecord::new(conn.client.ip(), conn.local.ip());
    destination::describe(&mut record, &req);
    let is_connect = req.method() == Method::CONNECT;
    // The policy and settings this request is decided by, even if a reload
    // swaps them meanwhile: all from one side of any reload.
    let settled = proxy.settled();
    let (policy, config) = (&settled.policy, &settled.config);
    let fail = |e: ProxyError, record: AccessRecord, in_flight: InFlight| {
        if is_connect {
            conn.answer_connect(false);
        }
        Ok(answer_error(&proxy, e, record, in_flight, is_connect))
    };
    // 1. destination
    let dest = match destination::destination(&req) {
        Ok(d) => d,
        Err(e) => return fail(e, record, in_flight),
    };
    let host = dest.host.to_string();
    record.host.clone_from(&host);
    record.port = dest.port;
    // 2. loop check
    if headers::via_names(req.headers(), &config.forward.via_pseudonym) {
        return fail(ProxyError::Loop, record, in_flight);
    }
    // 3-5. plan, carrying out what it asks until it is final
    let settings = proxy.plan_settings(config, &settled.refused);
    let now = jiff::Timestamp::now();
    let mut at = Progress::default();
    let mut addrs = Vec::new();
    let mut who: Option<Authenticated> = None;
    // `url` rules see the normalised absolute URL of a plain HTTP request
    // (policy/url.rs), spelt out only for a policy that has them; a target
    // that cannot be normalised is refused whatever the policy.
    let url = if is_connect {
        None
    } else {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        match crate::policy::url::path_and_query_normalised(pq) {
            Err(e) => return fail(ProxyError::BadRequest(e.reason()), record, in_flight),
            Ok(pq) => policy
                .has_url_rules()
                .then(|| crate::policy::url::absolute("http", &host, dest.port, &pq))
                .and_then(Result::ok),
        }
    };
    let (next, categories) = loop {
        let categories = policy.categories.lookup(&host, &addrs);
        let facts = Facts {
            identity: who.as_ref().map(|w| &*w.identity),
            client: conn.client.ip(),
            method: req.method().as_str(),
            host: &host,
            addrs: &addrs,
            port: dest.port,
            headers: req.headers(),
            categories: &categories,
            now,
            detected: None,
            url: url.as_deref(),
        };
        match plan::plan(policy, &settings, &facts, at) {
            Plan::Resolve => match destination::resolve(&settled, &dest).await {
                Ok(a) => {
                    addrs = a;
                    at.resolved = true;
                }
                Err(e) => return fail(e, record, in_flight),
            },
            Plan::Authenticate { .. } => {
                match authenticate::authenticate(&proxy, &conn, &req, config, &mut record).await {
                    Ok(w) => {
                        who = Some(w);
                        at.authenticated = true;
                    }
                    Err(e) => {
                        // A type 1 counts too: a connection that starts handshake
                        // after handshake without finishing one is closed.
                        let counts =
                            e.is_auth_failure() || matches!(e, ProxyError::AuthContinue(_));
                        let close = counts && conn.auth.failures() >= proxy.auth.max_failures();
                        return Ok(authenticate::refuse(
                            &proxy, &conn, e, req, record, in_flight, close,
                        )
                        .await);
                    }
                }
            }
            Plan::Refuse(r) => {
                record.rule = r.rule;
                record.tags = r.tags.iter().map(|t| t.to_string()).collect();
                if matches!(r.error, ProxyError::PolicyDenied { .. }) {
                    record.categories = categories.iter().map(|c| c.to_string()).collect();
                }
                if let ProxyError::DestinationRefused(ip) = &r.error {
                    tracing::info!(%host, %ip, "destination in destinations.refuse");
                }
                return fail(r.error, record, in_flight);
            }
            done => break (done, categories),
        }
    };
    // 6. forward or tunnel, to exactly the planned addresses
    record.categories = categories.iter().map(|c| c.to_string()).collect();
    let dial = resolve::with_port(&addrs, dest.port);
    let result = match (next, dest.target) {
        (Plan::Tunnel { decision, detect }, _) => {
            record.rule = decision.rule_names();
            record.tags = decision.tags.iter().map(|t| t.to_string()).collect();
            let intercept = decision.connect == crate::policy::ConnectMode::Intercept;
            let judged = judged::Judged {
                policy: policy.clone(),
                identity: who.as_ref().map(|w| w.identity.clone()),
                headers: req.headers().clone(),
                categories,
                addrs,
                host,
                port: dest.port,
                client: conn.client.ip(),
            };
            let mode = match (intercept, detect) {
                (true, _) => connect::Mode::Intercept,
                (false, true) => connect::Mode::Detect,
                (false, false) => connect::Mode::Raw,
            };
            let tunnel = connect::Tunnel {
                dial,
                mode,
                judged,
                config: config.clone(),
            };
            connect::connect(&proxy, &conn, req, tunnel, record, in_flight).await
        }
        (Plan::Forward(decision), Some(target)) => {
            record.rule = decision.rule_names();
            record.tags = decision.tags.iter().map(|t| t.to_string()).collect();
            // Plain HTTP goes to the first address only (see `forward`).
            match dial.first() {
                Some(addr) => {
                    // Realm and user: the same login in two realms is two people.
                    let user = who
                        .as_ref()
                        .map(|w| format!("{}\\{}", w.identity.realm, w.identity.user));
                    let up = crate::forward::Upstream {
                        client: &proxy.client,
                        pins: &conn.pinned,
                        user: user.as_deref(),
                    };
                    forward::forward(&proxy, up, req, target, *addr, record, in_flight).await
                }
                None => Err((ProxyError::ConnectFailed(host), record, in_flight)),
            }
        }
        // A CONNECT is never planned to forward, nor HTTP to tunnel.
        (_, _) => Err((
            ProxyError::BadRequest("request and plan disagree"),
            record,
            in_flight,
        )),
    };
    match result {
        Ok(mut resp) => {
            // Negotiate's mutual authentication token rides on the success.
            if let Some(tok) = who.as_ref().and_then(|w| w.mutual.as_deref()) {
                if let Ok(v) = HeaderValue::from_str(&format!("Negotiate {tok}")) {
                    resp.headers_mut().insert(header::PROXY_AUTHENTICATE, v);
                }
            }
            Ok(resp)
        }
        Err((e, record, in_flight)) => fail(e, record, in_flight),
    }
}
