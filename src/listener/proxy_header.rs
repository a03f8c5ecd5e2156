//! The PROXY protocol header a load balancer puts before its client's bytes
//! (HAProxy's `send-proxy` / `send-proxy-v2`), so the proxy sees the client's
//! own address instead of the balancer's. Only connections from
//! `listener.proxy_protocol_from` are read this way; from anyone else the
//! same bytes are just a (bad) request.
//!
//! [`parse`] is sans-I/O: it decides from the bytes held whether a whole
//! header is there (its length and source), more is needed, or the bytes are
//! refused. The `ppp` crate parses the header itself; this glue only finds
//! where it ends, so every prefix of a good header says "need more" (ppp's
//! v1 parser alone refuses some prefixes). [`read`] reads exactly the
//! header's bytes off the socket — peeking first, so not one byte of what
//! follows (a request, a TLS ClientHello) is taken.

use std::net::{IpAddr, SocketAddr};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Longest v1 header, CRLF included (the specification's bound).
pub const V1_MAX: usize = 107;
/// Longest v2 header we accept: the 16-byte fixed part and up to 520 bytes
/// of addresses and TLVs (a Unix-socket pair is 216; HAProxy's TLVs for
/// ALPN, authority, unique id and SSL fit well within).
pub const V2_MAX: usize = 16 + 520;
/// The v2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Every v1 header starts so.
const V1_START: &[u8; 6] = b"PROXY ";

/// What the bytes held say.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A prefix of a header: read more.
    NeedMore,
    /// A whole header of `len` bytes. `source` is the client's address, or
    /// `None` when the header gives none to believe (v2 `LOCAL`, the
    /// balancer's own health check; v1 `UNKNOWN`; a Unix or unspecified
    /// family): the connection's own peer stays the client.
    Header {
        /// The header's length: the bytes to consume.
        len: usize,
        /// The client's address.
        source: Option<SocketAddr>,
    },
    /// Not a PROXY header, or a broken one; the reason is for the log.
    Refused(String),
}

/// Examines the bytes at the start of a connection.
pub fn parse(buf: &[u8]) -> Parsed {
    let starts = |sig: &[u8]| sig.starts_with(&buf[..buf.len().min(sig.len())]);
    if buf.is_empty() {
        Parsed::NeedMore
    } else if starts(V2_SIGNATURE) {
        v2(buf)
    } else if starts(V1_START) {
        v1(buf)
    } else {
        Parsed::Refused("no PROXY protocol header".into())
    }
}

fn v1(buf: &[u8]) -> Parsed {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Parsed::Refused(format!("PROXY v1 header longer than {V1_MAX} bytes"))
        } else {
            Parsed::NeedMore
        };
    };
    match ppp::v1::Header::try_from(&buf[..=nl]) {
        Ok(h) => Parsed::Header {
            len: h.header.len(),
            source: match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => Some((a.source_address, a.source_port).into()),
                ppp::v1::Addresses::Tcp6(a) => Some((a.source_address, a.source_port).into()),
                ppp::v1::Addresses::Unknown => None,
            },
        },
        Err(e) => Parsed::Refused(format!("PROXY v1 header invalid: {e}")),
    }
}

fn v2(buf: &[u8]) -> Parsed {
    let Some(fixed) = buf.get(..16) else {
        return Parsed::NeedMore;
    };
    let len = 16 + usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if len > V2_MAX {
        return Parsed::Refused(format!("PROXY v2 header longer than {V2_MAX} bytes"));
    }
    let Some(header) = buf.get(..len) else {
        return Parsed::NeedMore;
    };
    match ppp::v2::Header::try_from(header) {
        Ok(h) => Parsed::Header {
            len,
            source: match (h.command, h.addresses) {
                (ppp::v2::Command::Local, _) => None,
                (_, ppp::v2::Addresses::IPv4(a)) => Some((a.source_address, a.source_port).into()),
                (_, ppp::v2::Addresses::IPv6(a)) => Some((a.source_address, a.source_port).into()),
                (_, ppp::v2::Addresses::Unix(_) | ppp::v2::Addresses::Unspecified) => None,
            },
        },
        Err(e) => Parsed::Refused(format!("PROXY v2 header invalid: {e}")),
    }
}

/// Reads the PROXY header at the start of `tcp`, consuming exactly its
/// bytes: the client's address (`None`: keep the peer's), or why the
/// connection must be closed. The caller bounds it in time; it is bounded
/// in memory by [`V2_MAX`].
pub async fn read(tcp: &mut TcpStream) -> Result<Option<SocketAddr>, String> {
    let mut buf = [0u8; V2_MAX];
    // Bytes consumed so far: all of them part of a header not yet whole.
    let mut have = 0;
    loop {
        let n = tcp
            .peek(&mut buf[have..])
            .await
            .map_err(|e| format!("reading the PROXY header: {e}"))?;
        if n == 0 {
            return Err("closed before a whole PROXY protocol header".into());
        }
        let take = match parse(&buf[..have + n]) {
            Parsed::Header { len, source } => {
                let rest = buf.get_mut(have..len).ok_or("PROXY header length")?;
                consume(tcp, rest).await?;
                return Ok(source);
            }
            Parsed::Refused(why) => return Err(why),
            // All of it is header: consume it, so the next peek waits for more.
            Parsed::NeedMore => n,
        };
        consume(tcp, &mut buf[have..have + take]).await?;
        have += take;
    }
}

/// Reads bytes already seen by a peek (they are in the socket's queue).
async fn consume(tcp: &mut TcpStream, into: &mut [u8]) -> Result<(), String> {
    tcp.read_exact(into)
        .await
        .map(drop)
        .map_err(|e| format!("reading the PROXY header: {e}"))
}

/// Is `ip` a balancer whose PROXY headers are believed? A short list (the
/// balancers), scanned.
pub fn trusted(from: &[ipnet::IpNet], ip: IpAddr) -> bool {
    let ip = crate::limit::place(ip, 128);
    from.iter().any(|n| n.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &[u8] = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 3128\r\n";
    const V1_6: &[u8] = b"PROXY TCP6 2001:db8::7 2001:db8::1 56324 3128\r\n";

    fn v2_header(command: ppp::v2::Command, tlv: bool) -> Vec<u8> {
        let addrs: ppp::v2::Addresses = (
            "203.0.113.9:40000".parse::<SocketAddr>().unwrap(),
            "192.0.2.1:3128".parse::<SocketAddr>().unwrap(),
        )
            .into();
        let b = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | command,
            ppp::v2::Protocol::Stream,
            addrs,
        );
        let b = if tlv {
            b.write_tlv(ppp::v2::Type::Authority, b"proxy.example.test".as_slice())
                .unwrap()
        } else {
            b
        };
        b.build().unwrap()
    }

    /// Every strict prefix says "need more"; the whole, followed by a
    /// request, is the header alone.
    fn prefixes_then_whole(h: &[u8], source: Option<&str>) {
        for i in 0..h.len() {
            assert_eq!(parse(&h[..i]), Parsed::NeedMore, "prefix of {i} bytes");
        }
        let mut more = h.to_vec();
        more.extend_from_slice(b"GET http://x/ HTTP/1.1\r\n\r\n");
        for whole in [h, &more] {
            assert_eq!(
                parse(whole),
                Parsed::Header {
                    len: h.len(),
                    source: source.map(|s| s.parse().unwrap())
                }
            );
        }
    }

    #[test]
    fn v1_every_prefix_needs_more() {
        prefixes_then_whole(V1, Some("203.0.113.7:56324"));
        prefixes_then_whole(V1_6, Some("[2001:db8::7]:56324"));
        prefixes_then_whole(b"PROXY UNKNOWN\r\n", None);
    }

    #[test]
    fn v2_every_prefix_needs_more() {
        let proxy = v2_header(ppp::v2::Command::Proxy, true);
        prefixes_then_whole(&proxy, Some("203.0.113.9:40000"));
        let local = v2_header(ppp::v2::Command::Local, false);
        prefixes_then_whole(&local, None);
    }

    #[test]
    fn garbage_is_refused() {
        let refused = |b: &[u8]| matches!(parse(b), Parsed::Refused(_));
        assert!(refused(b"GET http://x/ HTTP/1.1\r\n\r\n"));
        assert!(refused(b"\x16\x03\x01\x02\x00"), "a TLS ClientHello");
        assert!(refused(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 junk\r\n"));
        assert!(refused(b"PROXY TCP4 203.0.113.300 192.0.2.1 1 2\r\n"));
        assert!(refused(b"PROXY TCP9 1.2.3.4 5.6.7.8 1 2\r\n"));
        assert!(refused(b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"));
        assert!(refused(b"PROXY\r\n"));
        assert!(refused(&[b'P', b'R', b'O', b'X', b'Y', b' ', 0xff, b'\n']));
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert!(refused(&long), "no CRLF within 107 bytes");
        // v2: a bad version, a bad command, a length past the bound.
        let mut h = v2_header(ppp::v2::Command::Proxy, false);
        h[12] = 0x11;
        assert!(refused(&h));
        h[12] = 0x2f;
        assert!(refused(&h));
        let mut h = v2_header(ppp::v2::Command::Proxy, false);
        h[14..16].copy_from_slice(&600u16.to_be_bytes());
        assert!(refused(&h[..16]), "refused from the fixed part alone");
        // An address block shorter than its family says.
        let mut h = v2_header(ppp::v2::Command::Proxy, false)[..16].to_vec();
        h[14..16].copy_from_slice(&4u16.to_be_bytes());
        h.extend_from_slice(&[1, 2, 3, 4]);
        assert!(refused(&h));
    }

    #[test]
    fn only_the_listed_sources_are_believed() {
        let from = [
            "10.0.0.0/30".parse().unwrap(),
            "2001:db8::1/128".parse().unwrap(),
        ];
        let t = |s: &str| trusted(&from, s.parse().unwrap());
        assert!(t("10.0.0.3") && t("::ffff:10.0.0.2") && t("2001:db8::1"));
        assert!(!t("10.0.0.4") && !t("2001:db8::2"));
        assert!(!trusted(&[], "127.0.0.1".parse().unwrap()));
    }

    proptest::proptest! {
        /// On real headers with a byte changed and bytes after them: a
        /// decision on a prefix never changes with more bytes.
        #[test]
        fn a_decision_on_a_prefix_stands(
            which in 0usize..3,
            at in 0usize..64,
            byte in proptest::prelude::any::<u8>(),
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..32),
        ) {
            let mut data = match which {
                0 => V1.to_vec(),
                1 => V1_6.to_vec(),
                _ => v2_header(ppp::v2::Command::Proxy, true),
            };
            let i = at % data.len();
            data[i] = byte;
            data.extend_from_slice(&tail);
            let whole = parse(&data);
            for cut in 0..data.len() {
                match parse(&data[..cut]) {
                    Parsed::NeedMore => {}
                    h @ Parsed::Header { .. } => proptest::prop_assert_eq!(&h, &whole),
                    Parsed::Refused(_) => {
                        proptest::prop_assert!(matches!(whole, Parsed::Refused(_)))
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn read_takes_the_header_and_not_a_byte_more() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            // In pieces, the last one carrying the first request bytes too.
            s.write_all(&V1[..5]).await.unwrap();
            s.flush().await.unwrap();
            tokio::task::yield_now().await;
            s.write_all(&V1[5..30]).await.unwrap();
            tokio::task::yield_now().await;
            s.write_all(&[&V1[30..], b"GET /"].concat()).await.unwrap();
            s
        });
        let (mut tcp, _) = listener.accept().await.unwrap();
        let source = read(&mut tcp).await.unwrap();
        assert_eq!(source, Some("203.0.113.7:56324".parse().unwrap()));
        let mut rest = [0u8; 5];
        tcp.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"GET /");
        drop(client.await.unwrap());
        assert!(read(&mut tcp).await.is_err(), "end of stream: refused");
    }
}
