//! The local category database: domain suffixes and CIDRs mapped to names
//! such as "Internet Telephony", used in rules and written to `cs-categories`.
//!
//! ```toml
//! [categories."Internet Telephony"]
//! domains = ["skype.com", "lync.com"]   # the domain and every subdomain
//! cidrs = ["157.55.0.0/16"]
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CategoryFile {
    #[serde(default)]
    categories: BTreeMap<String, Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    cidrs: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Categories {
    domains: HashMap<String, Vec<Arc<str>>>,
    nets: Vec<(IpNet, Arc<str>)>,
}

impl Categories {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("categories {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("categories {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let file: CategoryFile = toml_edit::de::from_str(text).map_err(|e| e.to_string())?;
        let mut db = Categories::default();
        for (name, entry) in file.categories {
            let name: Arc<str> = name.into();
            for d in entry.domains {
                let d = d.trim_matches('.').to_ascii_lowercase();
                if d.is_empty() {
                    return Err(format!("category {name:?}: empty domain"));
                }
                db.domains.entry(d).or_default().push(name.clone());
            }
            for c in entry.cidrs {
                let net = c
                    .parse::<IpNet>()
                    .or_else(|_| c.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("category {name:?}: {c:?} is not a CIDR"))?;
                db.nets.push((net.trunc(), name.clone()));
            }
        }
        // Longest prefix first, so the most specific range is listed first.
        db.nets
            .sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        Ok(db)
    }

    /// Categories of a destination: by its name's suffixes and by every
    /// address it resolved to (an address literal is its own only address).
    pub fn lookup(&self, host: &str, addrs: &[IpAddr]) -> Vec<Arc<str>> {
        let mut out: Vec<Arc<str>> = Vec::new();
        let mut push = |c: &Arc<str>| {
            if !out.contains(c) {
                out.push(c.clone());
            }
        };
        for ip in addrs {
            self.nets
                .iter()
                .filter(|(n, _)| n.contains(ip))
                .for_each(|(_, c)| push(c));
        }
        if host.parse::<IpAddr>().is_ok() {
            return out;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let mut rest = host.as_str();
        loop {
            if let Some(cats) = self.domains.get(rest) {
                cats.iter().for_each(&mut push);
            }
            match rest.split_once('.') {
                Some((_, tail)) => rest = tail,
                None => break,
            }
        }
        out
    }

    /// Does any category list address ranges?
    pub fn has_ranges(&self) -> bool {
        !self.nets.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty() && self.nets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_and_ranges() {
        let db = Categories::parse(
            "[categories.\"Internet Telephony\"]\ndomains = [\".skype.com\"]\ncidrs = [\"157.55.0.0/16\", \"111.221.77.1\"]\n\
             [categories.Microsoft]\ndomains = [\"microsoft.com\", \"skype.com\"]\n",
        )
        .unwrap();
        let names = |h: &str| {
            let addrs: Vec<IpAddr> = h.parse().into_iter().collect();
            db.lookup(h, &addrs)
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names("ui.Skype.com."),
            vec!["Internet Telephony", "Microsoft"]
        );
        assert_eq!(names("skype.com"), vec!["Internet Telephony", "Microsoft"]);
        assert!(names("notskype.com").is_empty());
        assert_eq!(names("157.55.56.152"), vec!["Internet Telephony"]);
        assert_eq!(names("111.221.77.1"), vec!["Internet Telephony"]);
        assert!(names("111.221.77.2").is_empty());
        // A name is also categorised by the addresses it resolved to.
        let by_addr = db.lookup("example.test", &["157.55.1.1".parse().unwrap()]);
        assert_eq!(by_addr, vec![Arc::<str>::from("Internet Telephony")]);
        assert!(db.has_ranges());
        assert!(Categories::parse("[categories.x]\ncidrs = [\"nope\"]\n").is_err());
    }
}
