//! The one place that turns a request into a decision.
//!
//! Today the built-in rules are the secure defaults (CONNECT only to the
//! configured ports); the policy layers of a later issue replace the body of
//! [`decide`] without touching the I/O code. A decision is a value that names
//! the rule that made it, and the access log writes that name.

use http::Method;

use crate::config::Config;
use crate::error::ProxyError;

/// What the proxy knows about a request when it decides.
#[derive(Debug, Clone)]
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    pub host: &'a str,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Forward the request, or open the tunnel.
    Allow,
    /// Refuse with this answer.
    Deny(ProxyError),
}

/// An action, and the name of the rule that chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub rule: &'static str,
}

/// Decides what to do with one request.
pub fn decide(config: &Config, facts: &RequestFacts<'_>) -> Decision {
    if facts.method == Method::CONNECT && !config.tunnel.allowed_ports.contains(&facts.port) {
        return Decision {
            action: Action::Deny(ProxyError::PortNotAllowed(facts.port)),
            rule: "builtin:connect-ports",
        };
    }
    Decision {
        action: Action::Allow,
        rule: "builtin:allow",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_only_to_allowed_ports() {
        let cfg = Config::from_toml("[tunnel]\nallowed_ports = [443, 8443]\n").unwrap();
        let facts = |port| RequestFacts {
            method: &Method::CONNECT,
            host: "h",
            port,
        };
        assert_eq!(decide(&cfg, &facts(443)).action, Action::Allow);
        assert_eq!(decide(&cfg, &facts(8443)).action, Action::Allow);
        let d = decide(&cfg, &facts(25));
        assert_eq!(d.action, Action::Deny(ProxyError::PortNotAllowed(25)));
        assert_eq!(d.rule, "builtin:connect-ports");
        // Plain HTTP is not bound by the CONNECT port list.
        let get = RequestFacts {
            method: &Method::GET,
            host: "h",
            port: 25,
        };
        assert_eq!(decide(&cfg, &get).action, Action::Allow);
    }
}
