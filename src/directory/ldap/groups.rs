//! Group membership, direct and nested, by the realm's strategy.

use std::collections::HashSet;

use ldap3::ldap_escape;

use super::pool::LdapPool;
use crate::auth::identity::Group;
use crate::directory::cache::Unavailable;
use crate::directory::config::{GroupStrategy, LdapRealmConfig};

/// AD's LDAP_MATCHING_RULE_IN_CHAIN: membership through any depth of nesting.
const IN_CHAIN: &str = "1.2.840.113556.1.4.1941";
/// Group DNs per OR-filter when expanding a nesting level.
const FILTER_BATCH: usize = 50;

/// The user's groups. `member_of` is the user entry's `memberOf` (may be empty).
pub async fn resolve(
    pool: &LdapPool,
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
            expand(pool, cfg, direct).await
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
            expand(pool, cfg, direct).await
        }
    }
}

/// Follows nesting level by level (one search per level and batch), cutting
/// cycles and stopping at `nested_depth`.
async fn expand(
    pool: &LdapPool,
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
        for batch in frontier.chunks(FILTER_BATCH) {
            let any: String = batch
                .iter()
                .map(|dn| format!("({}={})", cfg.member_attribute, ldap_escape(dn.as_str())))
                .collect();
            let filter = format!("(&{}(|{any}))", cfg.group_filter);
            for e in pool
                .search(
                    &cfg.group_base,
                    &filter,
                    &[cfg.group_name_attribute.as_str()],
                )
                .await?
            {
                if seen.insert(e.dn.to_lowercase()) {
                    out.push(Group {
                        name: first(&e.attrs, &cfg.group_name_attribute)
                            .unwrap_or_else(|| rdn_value(&e.dn)),
                        dn: Some(e.dn.clone()),
                        nested: true,
                    });
                    next.push(e.dn);
                }
            }
        }
        frontier = next;
    }
    Ok(out)
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
