//! Work an unauthenticated client can trigger that blocks a thread or burns
//! CPU — argon2 password checks, GSS validations — runs on tokio's blocking
//! pool behind a fixed number of permits. The permit moves into the blocking
//! task: it is held as long as the work runs, even when the client that asked
//! has gone (a dropped request future does not stop a blocking task, so a
//! permit released with the future would let a reconnecting client start
//! unbounded work). A caller waits at most `wait` for a permit, then gets
//! [`SlotError::Busy`]: a clear 503, never a queue that grows with the attack.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// Why bounded blocking work did not run or did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// No permit came free within the wait; carries the number of permits.
    #[error("all {0} slots busy")]
    Busy(usize),
    /// The blocking task panicked or was cancelled.
    #[error("blocking task failed: {0}")]
    Failed(String),
}

/// A fixed number of concurrent blocking tasks.
#[derive(Debug)]
pub struct BlockingSlots {
    slots: Arc<Semaphore>,
    size: usize,
    wait: Duration,
}

impl BlockingSlots {
    /// `size` tasks at once; a caller waits at most `wait` for a permit.
    pub fn new(size: usize, wait: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(size)),
            size,
            wait,
        }
    }

    /// Runs `work` on the blocking pool once a permit is free (waiting at
    /// most the configured time); the permit is released when `work` returns.
    pub async fn run<T, F>(&self, work: F) -> Result<T, SlotError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permit = tokio::time::timeout(self.wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| SlotError::Busy(self.size))?
            .map_err(|_| SlotError::Busy(self.size))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| SlotError::Failed(e.to_string()))
    }

    /// Permits free now.
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }

    /// Permits in all.
    pub fn size(&self) -> usize {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn the_permit_lives_as_long_as_the_work_not_the_caller() {
        let slots = Arc::new(BlockingSlots::new(1, Duration::from_millis(50)));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let s = slots.clone();
        let caller = tokio::spawn(async move {
            s.run(move || {
                let _ = started_tx.send(());
                let _ = gate.recv();
            })
            .await
        });
        started.await.unwrap();
        // The client goes away while the work still runs.
        caller.abort();
        let _ = caller.await;
        assert_eq!(slots.available(), 0, "permit released with the caller");
        assert_eq!(slots.run(|| ()).await, Err(SlotError::Busy(1)));
        release.send(()).unwrap();
        // Once the work ends the permit comes back.
        assert_eq!(slots.run(|| 7).await, Ok(7));
    }
}
