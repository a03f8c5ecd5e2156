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
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use prefix_trie::joint::map::JointPrefixMap;
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

/// Domains (suffix lookups in a hash map) and ranges (a prefix trie) to
/// category names: a lookup costs the same for a big database as a small one.
#[derive(Default)]
pub struct Categories {
    domains: HashMap<String, Vec<Arc<str>>>,
    nets: JointPrefixMap<IpNet, Vec<Arc<str>>>,
}

impl std::fmt::Debug for Categories {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Categories")
            .field("domains", &self.domains.len())
            .field("nets", &self.nets.len())
            .finish()
    }
}

/// Why the category database could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CategoryError {
    /// The file could not be read.
    #[error("categories {}: {source}", path.display())]
    Read {
        /// The database file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid database.
    #[error("categories{}: {message}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Invalid {
        /// The database file, when read from one.
        path: Option<PathBuf>,
        /// What is wrong (TOML error, or the category and entry).
        message: String,
    },
}

fn invalid(message: String) -> CategoryError {
    CategoryError::Invalid {
        path: None,
        message,
    }
}

impl Categories {
    /// Reads and parses the database file.
    pub fn load(path: &Path) -> Result<Self, CategoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| CategoryError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            CategoryError::Invalid { message, .. } => CategoryError::Invalid {
                path: Some(path.to_path_buf()),
                message,
            },
            other => other,
        })
    }

    /// Parses a database from TOML text.
    pub fn parse(text: &str) -> Result<Self, CategoryError> {
        let file: CategoryFile =
            toml_edit::de::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut db = Categories::default();
        for (name, entry) in file.categories {
            let name: Arc<str> = name.into();
            for d in entry.domains {
                let d = d.trim_matches('.').to_ascii_lowercase();
                if d.is_empty() {
                    return Err(invalid(format!("category {name:?}: empty domain")));
                }
                db.domains.entry(d).or_default().push(name.clone());
            }
            for c in entry.cidrs {
                let net = c
                    .parse::<IpNet>()
                    .or_else(|_| c.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| invalid(format!("category {name:?}: {c:?} is not a CIDR")))?;
                let names = db.nets.entry(net.trunc()).or_insert_with(Vec::new);
                if !names.contains(&name) {
                    names.push(name.clone());
                }
            }
        }
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
            // Every range holding the address, the most specific first.
            let covering: Vec<_> = self.nets.cover(&IpNet::from(*ip)).collect();
            for (_, names) in covering.into_iter().rev() {
                names.iter().for_each(&mut push);
            }
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

    /// No domains and no ranges.
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

    #[test]
    fn every_covering_range_counts_most_specific_first() {
        let db = Categories::parse(
            "[categories.Wide]\ncidrs = [\"10.0.0.0/8\", \"10.1.0.0/16\"]\n\
             [categories.Narrow]\ncidrs = [\"10.1.0.0/16\", \"10.1.2.3\"]\n",
        )
        .unwrap();
        let names = |ip: &str| -> Vec<String> {
            db.lookup("x.test", &[ip.parse().unwrap()])
                .iter()
                .map(|c| c.to_string())
                .collect()
        };
        assert_eq!(names("10.1.2.3"), ["Narrow", "Wide"]);
        assert_eq!(names("10.1.9.9"), ["Narrow", "Wide"]);
        assert_eq!(names("10.9.9.9"), ["Wide"]);
        assert!(names("11.0.0.1").is_empty());
        let e = Categories::parse("[categories.x]\ncidrs = [\"nope\"]\n").unwrap_err();
        assert!(e.to_string().contains("\"nope\""), "{e}");
    }
}
