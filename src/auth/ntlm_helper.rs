//! A bounded pool of Samba `ntlm_auth --helper-protocol=squid-2.5-ntlmssp`
//! processes. NTLM is a three-message handshake whose middle state lives in
//! the helper, so a connection *leases* one helper from its type 1 to its
//! type 3. Every exchange has a timeout; a helper that crashes, hangs or says
//! `BH` is killed and replaced on demand; when all are leased, new handshakes
//! wait a bounded time, then get a clear 503 — never a hang.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::settings::NtlmConfig;
use crate::limit::{Counted, PerAddress};

/// What a helper answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `TT <type 2>`: the challenge to send the client.
    Challenge(String),
    /// `AF DOMAIN\user`: the domain accepted the response.
    Accepted(String),
    /// `NA <reason>`: refused (wrong password, unknown user...).
    Refused(String),
}

/// Why a helper gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelperError {
    /// Every helper is leased and none came free within `queue_timeout`.
    #[error("all {0} NTLM helpers busy (too many handshakes queued)")]
    Busy(usize),
    /// The helper crashed, hung, or said something we do not understand.
    #[error("NTLM helper failed: {0}")]
    Broken(String),
}

struct Helper {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// Up to `max_helpers` helper processes, started on demand and reused.
pub struct HelperPool {
    command: Vec<String>,
    max: usize,
    slots: Arc<Semaphore>,
    idle: Mutex<Vec<Helper>>,
    timeout: Duration,
    queue_timeout: Duration,
    /// Helper processes started so far (replacements included).
    pub spawned: AtomicU64,
    /// Handshakes between type 1 and type 3, per client address.
    pub pending: Arc<PerAddress>,
}

/// A helper held by one connection's handshake.
pub struct Lease {
    pool: Arc<HelperPool>,
    helper: Option<Helper>,
    /// Between YR and a final answer the helper holds handshake state: not reusable.
    mid_handshake: bool,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("mid_handshake", &self.mid_handshake)
            .finish_non_exhaustive()
    }
}

impl HelperPool {
    /// A pool for `auth.ntlm`; no helper starts until the first handshake.
    pub fn new(cfg: &NtlmConfig) -> Arc<Self> {
        Arc::new(Self {
            command: cfg.helper.clone(),
            max: cfg.max_helpers,
            slots: Arc::new(Semaphore::new(cfg.max_helpers)),
            idle: Mutex::new(Vec::new()),
            timeout: cfg.helper_timeout,
            queue_timeout: cfg.queue_timeout,
            spawned: AtomicU64::new(0),
            pending: PerAddress::counting(Counted::PendingNtlm, cfg.max_pending_per_address),
        })
    }

    /// A helper for one handshake, waiting at most `queue_timeout` for one.
    pub async fn lease(self: &Arc<Self>) -> Result<Lease, HelperError> {
        let permit = tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| HelperError::Busy(self.max))?
            .map_err(|_| HelperError::Busy(self.max))?;
        // An idle helper may have died (crashed, killed): skip the dead ones.
        let helper = loop {
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match idle {
                Some(mut h) => {
                    if matches!(h.child.try_wait(), Ok(None)) {
                        break h;
                    }
                    tracing::warn!("an idle NTLM helper had exited: replaced");
                }
                None => break self.spawn()?,
            }
        };
        Ok(Lease {
            pool: self.clone(),
            helper: Some(helper),
            mid_handshake: false,
            _permit: permit,
        })
    }

    /// `max_helpers`: helpers at most.
    pub fn size(&self) -> usize {
        self.max
    }

    /// Helpers that could be leased now (not held by a handshake).
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }

    /// A lease with no helper process behind it (its `ask` fails), for tests
    /// of what holds leases.
    #[cfg(test)]
    pub(crate) async fn lease_without_helper(self: &Arc<Self>) -> Lease {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        Lease {
            pool: self.clone(),
            helper: None,
            mid_handshake: false,
            _permit: permit,
        }
    }

    fn spawn(&self) -> Result<Helper, HelperError> {
        let (prog, args) = self
            .command
            .split_first()
            .ok_or_else(|| HelperError::Broken("empty helper command".into()))?;
        let mut child = Command::new(prog)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| HelperError::Broken(format!("cannot start {prog}: {e}")))?;
        self.spawned.fetch_add(1, Ordering::Relaxed);
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| HelperError::Broken("no stdin".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| HelperError::Broken("no stdout".into()))?;
        Ok(Helper {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }
}

impl Lease {
    /// One request/answer with the helper (`YR <b64>` or `KK <b64>`).
    pub async fn ask(&mut self, request: &str) -> Result<Reply, HelperError> {
        let Some(helper) = self.helper.as_mut() else {
            return Err(HelperError::Broken("helper already failed".into()));
        };
        self.mid_handshake = true;
        let exchange = async {
            helper.stdin.write_all(request.as_bytes()).await?;
            helper.stdin.write_all(b"\n").await?;
            helper.stdin.flush().await?;
            let mut line = String::new();
            let n = helper.stdout.read_line(&mut line).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "helper exited",
                ));
            }
            Ok(line)
        };
        let line = match tokio::time::timeout(self.pool.timeout, exchange).await {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => return Err(self.broken(e.to_string())),
            Err(_) => return Err(self.broken(format!("no answer within {:?}", self.pool.timeout))),
        };
        let line = line.trim_end();
        let (code, rest) = line.split_once(' ').unwrap_or((line, ""));
        match code {
            "TT" => Ok(Reply::Challenge(rest.to_string())),
            "AF" => {
                self.mid_handshake = false;
                Ok(Reply::Accepted(rest.to_string()))
            }
            "NA" => {
                self.mid_handshake = false;
                Ok(Reply::Refused(rest.to_string()))
            }
            _ => Err(self.broken(format!("{code} {rest}"))),
        }
    }

    /// Kills the helper (dropping it); the pool starts a new one when needed.
    fn broken(&mut self, why: String) -> HelperError {
        self.helper = None;
        tracing::warn!(reason = %why, "NTLM helper replaced");
        HelperError::Broken(why)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // A helper left mid-handshake holds state we cannot reset: let it go.
        if let Some(h) = self.helper.take() {
            if !self.mid_handshake {
                self.pool
                    .idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(h);
            }
        }
    }
}
