//! Request framing, sans I/O: where each request head starts and ends, and
//! how long its body is, so every head can be checked before hyper sees it.
//!
//! hyper answers a malformed head with a bare status and silently prefers
//! `Transfer-Encoding` over `Content-Length`. A proxy must instead refuse
//! ambiguous framing outright (request smuggling) and say why, so the bytes
//! from the client pass through this [`Framer`] first. It only *measures*: it
//! never rewrites a byte, and hyper still does the real parsing.

use crate::error::ProxyError;

/// Most header fields the framer will parse on the stack.
pub const HEADER_SLOTS: usize = 256;
/// Longest chunk-size line (with extensions) we accept.
const MAX_CHUNK_LINE: usize = 4096;
/// One `Proxy-Authorization` field (name, value, CRLF) may be this long
/// outside `listener.max_header_bytes`. Windows lets a Kerberos token grow to
/// MaxTokenSize, 65,535 bytes (a user in many groups carries a large PAC):
/// `Negotiate` and its base64 make that 87,380 characters, more than the
/// whole default head. Only this one field gets the room; every other field,
/// and the rest of the head, stay within the configured limit.
pub const MAX_PROXY_AUTHORIZATION: usize = 90 * 1024;

/// Limits the framer enforces on each request head.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Request line plus headers, in bytes.
    pub max_header_bytes: usize,
    /// Request-target length, in bytes.
    pub max_uri_bytes: usize,
    /// Most header fields in one request.
    pub max_headers: usize,
}

/// What the caller should do with the bytes it holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The first `n` bytes are checked: hand them on, then call again with the rest.
    Pass(usize),
    /// The held bytes are an incomplete unit: read more, keep them, call again.
    NeedMore,
    /// The bytes start a request we refuse. The connection is done.
    Reject(ProxyError),
    /// A CONNECT head went by: what follows is tunnel payload if the proxy
    /// answers 2xx, or the next request if it refuses. Call
    /// [`Framer::connect_answered`] before stepping again.
    AwaitConnect,
    /// The CONNECT was accepted: everything from here is tunnel payload.
    Tunnel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers { seen: usize },
    ConnectPending,
    Tunnel,
}

/// Tracks one client connection's request stream.
#[derive(Debug)]
pub struct Framer {
    limits: Limits,
    state: State,
}

impl Framer {
    /// A framer for one connection.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: State::Head,
        }
    }

    /// True between requests: the next byte starts a request head.
    pub fn at_head(&self) -> bool {
        self.state == State::Head
    }

    /// True after a CONNECT head, until [`Framer::connect_answered`].
    pub fn awaiting_connect(&self) -> bool {
        self.state == State::ConnectPending
    }

    /// True once a CONNECT was accepted.
    pub fn in_tunnel(&self) -> bool {
        self.state == State::Tunnel
    }

    /// The proxy's answer to the pending CONNECT: tunnel, or keep framing requests.
    pub fn connect_answered(&mut self, accepted: bool) {
        if self.state == State::ConnectPending {
            self.state = if accepted { State::Tunnel } else { State::Head };
        }
    }

    /// Examines `input` (the bytes held, starting at the current position).
    pub fn step(&mut self, input: &[u8]) -> Step {
        match self.state {
            State::Tunnel => Step::Tunnel,
            State::ConnectPending => Step::AwaitConnect,
            _ if input.is_empty() => Step::NeedMore,
            State::Head => self.head(input),
            State::Length(left) => {
                let n = left.min(input.len() as u64);
                self.state = if n == left {
                    State::Head
                } else {
                    State::Length(left - n)
                };
                Step::Pass(n as usize)
            }
            State::ChunkSize => self.chunk_size(input),
            State::ChunkData(left) => {
                let n = left.min(input.len() as u64);
                self.state = if n == left {
                    State::ChunkEnd
                } else {
                    State::ChunkData(left - n)
                };
                Step::Pass(n as usize)
            }
            State::ChunkEnd => match input {
                [b'\r', b'\n', ..] | [b'\n', ..] => {
                    self.state = State::ChunkSize;
                    Step::Pass(if input[0] == b'\r' { 2 } else { 1 })
                }
                [b'\r'] => Step::NeedMore,
                _ => Step::Reject(ProxyError::BadRequest("chunk data not followed by CRLF")),
            },
            State::Trailers { seen } => self.trailer_line(input, seen),
        }
    }

    fn head(&mut self, input: &[u8]) -> Step {
        // RFC 9112 §2.2: empty lines before a request line are ignored.
        let blank = input
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        if blank > 0 {
            return Step::Pass(blank);
        }
        let mut slots = [httparse::EMPTY_HEADER; HEADER_SLOTS];
        let slots = &mut slots[..self.limits.max_headers.min(HEADER_SLOTS)];
        let mut req = httparse::Request::new(slots);
        let len = match req.parse(input) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return self.partial_head(input),
            Err(httparse::Error::TooManyHeaders) => {
                return Step::Reject(ProxyError::HeaderTooLarge(self.limits.max_header_bytes))
            }
            Err(e) => return Step::Reject(ProxyError::BadRequest(parse_error(e))),
        };
        if let Err(e) = self.within_limit(&input[..len]) {
            return Step::Reject(e);
        }
        if req.path.map_or(0, str::len) > self.limits.max_uri_bytes {
            return Step::Reject(ProxyError::UriTooLong(self.limits.max_uri_bytes));
        }
        let framing = match body_framing(&req) {
            Ok(f) => f,
            Err(e) => return Step::Reject(e),
        };
        let is_connect = req.method == Some("CONNECT");
        // A CONNECT's body would be read by hyper while we wait for the
        // proxy's answer — tunnel bytes taken for a body, or a body taken for
        // the next request. Nobody sends one legitimately: refuse it.
        if is_connect && !matches!(framing, BodyFraming::None | BodyFraming::Length(0)) {
            return Step::Reject(ProxyError::BadRequest("CONNECT with a body"));
        }
        self.state = match framing {
            _ if is_connect => State::ConnectPending,
            BodyFraming::None | BodyFraming::Length(0) => State::Head,
            BodyFraming::Length(n) => State::Length(n),
            BodyFraming::Chunked => State::ChunkSize,
        };
        Step::Pass(len)
    }

    fn partial_head(&self, input: &[u8]) -> Step {
        let line_end = input.iter().position(|&b| b == b'\n');
        // The request line alone already exceeds what a URI may be.
        if line_end.is_none() && input.len() > self.limits.max_uri_bytes + 32 {
            return Step::Reject(ProxyError::UriTooLong(self.limits.max_uri_bytes));
        }
        match self.within_limit(input) {
            Ok(()) => Step::NeedMore,
            Err(e) => Step::Reject(e),
        }
    }

    /// A head (or the part of it read so far) is within the limit when,
    /// less its first `Proxy-Authorization` field (at most
    /// [`MAX_PROXY_AUTHORIZATION`]), it fits `max_header_bytes`.
    fn within_limit(&self, head: &[u8]) -> Result<(), ProxyError> {
        let max = self.limits.max_header_bytes;
        let too_large = ProxyError::HeaderTooLarge(max);
        if head.len() <= max {
            return Ok(());
        }
        let auth = proxy_authorization_len(head);
        if auth > MAX_PROXY_AUTHORIZATION || head.len() - auth > max {
            return Err(too_large);
        }
        Ok(())
    }

    fn chunk_size(&mut self, input: &[u8]) -> Step {
        let window = &input[..input.len().min(MAX_CHUNK_LINE)];
        let Some(nl) = window.iter().position(|&b| b == b'\n') else {
            return if input.len() >= MAX_CHUNK_LINE {
                Step::Reject(ProxyError::BadRequest("chunk-size line too long"))
            } else {
                Step::NeedMore
            };
        };
        match httparse::parse_chunk_size(&input[..=nl]) {
            Ok(httparse::Status::Complete((used, size))) if used == nl + 1 => {
                self.state = if size == 0 {
                    State::Trailers { seen: 0 }
                } else {
                    State::ChunkData(size)
                };
                Step::Pass(used)
            }
            _ => Step::Reject(ProxyError::BadRequest("invalid chunk size")),
        }
    }

    fn trailer_line(&mut self, input: &[u8], seen: usize) -> Step {
        let room = self.limits.max_header_bytes.saturating_sub(seen);
        let window = &input[..input.len().min(room)];
        let Some(nl) = window.iter().position(|&b| b == b'\n') else {
            return if input.len() >= room {
                Step::Reject(ProxyError::HeaderTooLarge(self.limits.max_header_bytes))
            } else {
                Step::NeedMore
            };
        };
        let line = &input[..=nl];
        self.state = if line == b"\r\n" || line == b"\n" {
            State::Head
        } else {
            State::Trailers {
                seen: seen + line.len(),
            }
        };
        Step::Pass(line.len())
    }
}

#[derive(Debug, PartialEq, Eq)]
enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// RFC 9112 §6: decides the body length, refusing anything ambiguous.
fn body_framing(req: &httparse::Request<'_, '_>) -> Result<BodyFraming, ProxyError> {
    let mut length: Option<u64> = None;
    let mut last_coding: Option<&[u8]> = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            for part in h.value.split(|&b| b == b',') {
                let n = parse_length(trim(part))
                    .ok_or(ProxyError::BadRequest("invalid Content-Length"))?;
                if length.is_some_and(|prev| prev != n) {
                    return Err(ProxyError::BadRequest("conflicting Content-Length values"));
                }
                length = Some(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if let Some(coding) = h.value.rsplit(|&b| b == b',').map(trim).next() {
                last_coding = Some(coding);
            }
        }
    }
    match (length, last_coding) {
        (Some(_), Some(_)) => Err(ProxyError::BadRequest(
            "both Content-Length and Transfer-Encoding",
        )),
        (None, Some(_)) if req.version == Some(0) => Err(ProxyError::BadRequest(
            "Transfer-Encoding in an HTTP/1.0 request",
        )),
        (None, Some(c)) if c.eq_ignore_ascii_case(b"chunked") => Ok(BodyFraming::Chunked),
        (None, Some(_)) => Err(ProxyError::BadRequest(
            "Transfer-Encoding whose final coding is not chunked",
        )),
        (Some(n), None) => Ok(BodyFraming::Length(n)),
        (None, None) => Ok(BodyFraming::None),
    }
}

/// The length of the first `Proxy-Authorization` field line of `head`
/// (what of it is there so far), 0 if none.
fn proxy_authorization_len(head: &[u8]) -> usize {
    const NAME: &[u8] = b"proxy-authorization:";
    // Lines after the request line, up to the blank line ending the head.
    let lines = head.split_inclusive(|&b| b == b'\n').skip(1);
    for line in lines {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        // The last line may still be arriving: a prefix of the name counts
        // (so a head is never refused on a prefix it would pass whole).
        let n = line.len().min(NAME.len());
        let arriving = !line.ends_with(b"\n");
        if line[..n].eq_ignore_ascii_case(&NAME[..n]) && (n == NAME.len() || arriving) {
            return line.len();
        }
    }
    0
}

fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &v[start..end]
}

fn parse_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status | httparse::Error::Token => "invalid request line",
        httparse::Error::Version => "unsupported HTTP version",
        httparse::Error::TooManyHeaders => "too many headers",
    }
}

#[cfg(test)]
#[path = "framing_tests.rs"]
mod tests;
