//! Which list entry made a condition hold: carried in the [`Decision`]
//! (`crate::policy::Decision`) so `gatehouse explain` can say
//! `host .example.com from lists/blocked-domains.txt:1234`.

use std::fmt;
use std::sync::Arc;

/// A list file and line an entry was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySource {
    /// The file as the policy names it (`host_file = "..."`).
    pub file: Arc<str>,
    /// 1-based line number.
    pub line: u32,
}

/// The entry of a `host`, `sni`, `dest` or `client` condition that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedEntry {
    /// The rule field: `host`, `sni`, `dest` or `client`.
    pub field: &'static str,
    /// The entry as compiled: `example.com`, `.example.com`, `re:...`, `10.0.0.0/8`.
    pub pattern: String,
    /// Where it came from; `None` for an entry written in the policy file.
    pub source: Option<EntrySource>,
}

impl fmt::Display for MatchedEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.pattern)?;
        if let Some(s) = &self.source {
            write!(f, " from {}:{}", s.file, s.line)?;
        }
        Ok(())
    }
}

/// The list file a set was read from, if any; entries keep only their line
/// number (0 for an entry written in the policy), four bytes each.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The list file, as the policy names it; `None` for inline entries.
    pub file: Option<Arc<str>>,
}

impl Origin {
    /// The source of the entry at `line` (none for inline entries).
    pub fn at(&self, line: u32) -> Option<EntrySource> {
        let file = self.file.clone()?;
        (line != 0).then_some(EntrySource { file, line })
    }
}
