//! List files named by the policy's objects (`host_file`, `dest_file`):
//! one entry a line, `#` starts a comment, blank lines are skipped — the
//! format Squid's `dstdomain "file"` and `dst "file"` read, so one file can
//! feed both. Read whole or refused: a malformed line names file and line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::entry::Origin;
use super::hosts::{HostSet, Pattern};
use super::nets::{parse_net, NetSet};

/// A list file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The file could not be read.
    #[error("object {object:?}: {}: {source}", file.display())]
    Read {
        /// The object that names the file.
        object: String,
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not an entry of its kind.
    #[error("object {object:?}: {}:{line}: {message}", file.display())]
    Line {
        /// The object that names the file.
        object: String,
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: u32,
        /// What is wrong with it.
        message: String,
    },
}

/// The entries of a list file, each with its 1-based line number.
fn entries(text: &str) -> impl Iterator<Item = (u32, &str)> {
    text.lines().enumerate().filter_map(|(i, l)| {
        let entry = l.split('#').next().unwrap_or("").trim();
        (!entry.is_empty()).then_some((i as u32 + 1, entry))
    })
}

fn read(object: &str, path: &Path) -> Result<String, ListError> {
    std::fs::read_to_string(path).map_err(|source| ListError::Read {
        object: object.to_string(),
        file: path.to_path_buf(),
        source,
    })
}

/// Reads a `host_file`: names and `.suffix`es (no regexes: a list is a set).
/// `shown` is the path as the policy writes it, for `explain`.
pub fn read_hosts(object: &str, path: &Path, shown: &str) -> Result<HostSet, ListError> {
    let text = read(object, path)?;
    let (mut exact, mut suffix) = (0, 0);
    for (_, entry) in entries(&text) {
        if entry.starts_with('.') {
            suffix += 1;
        } else {
            exact += 1;
        }
    }
    let mut set = HostSet::with_capacity(exact, suffix);
    set.origin = Origin {
        file: Some(Arc::from(shown)),
    };
    for (line, entry) in entries(&text) {
        let bad = |message: String| ListError::Line {
            object: object.to_string(),
            file: path.to_path_buf(),
            line,
            message,
        };
        if entry.starts_with("re:") {
            return Err(bad(
                "regexes belong in the policy file; a list holds names and .domains".into(),
            ));
        }
        set.insert(Pattern::parse(entry).map_err(bad)?, line);
    }
    set.finish().expect("a list file holds no regexes");
    Ok(set)
}

/// Reads a `dest_file`: addresses and CIDRs.
pub fn read_nets(object: &str, path: &Path, shown: &str) -> Result<NetSet, ListError> {
    let text = read(object, path)?;
    let mut set = NetSet::default();
    set.origin = Origin {
        file: Some(Arc::from(shown)),
    };
    for (line, entry) in entries(&text) {
        let net = parse_net(entry).map_err(|message| ListError::Line {
            object: object.to_string(),
            file: path.to_path_buf(),
            line,
            message,
        })?;
        set.insert(net, line);
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_blank_lines_and_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hosts.txt");
        std::fs::write(&p, "# feed\n\nExample.COM.\n  .ads.test   # trailing\n").unwrap();
        let set = read_hosts("blocked", &p, "lists/hosts.txt").unwrap();
        assert_eq!(set.len(), 2);
        let e = set.entry("host", "x.ads.test").unwrap();
        assert_eq!(e.to_string(), "host .ads.test from lists/hosts.txt:4");
        assert_eq!(set.find("example.com").unwrap().1, 3);

        std::fs::write(&p, "ok.test\nbad name.test\n").unwrap();
        let e = read_hosts("blocked", &p, "x").unwrap_err().to_string();
        assert!(
            e.contains("object \"blocked\"") && e.contains("hosts.txt:2:"),
            "{e}"
        );
        std::fs::write(&p, "re:.*\n").unwrap();
        let e = read_hosts("blocked", &p, "x").unwrap_err().to_string();
        assert!(e.contains("hosts.txt:1:"), "{e}");

        std::fs::write(&p, "10.0.0.0/8\n# x\n192.0.2.7\n2001:db8::/32\nnope\n").unwrap();
        let e = read_nets("nets", &p, "x").unwrap_err().to_string();
        assert!(e.contains("hosts.txt:5:") && e.contains("\"nope\""), "{e}");
        let e = read_nets("nets", &dir.path().join("absent"), "x").unwrap_err();
        assert!(matches!(e, ListError::Read { .. }), "{e}");
    }
}
