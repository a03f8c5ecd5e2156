//! Bodies that count their bytes, and the response body that writes the
//! transaction's access record once hyper is done with it.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::accesslog::{AccessLog, AccessRecord};

/// The client's request body on its way upstream, counted for `cs-bytes`.
pub struct RequestBody {
    inner: Incoming,
    count: Arc<AtomicU64>,
}

impl RequestBody {
    /// Counts the bytes of `inner` into `count` as they pass.
    pub fn new(inner: Incoming, count: Arc<AtomicU64>) -> Self {
        Self { inner, count }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let res = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &res {
            if let Some(d) = frame.data_ref() {
                self.count.fetch_add(d.len() as u64, Ordering::Relaxed);
            }
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Written to the access log when the response body is dropped: after the
/// last byte, or when the client went away mid-body.
pub struct Finish {
    /// The transaction's record.
    pub record: AccessRecord,
    /// Where it is written.
    pub log: AccessLog,
    /// Request body bytes, counted while they streamed upstream.
    pub cs_bytes: Option<Arc<AtomicU64>>,
}

/// Something that is busy while a request is in flight: told when the
/// response is done. (The connection state implements it; the body only
/// needs to know when to say so.)
pub trait Busy: Send + Sync + 'static {
    /// The request is finished: its response body is done or dropped.
    fn finished(&self);
}

/// A request in flight; says [`Busy::finished`] when dropped.
pub struct InFlight(std::sync::Arc<dyn Busy>);

impl InFlight {
    /// Marks `busy` as busy until the guard is dropped.
    pub fn new(busy: std::sync::Arc<dyn Busy>) -> Self {
        Self(busy)
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InFlight")
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.finished();
    }
}

enum Kind {
    Full(Option<Bytes>),
    Upstream(Incoming),
}

/// Every response the proxy sends.
pub struct ResponseBody {
    kind: Kind,
    sent: u64,
    finish: Option<Finish>,
    _in_flight: Option<InFlight>,
}

impl ResponseBody {
    /// A complete body held in memory (the proxy's own answers).
    pub fn full(bytes: Bytes) -> Self {
        Self::new(Kind::Full((!bytes.is_empty()).then_some(bytes)))
    }

    /// The origin's body, streamed.
    pub fn upstream(body: Incoming) -> Self {
        Self::new(Kind::Upstream(body))
    }

    fn new(kind: Kind) -> Self {
        Self {
            kind,
            sent: 0,
            finish: None,
            _in_flight: None,
        }
    }

    /// Attaches the transaction's record, to be logged when the body is done.
    pub fn logged(mut self, finish: Finish) -> Self {
        self.finish = Some(finish);
        self
    }

    /// Keeps the connection marked busy until the body is done.
    pub fn in_flight(mut self, guard: InFlight) -> Self {
        self._in_flight = Some(guard);
        self
    }
}

impl From<Bytes> for ResponseBody {
    fn from(b: Bytes) -> Self {
        Self::full(b)
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(mut f) = self.finish.take() {
            f.record.sc_bytes = self.sent;
            if let Some(cs) = &f.cs_bytes {
                f.record.cs_bytes = cs.load(Ordering::Relaxed);
            }
            f.log.write(f.record);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let res = match &mut self.kind {
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream(inc) => Pin::new(inc).poll_frame(cx),
        };
        if let Poll::Ready(Some(Ok(frame))) = &res {
            if let Some(d) = frame.data_ref() {
                self.sent += d.len() as u64;
            }
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Upstream(inc) => inc.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(inc) => inc.size_hint(),
        }
    }
}
