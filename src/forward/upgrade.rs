//! A protocol upgrade carried through: which ones pass ([`admit`]), the
//! upgrade headers put back on both hops after the hop-by-hop strip
//! ([`Kept`]), and the relay of the two upgraded connections after the
//! origin's `101` ([`relay`]) — under a tunnel's bounds: its idle timeout,
//! the shutdown's hard stop, and fixed buffers.
//!
//! Used alike by plain HTTP, by interception and by HTTP found inside a
//! CONNECT, so a WebSocket is treated the same on each path.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use http::Uri;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::accesslog::AccessRecord;
use crate::error::ProxyError;
use crate::outcome::{ExceptionId, SAction};
use crate::tunnel::relay::{End, Outcome};
use crate::upgrade::{self, Offer};

/// Whether an offered upgrade may go to the origin: `h2c` never (its
/// frames would carry requests no rule sees), `websocket` always (the
/// request was judged as any other), another protocol only when the rule
/// that allowed the request lists it (`by_rule`: its verdict came from a
/// rule with an `upgrade` condition, which matched every offered token).
pub fn admit(offer: &Offer, by_rule: bool) -> Result<(), ProxyError> {
    if offer.h2c() {
        return Err(ProxyError::UpgradeRefused("h2c".into()));
    }
    if offer.is_websocket() || by_rule {
        return Ok(());
    }
    Err(ProxyError::UpgradeRefused(offer.names()))
}

/// The upgrade a request asks for, judged by [`admit`]: `Ok(None)` when
/// it asks none.
pub fn judge(headers: &HeaderMap, by_rule: bool) -> Result<Option<Offer>, ProxyError> {
    let offer = upgrade::offered(headers)
        .map_err(|_| ProxyError::BadRequest("an Upgrade header that names no protocol"))?;
    if let Some(o) = &offer {
        admit(o, by_rule)?;
    }
    Ok(offer)
}

/// The `http://` URI a WebSocket request's `ws://` target stands for
/// (RFC 6455 §3); `None` for any other target or request. `wss://` is not
/// mapped: a client reaches a TLS origin through a CONNECT.
pub fn ws_as_http(uri: &Uri, headers: &HeaderMap) -> Option<Uri> {
    if !uri.scheme_str()?.eq_ignore_ascii_case("ws") {
        return None;
    }
    match upgrade::offered(headers) {
        Ok(Some(o)) if o.is_websocket() => {}
        _ => return None,
    }
    let mut parts = uri.clone().into_parts();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    Uri::from_parts(parts).ok()
}

/// A message's `Upgrade` values, kept across the hop-by-hop strip.
#[derive(Debug, Clone, Default)]
pub struct Kept(Vec<HeaderValue>);

impl Kept {
    /// The `Upgrade` values of a message that asks for (or, a `101`, agrees
    /// to) an upgrade; none otherwise.
    pub fn from(headers: &HeaderMap) -> Self {
        match upgrade::offered(headers) {
            Ok(Some(_)) => Kept(headers.get_all(UPGRADE).iter().cloned().collect()),
            _ => Kept::default(),
        }
    }

    /// Puts `Connection: upgrade` and the kept `Upgrade` back (after
    /// [`super::headers::strip_hop_by_hop`]); the `Sec-WebSocket-*`
    /// headers are end to end and were never stripped.
    pub fn restore(self, headers: &mut HeaderMap) {
        if self.0.is_empty() {
            return;
        }
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        for v in self.0 {
            headers.append(UPGRADE, v);
        }
    }

    /// Nothing was kept: the message asks no upgrade.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How long both sides may take to hand over their upgraded connections
/// after the `101` (hyper writes it, then lets go of each socket).
pub const HANDOVER: Duration = Duration::from_secs(10);

/// Bytes each direction's copy holds: a fixed bound per relay.
const BUFFER: usize = 16 * 1024;

/// Relays the upgraded `client` and `server` until both have closed, no
/// byte has moved either way for `idle`, or `stop` is cancelled (the
/// shutdown's hard stop): a tunnel's bounds. `pending` are client bytes
/// already read past the upgrade request, sent first.
pub async fn relay<C, S>(
    client: C,
    pending: Vec<u8>,
    server: S,
    idle: Duration,
    stop: CancellationToken,
) -> Outcome
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last_ms = Arc::new(AtomicU64::new(0));
    let up = Arc::new(AtomicU64::new(0));
    let down = Arc::new(AtomicU64::new(0));
    let mut client = Counted::new(client, up.clone(), start, last_ms.clone());
    let mut server = Counted::new(server, down.clone(), start, last_ms.clone());
    let end = {
        let both = async {
            if !pending.is_empty() {
                tokio::io::AsyncWriteExt::write_all(&mut server, &pending).await?;
                up.fetch_add(pending.len() as u64, Ordering::Relaxed);
            }
            tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, BUFFER, BUFFER).await
        };
        tokio::pin!(both);
        loop {
            let last = start + Duration::from_millis(last_ms.load(Ordering::Relaxed));
            tokio::select! {
                res = &mut both => break if res.is_ok() { End::Closed } else { End::Error },
                () = tokio::time::sleep_until(last + idle) => {
                    let now_last = start + Duration::from_millis(last_ms.load(Ordering::Relaxed));
                    if now_last + idle <= Instant::now() {
                        break End::Idle;
                    }
                }
                () = stop.cancelled() => break End::Shutdown,
            }
        }
    };
    Outcome {
        client_to_server: up.load(Ordering::Relaxed),
        server_to_client: down.load(Ordering::Relaxed),
        end,
    }
}

/// Fills an upgraded request's record at the relay's end: the bytes both
/// ways (`sent`: the request's own body, counted on its way up), an idle
/// end, or a hand-over that failed (`out` is `None`).
pub fn ended(record: &mut AccessRecord, sent: u64, out: Option<Outcome>) {
    match out {
        Some(out) => {
            record.cs_bytes = sent + out.client_to_server;
            record.sc_bytes = out.server_to_client;
            if out.end == End::Idle {
                record.exception_id = Some(ExceptionId::TunnelIdleTimeout);
            }
        }
        None => {
            record.cs_bytes = sent;
            record.action = SAction::TcpErrMiss;
            record.exception_id = Some(ExceptionId::TcpError);
        }
    }
}

/// A side of the relay that counts the bytes read from it (the bytes that
/// then go the other way) and notes when any moved.
struct Counted<T> {
    inner: T,
    read: Arc<AtomicU64>,
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl<T> Counted<T> {
    fn new(inner: T, read: Arc<AtomicU64>, start: Instant, last_ms: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            read,
            start,
            last_ms,
        }
    }

    fn moved(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.read.fetch_add(n as u64, Ordering::Relaxed);
            self.moved();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upgrade::Token;

    fn offer(tokens: &[Token]) -> Offer {
        Offer {
            tokens: tokens.to_vec(),
        }
    }

    #[test]
    fn h2c_never_websocket_always_others_by_rule() {
        let other = Token::Other("foo".into());
        assert!(admit(&offer(&[Token::H2c]), true).is_err());
        assert!(admit(&offer(&[Token::WebSocket, Token::H2c]), true).is_err());
        assert!(admit(&offer(&[Token::WebSocket]), false).is_ok());
        assert!(admit(&offer(std::slice::from_ref(&other)), true).is_ok());
        assert_eq!(
            admit(&offer(&[Token::WebSocket, other]), false),
            Err(ProxyError::UpgradeRefused("websocket, foo".into()))
        );
    }

    #[test]
    fn kept_upgrade_survives_the_strip() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade, x-secret"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("sec-websocket-key", HeaderValue::from_static("k"));
        let kept = Kept::from(&h);
        super::super::headers::strip_hop_by_hop(&mut h);
        kept.restore(&mut h);
        assert_eq!(h.get(CONNECTION).unwrap(), "upgrade");
        assert_eq!(h.get(UPGRADE).unwrap(), "websocket");
        assert!(h.contains_key("sec-websocket-key") && !h.contains_key("x-secret"));
        // Without `Connection: upgrade`, `Upgrade` is only dropped.
        let mut h = HeaderMap::new();
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        let kept = Kept::from(&h);
        assert!(kept.is_empty());
        super::super::headers::strip_hop_by_hop(&mut h);
        kept.restore(&mut h);
        assert!(h.is_empty());
    }

    #[test]
    fn a_websocket_ws_target_is_its_http_url() {
        let mut h = HeaderMap::new();
        let ws: Uri = "ws://Chat.example:8080/room?x=1".parse().unwrap();
        assert_eq!(ws_as_http(&ws, &h), None, "not an upgrade");
        h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        let http = ws_as_http(&ws, &h).unwrap();
        assert_eq!(http.to_string(), "http://Chat.example:8080/room?x=1");
        for other in ["wss://a/", "http://a/", "ftp://a/"] {
            assert_eq!(ws_as_http(&other.parse().unwrap(), &h), None, "{other}");
        }
        h.insert(UPGRADE, HeaderValue::from_static("foo"));
        assert_eq!(ws_as_http(&ws, &h), None, "only a WebSocket");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_upgraded_pair_is_cut_at_the_idle_timeout() {
        let (client, _client_peer) = tokio::io::duplex(64);
        let (server, _server_peer) = tokio::io::duplex(64);
        let out = relay(
            client,
            b"hi".to_vec(),
            server,
            Duration::from_secs(5),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(out.end, End::Idle);
        assert_eq!((out.client_to_server, out.server_to_client), (2, 0));
    }
}
