//! What a tunnel was judged on — the CONNECT's facts — and the judgements
//! made on them while it is open: what detection found, each request
//! inside (decrypted, or plain HTTP), and the tunnel itself again after a
//! reload ([`super::tunnels`]).
//!
//! A tunnel outlives the policy and the identity of its CONNECT: a request
//! inside it is judged by the policy in force when it arrives and by the
//! user as the realms know them then (through their caches: a hit costs no
//! directory round trip). A user the realms no longer know is refused; a
//! directory that cannot answer keeps the identity the tunnel has — the
//! realm's own cache already serves a stale entry within its grace, and a
//! tunnel is not cut because LDAP is down.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method};

use super::plan::{self, detected, detected_tls, judge_detected, Plan, Progress};
use super::Proxy;
use crate::directory::{Identity, RealmChain};
use crate::intercept::judge::{Inner, Judge, Judging};
use crate::outcome::DetectionReason;
use crate::policy::{Denial, Detected, Facts, Policy, Verdict, CONNECT};
use crate::protocol::ProtocolKind;
use crate::snapshot::Snapshot;
use crate::tunnel::detect::{ClientHello, Protocol};
use crate::tunnel::inspect::PolicySays;

/// The `x-rule` of a tunnel, or an inner request, refused because its user
/// is no longer known to any realm.
pub(super) const USER_GONE: &str = "builtin:identity";

/// What a tunnel needs from its CONNECT to ask the policy again: once the
/// protocol is known, for each request inside, and after each reload.
pub(super) struct Judged {
    /// The snapshot the CONNECT was decided by (`categories` are its policy's).
    pub snapshot: Arc<Snapshot>,
    pub identity: Option<Arc<Identity>>,
    /// How `identity` was obtained (`Authenticated::scheme`).
    pub scheme: Option<&'static str>,
    pub headers: HeaderMap,
    pub categories: Vec<Arc<str>>,
    pub addrs: Vec<IpAddr>,
    pub host: String,
    pub port: u16,
    pub client: IpAddr,
}

/// What one judgement is made under: a policy, the user as the realms know
/// them now, and the CONNECT host's categories under that policy.
pub(super) struct Under<'a> {
    pub policy: &'a Policy,
    pub identity: Option<&'a Identity>,
    pub categories: &'a [Arc<str>],
}

/// The user the realms no longer know: refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct UserGone;

/// The CONNECT's headers, each value copied into its own allocation. hyper
/// parses a head's values as slices of the connection's read buffer (8 KiB
/// and up): a tunnel holding them as they came kept that whole buffer alive
/// for its life.
pub(super) fn kept_headers(headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let mut copied =
            HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copied.set_sensitive(value.is_sensitive());
        kept.append(name.clone(), copied);
    }
    kept
}

impl Judged {
    fn facts<'a>(&'a self, under: &Under<'a>, detected: Option<Detected<'a>>) -> Facts<'a> {
        Facts {
            identity: under.identity,
            auth_scheme: self.scheme,
            client: self.client,
            method: &CONNECT,
            host: &self.host,
            addrs: &self.addrs,
            port: self.port,
            headers: &self.headers,
            categories: under.categories,
            now: jiff::Timestamp::now(),
            detected,
            url: None,
        }
    }

    /// The CONNECT host's categories under `now`'s policy (the CONNECT's
    /// own when it is the snapshot it was decided by).
    pub fn categories_under(&self, now: &Arc<Snapshot>) -> Vec<Arc<str>> {
        if Arc::ptr_eq(now, &self.snapshot) {
            self.categories.clone()
        } else {
            now.policy.categories.lookup(&self.host, &self.addrs)
        }
    }

    /// The tunnel's user as the realms know them now: the same identity
    /// when no realm can answer, [`UserGone`] when none knows the user.
    pub async fn identity_now(
        &self,
        realms: &RealmChain,
    ) -> Result<Option<Arc<Identity>>, UserGone> {
        let Some(was) = &self.identity else {
            return Ok(None);
        };
        if self.scheme == Some(crate::auth::GUEST) {
            return Ok(Some(was.clone())); // no realm knows the guest
        }
        match realms.lookup(&was.user).await {
            Ok(Some(now)) => Ok(Some(now)),
            Ok(None) => Err(UserGone),
            Err(e) => {
                tracing::debug!(user = %was.user, error = %e, "directory unavailable: the tunnel keeps its identity");
                Ok(Some(was.clone()))
            }
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
    pub fn detected(&self, under: &Under<'_>, p: &Protocol) -> (PolicySays, Option<Arc<str>>) {
        let policy = under.policy;
        let sni = match p {
            Protocol::Tls(h) => h
                .sni
                .as_deref()
                .filter(|s| !s.eq_ignore_ascii_case(&self.host)),
            _ => None,
        };
        let (Some(sni), Protocol::Tls(hello)) = (sni, p) else {
            return judge_detected(policy, &self.facts(under, Some(detected(p))));
        };
        if self.host.parse::<IpAddr>().is_ok() {
            let categories = policy.categories.lookup(sni, &self.addrs);
            let facts = Facts {
                host: sni,
                categories: &categories,
                ..self.facts(under, Some(detected_tls(hello)))
            };
            return judge_detected(policy, &facts);
        }
        match judge_detected(policy, &self.facts(under, Some(detected_tls(hello)))) {
            // Interception refuses the other name itself, as domain fronting.
            said @ (PolicySays::Allow | PolicySays::Deny(_) | PolicySays::Intercept, _) => said,
            (PolicySays::Nothing, _) => (
                PolicySays::Deny(DetectionReason::SniMismatch.as_str().into()),
                Some("builtin:sni-match".into()),
            ),
        }
    }

    /// Whether the plan under `under` relays this CONNECT raw (no
    /// detection, no interception).
    pub fn planned_raw(&self, settings: &plan::Settings<'_>, under: &Under<'_>) -> bool {
        let facts = self.facts(under, None);
        let at = Progress {
            resolved: true,
            authenticated: under.identity.is_some(),
        };
        matches!(
            plan::plan(under.policy, settings, &facts, at),
            Plan::Tunnel { detect: false, decision }
                if decision.connect != crate::policy::ConnectMode::Intercept
        )
    }

    /// The tunnel judged again as its CONNECT was ([`plan::plan`] on its
    /// facts, then what detection found, if it has), under `under`: `None`
    /// while it is still allowed, else the rule that now refuses it. A
    /// tunnel is never changed in place: a raw tunnel the new policy would
    /// intercept stays raw until it closes.
    pub fn refused_now(
        &self,
        settings: &plan::Settings<'_>,
        under: &Under<'_>,
        found: Option<&Protocol>,
    ) -> Option<Arc<str>> {
        if let Some(rule) = self.guest_refused_now(settings, under) {
            return Some(rule);
        }
        let facts = self.facts(under, None);
        let at = Progress {
            resolved: true,
            authenticated: under.identity.is_some(),
        };
        match plan::plan(under.policy, settings, &facts, at) {
            Plan::Refuse(r) => Some(r.rule.unwrap_or_else(|| "default".into()).into()),
            Plan::Authenticate { rule, .. } => Some(rule.unwrap_or_else(|| "builtin:auth".into())),
            Plan::Tunnel { .. } => match found.map(|p| self.detected(under, p)) {
                Some((PolicySays::Deny(_), rule)) => Some(rule.unwrap_or_else(|| "default".into())),
                _ => None,
            },
            Plan::Resolve | Plan::Forward(_) => None,
        }
    }

    /// A guest proved nothing: a `guest` rule let them in, and that rule
    /// must still do so under `under` (a reload that drops it ends the
    /// guest's tunnels, as one that refuses a user ends theirs).
    fn guest_refused_now(
        &self,
        settings: &plan::Settings<'_>,
        under: &Under<'_>,
    ) -> Option<Arc<str>> {
        if self.scheme != Some(crate::auth::GUEST) {
            return None;
        }
        let anonymous = Facts {
            identity: None,
            auth_scheme: None,
            ..self.facts(under, None)
        };
        let at = Progress {
            resolved: true,
            authenticated: false,
        };
        match plan::plan(under.policy, settings, &anonymous, at) {
            Plan::Authenticate { rule, guest: false } => {
                Some(rule.unwrap_or_else(|| "builtin:auth".into()))
            }
            _ => None,
        }
    }

    /// The policy on one request inside the tunnel (decrypted, or plain
    /// HTTP), by the policy in force now and the user as the realms know
    /// them now: the tunnel's addresses, its server `name` (the SNI; its
    /// categories) and ClientHello, the request's own method, headers and
    /// full URL.
    async fn inner(
        &self,
        proxy: &Proxy,
        method: &Method,
        url: &str,
        headers: &HeaderMap,
        name: &str,
        hello: Option<&ClientHello>,
    ) -> Inner {
        let now = proxy.snapshot();
        let policy = &now.policy;
        let Ok(mut identity) = self.identity_now(&now.realms).await else {
            return Inner::Deny {
                denial: Denial {
                    status: http::StatusCode::FORBIDDEN,
                    reason: crate::outcome::ExceptionId::TunnelRevoked.as_str().into(),
                },
                rule: Some(USER_GONE.into()),
                surrogate: None,
            };
        };
        // A tunnel without a user: the request's cookie surrogate may be one.
        let mut surrogate = None;
        if let Some(cookies) = proxy.auth.cookies() {
            if let Some(to) = cookies.redeem(url, name) {
                return Inner::Redirect(to);
            }
            if identity.is_none() {
                surrogate = proxy
                    .auth
                    .cookie_surrogate(headers, name, &now.realms)
                    .await;
                identity = surrogate.as_ref().map(|w| w.identity.clone());
            }
        }
        let categories = if name.eq_ignore_ascii_case(&self.host) {
            self.categories_under(&now)
        } else {
            policy.categories.lookup(name, &self.addrs)
        };
        let under = Under {
            policy,
            identity: identity.as_deref(),
            categories: &categories,
        };
        let detected = hello.map_or(Detected::protocol(ProtocolKind::Http), detected_tls);
        let facts = Facts {
            method,
            url: Some(url),
            host: name,
            headers,
            ..self.facts(&under, Some(detected))
        };
        let facts = Facts {
            auth_scheme: surrogate.as_ref().map(|w| w.scheme).or(self.scheme),
            ..facts
        };
        if identity.is_none() && (*method == Method::GET || *method == Method::HEAD) {
            let required = policy.auth_need(&facts, proxy.auth.required()).required;
            let cookies = proxy.auth.cookies().filter(|_| required);
            if let Some(to) = cookies.and_then(|c| c.to_virtual(url, name)) {
                return Inner::Redirect(to);
            }
        }
        let d = policy.decide(&facts);
        let rule = d.rule_names();
        match d.verdict {
            Verdict::Deny(denial) => Inner::Deny {
                denial,
                rule,
                surrogate,
            },
            Verdict::Allow => Inner::Allow {
                rule,
                by_upgrade: d.verdict_by_upgrade,
                surrogate,
            },
        }
    }
}

/// The [`Judge`] of an intercepted tunnel, or of plain HTTP inside a
/// CONNECT: [`Judged::inner`] on each request.
pub(super) fn judge(proxy: Arc<Proxy>, judged: Arc<Judged>) -> Judge {
    /// Gives the closure the signature `Judge` needs (for every lifetime).
    fn each<F>(f: F) -> F
    where
        F: for<'a> Fn(
            &'a Method,
            &'a str,
            &'a HeaderMap,
            &'a str,
            Option<&'a ClientHello>,
        ) -> Judging<'a>,
    {
        f
    }
    Box::new(each(move |method, url, headers, name, hello| {
        let (proxy, judged) = (proxy.clone(), judged.clone());
        Box::pin(async move {
            judged
                .inner(&proxy, method, url, headers, name, hello)
                .await
        })
    }))
}

#[cfg(test)]
mod kept_tests {
    use super::*;

    #[test]
    fn kept_headers_share_no_byte_of_the_read_buffer() {
        // hyper parses a head's values as slices of the connection's read
        // buffer; a tunnel keeping them kept that buffer for its life.
        let buffer =
            bytes::Bytes::from(b"x-a: one\r\nproxy-authorization: Basic YQ==\r\n".repeat(200));
        let mut headers = HeaderMap::new();
        let v =
            |r: std::ops::Range<usize>| HeaderValue::from_maybe_shared(buffer.slice(r)).unwrap();
        headers.append("x-a", v(5..8));
        headers.append("x-a", v(5..8));
        let mut secret = v(31..41);
        secret.set_sensitive(true);
        headers.insert(http::header::PROXY_AUTHORIZATION, secret);
        let kept = kept_headers(&headers);
        assert_eq!(kept, headers);
        assert!(kept[http::header::PROXY_AUTHORIZATION].is_sensitive());
        let buf = buffer.as_ptr_range();
        for value in kept.values() {
            let r = value.as_bytes().as_ptr_range();
            assert!(
                r.end <= buf.start || r.start >= buf.end,
                "shares the read buffer"
            );
        }
    }
}
