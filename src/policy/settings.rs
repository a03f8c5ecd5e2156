//! `[policy]`: where the policy comes from.

use std::path::PathBuf;

use serde::Deserialize;

/// Where the policy comes from. The policy (file, categories, shortcuts) is
/// what SIGHUP reloads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Policy file (layers of rules); without one, every authenticated request is allowed.
    pub file: Option<PathBuf>,
    /// Category database (domains and CIDRs → category names).
    pub categories: Option<PathBuf>,
    /// Members of these groups get a raw tunnel for a CONNECT without User-Agent.
    pub allowed_groups: Vec<String>,
    /// ... and so do these users.
    pub allowed_users: Vec<String>,
}
