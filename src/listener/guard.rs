//! The client socket as hyper sees it: every request head is checked by the
//! [`Framer`] before hyper reads it, and the connection's read timeouts live here.
//!
//! On a refused head the guard stops handing bytes to hyper (hyper sees a clean
//! end of stream after the last good request), and writes the error answer when
//! hyper shuts the connection down — after any response still being written, so
//! pipelined answers stay in order.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use crate::stream::ClientStream;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::framing::{Framer, Limits, Step};
use crate::conn::{ConnState, ConnectVerdict};
use crate::error::ProxyError;

const READ_CHUNK: usize = 4 * 1024;

/// Read timeouts the guard enforces while it frames requests.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// A started request head must be complete within this.
    pub header: Duration,
    /// No request in flight and no byte received for this long: close quietly.
    pub idle: Duration,
}

/// The client socket, seen through the framing guard: hyper reads only
/// heads the framer accepted, and the guard enforces the header and idle timeouts.
pub struct GuardedStream {
    inner: ClientStream,
    framer: Framer,
    held: BytesMut,
    /// Bytes at the front of `held` that are checked and may go to hyper.
    checked: usize,
    /// After a CONNECT head: raw pass-through.
    tunnel: bool,
    /// The answer to a refused head, and how much of it is written.
    answer: Option<(Vec<u8>, usize)>,
    timeouts: Timeouts,
    timer: Pin<Box<Sleep>>,
    last_read: Instant,
    /// When the head being read started. For the first request that is the
    /// moment of accept: a client that connects and says nothing gets
    /// `header_read_timeout`, not the much longer idle timeout.
    head_started: Option<Instant>,
    /// No request head has passed yet.
    fresh: bool,
    /// When the guard began waiting for the proxy's answer to a CONNECT.
    connect_since: Option<Instant>,
    conn: Arc<ConnState>,
}

impl GuardedStream {
    /// Guards `inner` with these limits and timeouts, the clocks started at
    /// `accepted` (a TLS client's handshake counts against the first head's
    /// `header_read_timeout`, as a plain client's silence does).
    pub fn new(
        inner: ClientStream,
        limits: Limits,
        timeouts: Timeouts,
        conn: Arc<ConnState>,
        accepted: Instant,
    ) -> Self {
        let now = accepted;
        Self {
            inner,
            framer: Framer::new(limits),
            held: BytesMut::with_capacity(READ_CHUNK),
            checked: 0,
            tunnel: false,
            answer: None,
            timeouts,
            timer: Box::pin(tokio::time::sleep_until(now + timeouts.idle)),
            last_read: now,
            head_started: Some(now),
            fresh: true,
            connect_since: None,
            conn,
        }
    }

    /// The socket and the client bytes read but not yet handed on, for a
    /// tunnel that relays the raw socket after hyper let go of it.
    pub fn into_parts(self) -> (ClientStream, BytesMut) {
        (self.inner, self.held)
    }

    fn refuse(&mut self, e: ProxyError) {
        self.answer = Some((e.to_wire(), 0));
        self.conn.set_framing_error(e);
    }

    /// The deadline that applies while waiting for bytes, and what it means.
    fn deadline(&self) -> (Instant, bool) {
        match self.head_started {
            Some(t) if self.framer.at_head() => (t + self.timeouts.header, true),
            _ => {
                let since = self.last_read.max(Instant::from_std(self.conn.last_done()));
                (since + self.timeouts.idle, false)
            }
        }
    }

    /// Waiting for the proxy's answer to a CONNECT is bounded too: the answer
    /// comes after authentication and the dial, each with its own timeout, so
    /// an answer later than the idle timeout means something is wedged.
    /// `Ready` means give up and end the stream.
    fn poll_connect_deadline(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let since = *self.connect_since.get_or_insert_with(Instant::now);
        let deadline = since + self.timeouts.idle;
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        self.timer.as_mut().poll(cx)
    }

    /// Called when the socket has nothing to read. `Ready` means end the stream.
    fn poll_timeout(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let (deadline, is_header) = self.deadline();
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            ready!(self.timer.as_mut().poll(cx));
            if is_header {
                self.refuse(ProxyError::HeaderTimeout);
                return Poll::Ready(());
            }
            if !self.conn.is_busy() && self.deadline().0 <= Instant::now() {
                return Poll::Ready(()); // idle keep-alive connection: close quietly
            }
            // Busy (a response is streaming) or activity moved the deadline: wait again.
            let later = Instant::now() + self.timeouts.idle;
            self.timer.as_mut().reset(later);
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.checked > 0 {
                let n = this.checked.min(dst.remaining());
                dst.put_slice(&this.held[..n]);
                this.held.advance(n);
                this.checked -= n;
                return Poll::Ready(Ok(()));
            }
            if this.tunnel {
                return Pin::new(&mut this.inner).poll_read(cx, dst);
            }
            if this.answer.is_some() {
                return Poll::Ready(Ok(())); // end of stream for hyper
            }
            if this.framer.awaiting_connect() {
                // Tunnel bytes or the next request? Only the proxy's answer says.
                match this.conn.take_connect_verdict(cx.waker()) {
                    ConnectVerdict::Pending => {
                        ready!(this.poll_connect_deadline(cx));
                        tracing::warn!(client = %this.conn.client, "no answer to a CONNECT within the idle timeout: connection closed");
                        // End of stream for hyper, nothing more written.
                        this.answer = Some((Vec::new(), 0));
                        return Poll::Ready(Ok(()));
                    }
                    v => {
                        this.connect_since = None;
                        this.framer.connect_answered(v == ConnectVerdict::Accepted)
                    }
                }
            }
            if this.framer.in_tunnel() {
                this.tunnel = true;
                this.checked = this.held.len();
                if this.held.is_empty() {
                    // A tunnel reads the socket directly: give the buffer back.
                    this.held = BytesMut::new();
                }
                continue;
            }
            if !this.held.is_empty() {
                match this.framer.step(&this.held) {
                    Step::Pass(n) => {
                        this.checked = n;
                        this.head_started = None;
                        this.fresh = false;
                        continue;
                    }
                    Step::Tunnel | Step::AwaitConnect => continue,
                    Step::Reject(e) => {
                        this.refuse(e);
                        continue;
                    }
                    Step::NeedMore => {}
                }
            }
            if this.framer.at_head() && this.held.is_empty() && !this.fresh {
                this.head_started = None;
            }
            this.held.reserve(READ_CHUNK);
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.held) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(_)) => {
                    this.last_read = Instant::now();
                    if this.framer.at_head() && this.head_started.is_none() {
                        this.head_started = Some(this.last_read);
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    ready!(this.poll_timeout(cx));
                    if this.answer.is_none() {
                        return Poll::Ready(Ok(())); // idle close
                    }
                }
            }
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    /// Writes the pending refusal, if any, before closing our side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some((bytes, written)) = &mut this.answer {
            while *written < bytes.len() {
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *written += n;
            }
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
