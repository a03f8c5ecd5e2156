//! `[accesslog]`.

use std::path::PathBuf;

use serde::Deserialize;

use crate::settings::{invalid, Invalid};

/// The access log's line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// ProxySG's ELFF (W3C extended), with a `#Fields` header.
    Elff,
    /// Squid's native format.
    Squid,
    /// One JSON object per line.
    Json,
}

/// `[accesslog]`: where transactions are logged, and how.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// A file path, or `-` for standard output.
    pub path: String,
    /// The line format.
    pub format: LogFormat,
    /// Lines queued for the writer; beyond this lines are dropped and counted,
    /// because the data path must never wait for a disk.
    pub queue: usize,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            path: "-".into(),
            format: LogFormat::Elff,
            queue: 65_536,
        }
    }
}

impl AccessLogConfig {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.path.is_empty() {
            return Err(invalid("accesslog.path", "a file path or '-' for stdout"));
        }
        if self.queue == 0 {
            return Err(invalid("accesslog.queue", "must be at least 1"));
        }
        Ok(())
    }

    /// The access log file, when it is a file.
    pub fn file(&self) -> Option<PathBuf> {
        (self.path != "-").then(|| PathBuf::from(&self.path))
    }
}
