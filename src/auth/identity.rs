//! Who is behind a request, as far as policy and the log are concerned.

use std::sync::Arc;

/// A group the user belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Short name (the group's CN, or the local group name).
    pub name: String,
    /// Full DN, for directory groups.
    pub dn: Option<String>,
    /// Reached through another group rather than directly.
    pub nested: bool,
}

/// An authenticated (or looked-up) user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Normalised per realm (case, `DOMAIN\user`, `user@REALM`).
    pub user: String,
    /// The realm that vouched for this user.
    pub realm: Arc<str>,
    /// Directory DN, when the realm is a directory.
    pub dn: Option<String>,
    pub groups: Vec<Group>,
}

impl Identity {
    /// Membership by CN or by full DN, case-insensitively; nested groups count.
    pub fn in_group(&self, name: &str) -> bool {
        self.groups.iter().any(|g| {
            g.name.eq_ignore_ascii_case(name)
                || g.dn
                    .as_deref()
                    .is_some_and(|dn| dn.eq_ignore_ascii_case(name))
        })
    }

    /// Group names for the log's `cs-auth-group`.
    pub fn group_names(&self) -> Vec<String> {
        self.groups.iter().map(|g| g.name.clone()).collect()
    }
}

/// How a request's identity was obtained, for the access log.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub identity: Arc<Identity>,
    /// `basic` (later: `negotiate-kerberos`, `ntlm`).
    pub scheme: &'static str,
    /// Answered from the credential cache or the connection, without asking the realm.
    pub cached: bool,
    /// Established for the connection (Negotiate, NTLM), not just this request.
    pub connection_bound: bool,
    /// `Proxy-Authenticate: Negotiate <token>` to send back (mutual authentication).
    pub mutual: Option<String>,
}

impl Authenticated {
    /// `x-auth-scheme`: the scheme, with `-cached` when no realm was asked.
    pub fn log_scheme(&self) -> String {
        if self.cached {
            format!("{}-cached", self.scheme)
        } else {
            self.scheme.to_string()
        }
    }
}

/// Normalises a login name as a realm is configured to: strips `DOMAIN\` and
/// `@REALM` when asked, lowercases when the realm is case-insensitive.
pub fn normalise(user: &str, strip_domain: bool, case_insensitive: bool) -> String {
    let mut u = user.trim();
    if strip_domain {
        if let Some((_, rest)) = u.split_once('\\') {
            u = rest;
        }
        if let Some((name, _)) = u.rsplit_once('@') {
            u = name;
        }
    }
    if case_insensitive {
        u.to_lowercase()
    } else {
        u.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(normalise("CORP\\Alice", true, true), "alice");
        assert_eq!(normalise("Alice@CORP.EXAMPLE", true, true), "alice");
        assert_eq!(
            normalise("Alice@CORP.EXAMPLE", false, false),
            "Alice@CORP.EXAMPLE"
        );
        assert_eq!(normalise(" bob ", true, false), "bob");
    }

    #[test]
    fn membership_by_name_or_dn() {
        let id = Identity {
            user: "alice".into(),
            realm: "corp".into(),
            dn: None,
            groups: vec![Group {
                name: "Skype Users".into(),
                dn: Some("cn=Skype Users,ou=groups,dc=example,dc=test".into()),
                nested: true,
            }],
        };
        assert!(id.in_group("skype users"));
        assert!(id.in_group("CN=Skype Users,OU=groups,DC=example,DC=test"));
        assert!(!id.in_group("staff"));
    }
}
