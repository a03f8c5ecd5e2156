//! Who is behind a request, as far as policy and the log are concerned, and
//! the one normalisation of names that realms, policy and groups share.
//!
//! Realms build identities; `auth` only says how one was obtained (see
//! `auth::Authenticated`), so this lives on the directory side.

use std::borrow::Cow;
use std::sync::Arc;

use icu_casemap::CaseMapper;
use icu_normalizer::{ComposingNormalizerBorrowed, DecomposingNormalizerBorrowed};

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
    /// Direct and nested groups, as the realm resolved them.
    pub groups: Vec<Group>,
}

impl Identity {
    /// Membership by CN or by full DN, compared [`fold`]ed; nested groups count.
    pub fn in_group(&self, name: &str) -> bool {
        let name = folded(name);
        self.groups.iter().any(|g| {
            folded(&g.name) == name || g.dn.as_deref().is_some_and(|dn| folded(dn) == name)
        })
    }

    /// Group names for the log's `cs-auth-group`.
    pub fn group_names(&self) -> Vec<String> {
        self.groups.iter().map(|g| g.name.clone()).collect()
    }
}

/// The one case normalisation for names (users, groups, realms, policy
/// objects): Unicode default full case folding of the canonically decomposed
/// name, recomposed to NFC. Two names are the same name exactly when their
/// folds are equal; compare folds, never `eq_ignore_ascii_case` (which leaves
/// `Ärzte` and `ärzte` apart, so a deny rule would fail open).
///
/// Why these steps: `to_lowercase` is not a caseless match (`ß` vs `SS`,
/// final sigma), ASCII-only comparison ignores every other script, and a name
/// typed on one system may arrive decomposed (`A` + U+0308) from another. This
/// is Unicode's canonical caseless match (D145); the default folding keeps
/// Turkish dotted/dotless `i` as the locale-independent mapping does, since a
/// proxy has no locale to pick. The tables come from ICU4X (`icu_casemap`,
/// `icu_normalizer`), the Unicode Consortium's own, current, Rust crates.
pub fn fold(name: &str) -> String {
    folded(name).into_owned()
}

/// Whether `name` folds to `folded` (a name [`fold`]ed beforehand, as the
/// policy compiler does with the names in rules).
pub fn folds_to(name: &str, folded_name: &str) -> bool {
    folded(name) == folded_name
}

/// [`fold`] without an allocation for lowercase ASCII names (the common case),
/// for comparisons on the request path.
fn folded(name: &str) -> Cow<'_, str> {
    if !name
        .bytes()
        .any(|b| !b.is_ascii() || b.is_ascii_uppercase())
    {
        return Cow::Borrowed(name);
    }
    let nfd = DecomposingNormalizerBorrowed::new_nfd().normalize(name);
    let fold = match CaseMapper::new().fold_string(&nfd) {
        Cow::Borrowed(_) => nfd,
        Cow::Owned(s) => Cow::Owned(s),
    };
    match ComposingNormalizerBorrowed::new_nfc().normalize(&fold) {
        Cow::Borrowed(_) => fold,
        Cow::Owned(s) => Cow::Owned(s),
    }
}

/// Normalises a login name as a realm is configured to: strips `DOMAIN\` and
/// `@REALM` when asked, [`fold`]s when the realm is case-insensitive.
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
        fold(u)
    } else {
        u.to_string()
    }
}

/// A login as a realm sees it: `DOMAIN\\user` or `user@REALM` is this realm's
/// user only when the realm lists that domain in `domains` (its NetBIOS
/// domains, DNS domains and Kerberos realms); a bare `user` always is.
/// `PARTNER\\alice` from the NTLM helper or `alice@OTHER.REALM` from a
/// cross-realm ticket is someone else, never CORP's alice: `None`.
///
/// With `strip_domain` off the login is taken whole (the directory itself
/// matches the qualified form, e.g. against `userPrincipalName`).
pub fn login_in_realm(
    user: &str,
    domains: &[String],
    strip_domain: bool,
    case_insensitive: bool,
) -> Option<String> {
    let user = user.trim();
    if !strip_domain {
        return Some(normalise(user, false, case_insensitive));
    }
    let (domain, bare) = match (user.split_once('\\'), user.rsplit_once('@')) {
        (Some((d, u)), _) => (Some(d), u),
        (None, Some((u, d))) => (Some(d), u),
        (None, None) => (None, user),
    };
    if let Some(d) = domain {
        if !domains.iter().any(|ours| ours.eq_ignore_ascii_case(d)) {
            tracing::info!(%user, domain = d, "login from a domain this realm does not serve");
            return None;
        }
    }
    // A second qualifier (`A\\B\\alice`, `a@b@c`) is no login of ours.
    if bare.contains(['\\', '@']) || bare.is_empty() {
        return None;
    }
    Some(normalise(bare, false, case_insensitive))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_domains_are_ours() {
        let ours = vec!["CORP".to_string(), "corp.example.com".to_string()];
        let f = |u: &str| login_in_realm(u, &ours, true, true);
        assert_eq!(f("alice").as_deref(), Some("alice"));
        assert_eq!(f("corp\\Alice").as_deref(), Some("alice"));
        assert_eq!(f("alice@CORP.EXAMPLE.COM").as_deref(), Some("alice"));
        assert_eq!(f("PARTNER\\alice"), None);
        assert_eq!(f("alice@OTHER.REALM"), None);
        assert_eq!(f("CORP\\PARTNER\\alice"), None);
        assert_eq!(f("alice@x@CORP"), None);
        assert_eq!(f("CORP\\"), None);
        // No domains listed: only bare logins.
        assert_eq!(login_in_realm("CORP\\alice", &[], true, true), None);
        // Not stripping: the directory matches the whole login.
        assert_eq!(
            login_in_realm("alice@OTHER.REALM", &[], false, false).as_deref(),
            Some("alice@OTHER.REALM")
        );
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalise("CORP\\Alice", true, true), "alice");
        assert_eq!(normalise("Alice@CORP.EXAMPLE", true, true), "alice");
        assert_eq!(
            normalise("Alice@CORP.EXAMPLE", false, false),
            "Alice@CORP.EXAMPLE"
        );
        assert_eq!(normalise(" bob ", true, false), "bob");
        assert_eq!(normalise("CORP\\ÄRZTIN", true, true), "ärztin");
        assert_eq!(normalise("Ärztin", true, false), "Ärztin");
    }

    #[test]
    fn folding_is_unicode_full_case_folding_in_nfc() {
        for name in ["Ärzte", "ÄRZTE", "ärzte", "A\u{308}rzte", "a\u{308}RZTE"] {
            assert_eq!(fold(name), "ärzte", "{name:?}");
        }
        // Full folding: ß is ss, so Straße and STRASSE are one name.
        assert_eq!(fold("Straße"), fold("STRASSE"));
        assert_eq!(fold("ẞ"), "ss");
        // Final and medial sigma fold alike.
        assert_eq!(fold("ΟΔΥΣΣΕΥΣ"), fold("οδυσσευς"));
        // Default (not Turkic) folding: I is i, İ keeps its dot as U+0307,
        // dotless ı stays itself.
        assert_eq!(fold("I"), "i");
        assert_eq!(fold("İ"), "i\u{307}");
        assert_eq!(fold("ı"), "ı");
        assert_ne!(fold("ı"), fold("I"));
        // Lowercase ASCII comes back as it is, without allocating.
        assert!(matches!(
            folded("skype users"),
            Cow::Borrowed("skype users")
        ));
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

    #[test]
    fn membership_is_caseless_beyond_ascii() {
        let id = Identity {
            user: "jürgen".into(),
            realm: "corp".into(),
            dn: None,
            groups: vec![Group {
                name: "Ärzte".into(),
                dn: Some("CN=Ärzte,OU=Gruppen,DC=example,DC=test".into()),
                nested: false,
            }],
        };
        for g in ["Ärzte", "ÄRZTE", "ärzte", "A\u{308}rzte"] {
            assert!(id.in_group(g), "{g:?}");
        }
        assert!(id.in_group("cn=ärzte,ou=gruppen,dc=example,dc=test"));
        assert!(!id.in_group("Arzte"));
    }
}
