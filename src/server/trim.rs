//! Memory given back after a burst of connections closes.
//!
//! glibc keeps what the worker threads freed in their arenas, and returns
//! only the top of each: after 10,000 tunnels closed, the proxy stayed at
//! its peak RSS (149 MB against an idle 14 MB). Every few seconds this looks
//! at how many connections are open and the most that were open at once
//! since its last look (a burst can come and go between two looks); when
//! the count has fallen to under half of its peak since the last trim (and
//! by more than a handful), it asks glibc
//! to give back every free page (`malloc_trim(0)`, see the `malloc-trim`
//! crate). Not on every close: under steady load the free pages are reused
//! at once, and giving them back would only cost page faults.

use std::time::Duration;

/// How often the open connections are counted.
pub(super) const EVERY: Duration = Duration::from_secs(5);

/// Below this many connections closed since the peak, nothing is trimmed:
/// a few connections' worth of memory is not worth the walk.
const AT_LEAST: usize = 256;

/// Whether to trim, and the peak to remember after this count.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Burst {
    /// The most connections open since the last trim.
    peak: usize,
}

impl Burst {
    /// Takes the most connections open at once since the last look and
    /// the count now; true when a burst has closed since the last trim (the
    /// peak is then reset to `open`).
    pub(super) fn closed(&mut self, (most, open): (usize, usize)) -> bool {
        self.peak = self.peak.max(most).max(open);
        let gone = self.peak - open;
        if gone >= AT_LEAST && open < self.peak / 2 {
            self.peak = open;
            return true;
        }
        false
    }
}

/// Looks at `peak()` (the most open since the last look, and open now)
/// every [`EVERY`] and trims after each burst, until dropped.
pub(super) async fn after_bursts(peak: impl Fn() -> (usize, usize)) {
    let mut burst = Burst::default();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if burst.closed(peak()) {
            // The walk can take a few ms on a large heap: off the workers.
            let gave_back = tokio::task::spawn_blocking(malloc_trim::trim).await;
            tracing::debug!(?gave_back, "memory trimmed after a burst closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Burst;

    #[test]
    fn trims_once_after_a_burst_closes() {
        let mut b = Burst::default();
        for open in [0, 10, 5000, 10_000] {
            assert!(!b.closed((open, open)), "rising: {open}");
        }
        assert!(!b.closed((6000, 6000)), "more than half still open");
        assert!(b.closed((6000, 100)), "the burst closed");
        assert!(!b.closed((100, 100)), "once per burst");
        assert!(!b.closed((100, 0)), "a hundred connections are not a burst");
    }

    #[test]
    fn a_burst_seen_only_as_a_peak_is_trimmed() {
        let mut b = Burst::default();
        assert!(!b.closed((0, 0)));
        assert!(b.closed((9000, 0)), "opened and closed between two looks");
        assert!(!b.closed((0, 0)));
    }

    #[test]
    fn small_swings_never_trim() {
        let mut b = Burst::default();
        for _ in 0..100 {
            assert!(!b.closed((200, 200)));
            assert!(!b.closed((200, 0)));
        }
    }
}
