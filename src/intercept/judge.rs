//! What a tunnel's inner requests ask of the proxy: the policy's say on
//! each, by its own method, URL and headers. The proxy supplies the
//! [`Judge`] (it knows the policy and the tunnel's user); interception
//! only calls it.

use http::Method;

use crate::tunnel::detect::ClientHello;

/// The policy's say on one decrypted request.
#[derive(Debug, Clone)]
pub enum Inner {
    /// Forward it; the rules that decided, for `x-rule`.
    Allow {
        /// `x-rule`.
        rule: Option<String>,
        /// The allowing rule has an `upgrade` condition: the protocols it
        /// lists may be upgraded to (see `forward::upgrade::admit`).
        by_upgrade: bool,
        /// The request's own user, when its cookie surrogate made it one
        /// (the tunnel had none).
        surrogate: Option<crate::auth::Authenticated>,
    },
    /// Answer it with this status and reason.
    Deny {
        /// The status and the `x-exception-id`.
        denial: crate::policy::Denial,
        /// `x-rule`.
        rule: Option<String>,
        /// As for `Allow`.
        surrogate: Option<crate::auth::Authenticated>,
    },
    /// A cookie surrogate's step: the proxy's own redirect, nothing sent on.
    Redirect(crate::auth::surrogate_cookie::Redirect),
}

impl Inner {
    /// The user a cookie surrogate made the request, for its log line.
    pub fn surrogate(&self) -> Option<&crate::auth::Authenticated> {
        match self {
            Inner::Allow { surrogate, .. } | Inner::Deny { surrogate, .. } => surrogate.as_ref(),
            Inner::Redirect(_) => None,
        }
    }
}

/// Judges a request inside the tunnel by its own method, full URL and
/// headers, the tunnel's server name (the SNI, else the CONNECT host) and
/// its ClientHello (none for plain HTTP).
/// Async: the tunnel's user is looked up again (through the realms' caches).
pub type Judge = Box<
    dyn for<'a> Fn(
            &'a Method,
            &'a str,
            &'a http::HeaderMap,
            &'a str,
            Option<&'a ClientHello>,
        ) -> Judging<'a>
        + Send
        + Sync,
>;

/// One request's judgement under way.
pub type Judging<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Inner> + Send + 'a>>;
