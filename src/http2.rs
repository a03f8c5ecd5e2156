//! `[http2]`: HTTP/2 where the proxy serves it — inside interception (the
//! client's decrypted connection) and, when enabled, on the TLS listener.
//! Every limit a hostile HTTP/2 client could push is set here explicitly,
//! rather than left to hyper's or h2's defaults, and one counter per
//! connection closes a client that keeps cancelling its own streams
//! (Rapid Reset, CVE-2023-44487, in the form h2's own counter misses: a
//! stream reset *after* the server accepted it).
//!
//! CONTINUATION floods are bounded by h2 itself (>= 0.4.4: the header list
//! is capped across frames, and too many CONTINUATION frames end the
//! connection with `ENHANCE_YOUR_CALM`); `max_header_list_size` is the cap.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::settings::{invalid, Invalid};

/// The ALPN id of HTTP/2 over TLS.
pub const ALPN_H2: &[u8] = b"h2";

/// HTTP/2's limits and where it is offered.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Http2Config {
    /// Offer `h2` to an intercepted client when it offers it and the origin
    /// chose it too (HTTP/2 end to end; otherwise HTTP/1.1 both sides).
    pub intercept: bool,
    /// Offer `h2` on the TLS listeners (`listener.tls_addresses`): CONNECT
    /// and absolute-form requests on streams. Off by default: NTLM cannot
    /// work over HTTP/2, and browsers change transport when it is offered.
    pub listener: bool,
    /// Streams one client connection may have open at once.
    pub max_concurrent_streams: u32,
    /// Decoded size of one header list (HPACK, all CONTINUATIONs together).
    pub max_header_list_size: u32,
    /// Largest frame payload the proxy accepts (16 KiB .. 16 MiB - 1).
    pub max_frame_size: u32,
    /// Flow-control window of each stream: bytes a client may send unread.
    pub initial_stream_window: u32,
    /// Flow-control window of the whole connection.
    pub initial_connection_window: u32,
    /// PINGs a quiet client connection this often (TLS listener only; an
    /// intercepted connection's silence is `tunnel.idle_timeout`'s).
    #[serde(with = "humantime_serde")]
    pub keep_alive_interval: Duration,
    /// A PING not answered within this closes the connection.
    #[serde(with = "humantime_serde")]
    pub keep_alive_timeout: Duration,
    /// Streams reset by the client before the proxy accepted them (h2's
    /// own Rapid Reset counter): beyond this, `GOAWAY ENHANCE_YOUR_CALM`.
    pub max_pending_accept_reset_streams: usize,
    /// Streams the proxy reset for the client's protocol errors, per
    /// connection: beyond this, `GOAWAY ENHANCE_YOUR_CALM`.
    pub max_local_error_reset_streams: usize,
    /// Streams the client cancels after the proxy accepted them, within
    /// `reset_window`: beyond this, the connection is closed.
    pub max_client_resets: u64,
    /// The window `max_client_resets` counts in.
    #[serde(with = "humantime_serde")]
    pub reset_window: Duration,
}

impl Default for Http2Config {
    fn default() -> Self {
        Self {
            intercept: true,
            listener: false,
            max_concurrent_streams: 100,
            max_header_list_size: 64 * 1024,
            max_frame_size: 16 * 1024,
            initial_stream_window: 1024 * 1024,
            initial_connection_window: 2 * 1024 * 1024,
            keep_alive_interval: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(20),
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 100,
            max_client_resets: 200,
            reset_window: Duration::from_secs(10),
        }
    }
}

impl Http2Config {
    /// Every limit within what HTTP/2 allows, and none zero.
    pub fn validate(&self) -> Result<(), Invalid> {
        const MAX_WINDOW: u32 = (1 << 31) - 1;
        if !(16_384..=16_777_215).contains(&self.max_frame_size) {
            return Err(invalid(
                "http2.max_frame_size",
                "must be 16384 .. 16777215 (RFC 9113 §6.5.2)",
            ));
        }
        for (key, w) in [
            ("http2.initial_stream_window", self.initial_stream_window),
            (
                "http2.initial_connection_window",
                self.initial_connection_window,
            ),
        ] {
            if !(65_535..=MAX_WINDOW).contains(&w) {
                return Err(invalid(key, "must be 65535 .. 2147483647"));
            }
        }
        if self.max_concurrent_streams == 0 {
            return Err(invalid(
                "http2.max_concurrent_streams",
                "must be at least 1",
            ));
        }
        if self.max_header_list_size < 1024 {
            return Err(invalid(
                "http2.max_header_list_size",
                "must be at least 1024",
            ));
        }
        if self.max_pending_accept_reset_streams == 0
            || self.max_local_error_reset_streams == 0
            || self.max_client_resets == 0
        {
            return Err(invalid("http2", "reset limits must be at least 1"));
        }
        crate::settings::nonzero(&[
            ("http2.keep_alive_interval", self.keep_alive_interval),
            ("http2.keep_alive_timeout", self.keep_alive_timeout),
            ("http2.reset_window", self.reset_window),
        ])
    }

    /// hyper's HTTP/2 server with these limits; `keep_alive`: PING quiet
    /// clients (not inside interception, where silence is the idle timeout's).
    pub fn server(&self, keep_alive: bool) -> http2::Builder<TokioExecutor> {
        let mut b = http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_concurrent_streams(self.max_concurrent_streams)
            .max_header_list_size(self.max_header_list_size)
            .max_frame_size(self.max_frame_size)
            .initial_stream_window_size(self.initial_stream_window)
            .initial_connection_window_size(self.initial_connection_window)
            .adaptive_window(false)
            .max_pending_accept_reset_streams(self.max_pending_accept_reset_streams)
            .max_local_error_reset_streams(self.max_local_error_reset_streams);
        if keep_alive {
            b.keep_alive_interval(self.keep_alive_interval)
                .keep_alive_timeout(self.keep_alive_timeout);
        }
        b
    }
}

/// One client connection's count of streams it cancelled after the proxy
/// accepted them; past the bound, `abuse` is cancelled and the connection
/// closes.
pub struct Resets {
    max: u64,
    window: Duration,
    count: Mutex<(Instant, u64)>,
    total: AtomicU64,
    /// Cancelled when the client has reset too many streams.
    pub abuse: CancellationToken,
}

impl Resets {
    /// A fresh count under `cfg`'s bound.
    pub fn new(cfg: &Http2Config) -> Arc<Self> {
        Arc::new(Self {
            max: cfg.max_client_resets,
            window: cfg.reset_window,
            count: Mutex::new((Instant::now(), 0)),
            total: AtomicU64::new(0),
            abuse: CancellationToken::new(),
        })
    }

    /// A stream begins: the returned guard counts a reset unless
    /// [`Stream::answered`] is called before it drops.
    pub fn stream(self: &Arc<Self>) -> Stream {
        Stream {
            resets: Some(self.clone()),
        }
    }

    /// Streams cancelled so far on this connection.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    fn cancelled(&self) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut c = self.count.lock().unwrap_or_else(|p| p.into_inner());
        if c.0.elapsed() > self.window {
            *c = (Instant::now(), 0);
        }
        c.1 += 1;
        if c.1 > self.max && !self.abuse.is_cancelled() {
            tracing::warn!(
                resets = c.1,
                window = ?self.window,
                "HTTP/2 client cancelled too many streams (Rapid Reset): connection closed"
            );
            self.abuse.cancel();
        }
    }
}

/// One stream's answer under way; dropped unanswered, it is a client reset.
pub struct Stream {
    resets: Option<Arc<Resets>>,
}

impl Stream {
    /// The service produced its answer: not a reset.
    pub fn answered(mut self) {
        self.resets = None;
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Some(r) = self.resets.take() {
            r.cancelled();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_limits_are_refused() {
        assert!(Http2Config::default().validate().is_ok());
        let bad = [
            Http2Config {
                max_frame_size: 1000,
                ..Default::default()
            },
            Http2Config {
                initial_stream_window: 1 << 31,
                ..Default::default()
            },
            Http2Config {
                max_concurrent_streams: 0,
                ..Default::default()
            },
            Http2Config {
                max_client_resets: 0,
                ..Default::default()
            },
        ];
        for b in bad {
            assert!(b.validate().is_err(), "{b:?}");
        }
    }

    #[test]
    fn cancelled_streams_past_the_bound_flag_the_connection() {
        let cfg = Http2Config {
            max_client_resets: 3,
            ..Default::default()
        };
        let r = Resets::new(&cfg);
        for _ in 0..10 {
            r.stream().answered();
        }
        assert!(!r.abuse.is_cancelled(), "answered streams are not resets");
        for _ in 0..3 {
            drop(r.stream());
        }
        assert!(!r.abuse.is_cancelled());
        drop(r.stream());
        assert!(r.abuse.is_cancelled());
        assert_eq!(r.total(), 4);
    }
}
