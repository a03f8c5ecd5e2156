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
    /// A file path, `-` for standard output, or `off` for no access log.
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
            return Err(invalid(
                "accesslog.path",
                "a file path, '-' for stdout or 'off'",
            ));
        }
        if self.queue == 0 {
            return Err(invalid("accesslog.queue", "must be at least 1"));
        }
        Ok(())
    }

    /// The access log file, when it is a file.
    pub fn file(&self) -> Option<PathBuf> {
        (!self.is_off() && self.path != "-").then(|| PathBuf::from(&self.path))
    }

    /// `path = "off"`: no line written, no writer started.
    pub fn is_off(&self) -> bool {
        self.path == OFF
    }
}

/// The `accesslog.path` that turns the log off (a file named so is `./off`).
pub const OFF: &str = "off";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_is_no_file() {
        let off = AccessLogConfig {
            path: "off".into(),
            ..AccessLogConfig::default()
        };
        assert!(off.validate().is_ok() && off.is_off() && off.file().is_none());
        let file = AccessLogConfig {
            path: "./off".into(),
            ..AccessLogConfig::default()
        };
        assert!(!file.is_off() && file.file().is_some());
    }
}
