//! Group membership, direct and nested, by the realm's strategy.

use std::collections::HashSet;
use std::sync::Arc;

use ldap3::ldap_escape;

use super::pool::LdapPool;
use crate::directory::cache::{StaleCache, Unavailable};
use crate::directory::config::{GroupStrategy, LdapRealmConfig};
use crate::directory::identity::Group;

/// AD's LDAP_MATCHING_RULE_IN_CHAIN: membership through any depth of nesting.
const IN_CHAIN: &str = "1.2.840.113556.1.4.1941";

/// A group's direct parents (groups it is a member of): (DN, name) pairs.
pub type Parents = Arc<[(String, String)]>;

/// Parents per group DN (lower-cased), shared by all users of the realm.
pub type ParentCache = StaleCache<String, Parents>;

/// The user's groups. `member_of` is the user entry's `memberOf` (may be empty).
pub async fn resolve(
    pool: &LdapPool,
    parents: &ParentCache,
    cfg: &LdapRealmConfig,
    user_dn: &str,
    member_of: &[String],
) -> Result<Vec<Group>, Unavailable> {
    let name_attr = cfg.group_name_attribute.as_str();
    match cfg.group_strategy {
        GroupStrategy::AdInChain => {
            let filter = format!(
                "(&{}({}:{IN_CHAIN}:={}))",
                cfg.group_filter,
                cfg.member_attribute,
                ldap_escape(user_dn)
            );
            let direct: HashSet<String> = member_of.iter().map(|d| d.to_lowercase()).collect();
            let entries = pool.search(&cfg.group_base, &filter, &[name_attr]).await?;
            Ok(entries
                .into_iter()
                .map(|e| Group {
                    name: first(&e.attrs, name_attr).unwrap_or_else(|| rdn_value(&e.dn)),
                    nested: !direct.contains(&e.dn.to_lowercase()),
                    dn: Some(e.dn),
                })
                .collect())
        }
        GroupStrategy::Memberof => {
            let direct = member_of
                .iter()
                .map(|dn| Group {
                    name: rdn_value(dn),
                    dn: Some(dn.clone()),
                    nested: false,
                })
                .collect();
            expand(pool, parents, cfg, direct).await
        }
        GroupStrategy::MemberSearch => {
            let filter = format!(
                "(&{}({}={}))",
                cfg.group_filter,
                cfg.member_attribute,
                ldap_escape(user_dn)
            );
            let direct = pool
                .search(&cfg.group_base, &filter, &[name_attr])
                .await?
                .into_iter()
                .map(|e| Group {
                    name: first(&e.attrs, name_attr).unwrap_or_else(|| rdn_value(&e.dn)),
                    dn: Some(e.dn),
                    nested: false,
                })
                .collect();
            expand(pool, parents, cfg, direct).await
        }
    }
}

/// Follows nesting level by level, cutting cycles and stopping at
/// `nested_depth`. Each group's parents come from the realm's parent cache:
/// one search per group per cache period, shared by every user in it, so a
/// new user whose groups are known costs no group search at all.
async fn expand(
    pool: &LdapPool,
    parents: &ParentCache,
    cfg: &LdapRealmConfig,
    direct: Vec<Group>,
) -> Result<Vec<Group>, Unavailable> {
    let mut seen: HashSet<String> = direct
        .iter()
        .filter_map(|g| g.dn.as_ref())
        .map(|d| d.to_lowercase())
        .collect();
    let mut frontier: Vec<String> = direct.iter().filter_map(|g| g.dn.clone()).collect();
    let mut out = direct;
    for _ in 0..cfg.nested_depth {
        if frontier.is_empty() {
            break;
        }
        let mut next = Vec::new();
        for dn in frontier {
            let (ps, _) = parents
                .get(dn.to_lowercase(), || direct_parents(pool, cfg, dn))
                .await?;
            for (pdn, name) in ps.iter() {
                if seen.insert(pdn.to_lowercase()) {
                    out.push(Group {
                        name: name.clone(),
                        dn: Some(pdn.clone()),
                        nested: true,
                    });
                    next.push(pdn.clone());
                }
            }
        }
        frontier = next;
    }
    Ok(out)
}

/// The groups that list `dn` as a member.
async fn direct_parents(
    pool: &LdapPool,
    cfg: &LdapRealmConfig,
    dn: String,
) -> Result<Parents, Unavailable> {
    let filter = format!(
        "(&{}({}={}))",
        cfg.group_filter,
        cfg.member_attribute,
        ldap_escape(dn.as_str())
    );
    let name_attr = cfg.group_name_attribute.as_str();
    Ok(pool
        .search(&cfg.group_base, &filter, &[name_attr])
        .await?
        .into_iter()
        .map(|e| {
            let name = first(&e.attrs, name_attr).unwrap_or_else(|| rdn_value(&e.dn));
            (e.dn, name)
        })
        .collect())
}

/// First value of an attribute, matching its name case-insensitively.
pub fn first(attrs: &std::collections::HashMap<String, Vec<String>>, name: &str) -> Option<String> {
    attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first().cloned())
}

/// All values of an attribute, matching its name case-insensitively.
pub fn all(attrs: &std::collections::HashMap<String, Vec<String>>, name: &str) -> Vec<String> {
    attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// The value of a DN's first RDN (`cn=Skype Users,ou=groups,...` → `Skype Users`),
/// with RFC 4514 escapes undone.
pub fn rdn_value(dn: &str) -> String {
    let mut out = Vec::new();
    let bytes = dn.as_bytes();
    let start = match dn.find('=') {
        Some(i) => i + 1,
        None => return dn.to_string(),
    };
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                if i + 1 >= bytes.len() {
                    break;
                }
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(bytes[i + 1]);
                        i += 2;
                    }
                }
            }
            b',' | b'+' => break,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::rdn_value;

    #[test]
    fn rdn_values() {
        assert_eq!(
            rdn_value("cn=Skype Users,ou=groups,dc=example,dc=test"),
            "Skype Users"
        );
        assert_eq!(rdn_value("CN=Smith\\, John,OU=x"), "Smith, John");
        assert_eq!(rdn_value("cn=a\\2Cb,dc=x"), "a,b");
        assert_eq!(rdn_value("cn=multi+uid=x,dc=x"), "multi");
        assert_eq!(rdn_value("cn=trailing\\"), "trailing");
        assert_eq!(rdn_value("noequals"), "noequals");
        assert_eq!(rdn_value(""), "");
    }
}
