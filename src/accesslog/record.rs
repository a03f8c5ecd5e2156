//! One access record per transaction, filled in as the request goes and
//! written once, when the transaction ends.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::outcome::{ExceptionId, SAction};

/// ProxySG's `sc-filter-result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum FilterResult {
    /// The transaction was allowed (or failed upstream).
    Observed,
    /// The proxy refused it.
    Denied,
}

impl FilterResult {
    /// The log's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterResult::Observed => "OBSERVED",
            FilterResult::Denied => "DENIED",
        }
    }
}

/// One transaction, as the access log records it (ProxySG's ELFF fields).
#[derive(Debug, Clone, Serialize)]
pub struct AccessRecord {
    /// When the transaction started.
    #[serde(with = "humantime_serde")]
    pub start: SystemTime,
    /// How long it took, set by [`AccessRecord::finish`].
    pub time_taken_ms: u64,
    /// The client's address.
    pub client_ip: IpAddr,
    /// The authenticated (or attempted) user name.
    pub username: Option<String>,
    /// The user's groups, when authenticated.
    pub auth_groups: Vec<String>,
    /// Why it was refused or failed.
    pub exception_id: Option<ExceptionId>,
    /// `OBSERVED` or `DENIED`.
    pub filter_result: FilterResult,
    /// The destination's categories.
    pub categories: Vec<String>,
    /// The status sent to the client.
    pub status: u16,
    /// What the proxy did.
    pub action: SAction,
    /// The request method.
    pub method: String,
    /// `http`, `tcp` (CONNECT) or `other`.
    pub scheme: Option<&'static str>,
    /// The destination host as the client wrote it, canonical once known.
    pub host: String,
    /// The destination port.
    pub port: u16,
    /// The request path (not for CONNECT).
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The client's User-Agent.
    pub user_agent: Option<String>,
    /// The proxy address the client connected to.
    pub server_ip: IpAddr,
    /// Bytes sent to the client (response head excluded for forwarded requests).
    pub sc_bytes: u64,
    /// Bytes received from the client (request body, or tunnel payload).
    pub cs_bytes: u64,
    /// The rule that decided, when policy decided.
    pub rule: Option<String>,
    /// How the user authenticated: `basic`, `basic-cached`, ...
    pub auth_scheme: Option<String>,
    /// Tags added by policy rules.
    pub tags: Vec<String>,
    /// CONNECT protocol detection: what the client spoke, its TLS SNI, and JA3N.
    pub protocol: Option<&'static str>,
    /// The TLS SNI the client sent.
    pub sni: Option<String>,
    /// The client's JA3N fingerprint.
    pub ja3n: Option<String>,
    /// JA4 of the CONNECT's ClientHello.
    pub ja4: Option<String>,
    /// The origin address dialled (ProxySG's `r-ip`): the one the policy
    /// judged, the tunnel connected to and any probe used.
    pub remote_ip: Option<IpAddr>,
    /// A request decrypted from an intercepted tunnel (ELFF `x-intercepted`).
    pub intercepted: bool,
}

impl AccessRecord {
    /// A record for a request from `client_ip`, served on `server_ip`; fields
    /// about the request are filled in by the caller.
    pub fn new(client_ip: IpAddr, server_ip: IpAddr) -> Self {
        Self {
            start: SystemTime::now(),
            time_taken_ms: 0,
            client_ip,
            username: None,
            auth_groups: Vec::new(),
            exception_id: None,
            filter_result: FilterResult::Observed,
            categories: Vec::new(),
            status: 0,
            action: SAction::TcpNcMiss,
            method: String::new(),
            scheme: None,
            host: String::new(),
            port: 0,
            path: String::new(),
            query: None,
            user_agent: None,
            server_ip,
            sc_bytes: 0,
            cs_bytes: 0,
            rule: None,
            auth_scheme: None,
            tags: Vec::new(),
            protocol: None,
            sni: None,
            ja3n: None,
            ja4: None,
            remote_ip: None,
            intercepted: false,
        }
    }

    /// The request's own fields — method, `User-Agent`, path and query (none
    /// for a CONNECT) — the same way for every request the proxy serves and
    /// every request inside a tunnel.
    pub fn request<B>(&mut self, req: &http::Request<B>) {
        self.method = req.method().as_str().to_owned();
        self.user_agent = req
            .headers()
            .get(http::header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        if req.method() != http::Method::CONNECT {
            self.path = req.uri().path().to_owned();
            self.query = req.uri().query().map(str::to_owned);
        }
    }

    /// Was the transaction a CONNECT (its `cs-uri` is `host:port`)?
    pub fn is_connect(&self) -> bool {
        self.method == http::Method::CONNECT.as_str()
    }

    /// Stamps the duration; call once, just before writing.
    pub fn finish(&mut self) {
        let took = self.start.elapsed().unwrap_or(Duration::ZERO);
        self.time_taken_ms = took.as_millis() as u64;
    }

    /// Who the request authenticated as (user, groups, scheme).
    pub fn authenticated(&mut self, who: &crate::auth::Authenticated) {
        self.username = Some(who.identity.user.clone());
        self.auth_groups = who.identity.group_names();
        self.auth_scheme = Some(who.log_scheme());
    }

    /// Marks the transaction refused or failed with `e`.
    pub fn set_error(&mut self, e: &crate::error::ProxyError) {
        self.status = e.status().as_u16();
        self.exception_id = Some(e.exception_id());
        self.action = e.s_action();
        if !e.is_upstream() {
            self.filter_result = FilterResult::Denied;
        }
    }
}
