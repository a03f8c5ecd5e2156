//! Connection pinning: an upstream connection that an origin authenticated
//! (NTLM/Negotiate authenticate the TCP connection) serves only the client
//! connection that authenticated it, never another client from the pool.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// An origin that authenticates each TCP connection, as IIS does with NTLM:
/// `Authorization: NTLM <user>` makes the connection `<user>`'s; later
/// requests on it are answered "hello <user>" without credentials; a request
/// on an unauthenticated connection gets `401 WWW-Authenticate: NTLM`.
struct ConnAuthOrigin {
    addr: SocketAddr,
    /// Connections open right now.
    open: Arc<AtomicUsize>,
}

impl ConnAuthOrigin {
    async fn start() -> Self {
        let listener = bind_free().await;
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let open2 = open.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let open = open2.clone();
                open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let user: Arc<Mutex<Option<String>>> = Arc::default();
                    let svc = hyper::service::service_fn(move |req: Request<_>| {
                        let user = user.clone();
                        async move {
                            let mut user = user.lock().unwrap();
                            let presented = req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.strip_prefix("NTLM "));
                            if let Some(u) = presented {
                                *user = Some(u.to_string());
                            }
                            let resp = match user.as_deref() {
                                Some(u) => Response::new(body(format!("hello {u}"))),
                                None => {
                                    let mut r = Response::new(body("who are you?"));
                                    *r.status_mut() = StatusCode::UNAUTHORIZED;
                                    r.headers_mut()
                                        .insert("www-authenticate", "NTLM".parse().unwrap());
                                    r
                                }
                            };
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        ConnAuthOrigin { addr, open }
    }
}

fn get(url: &str, authorization: Option<&str>) -> Request<OriginBody> {
    let mut b = Request::builder()
        .uri(url)
        .header("host", "ignored.example");
    if let Some(a) = authorization {
        b = b.header("authorization", a);
    }
    b.body(empty()).unwrap()
}

/// Status, `Proxy-Support` and body of one exchange on `c`.
async fn exchange(
    c: &mut hyper::client::conn::http1::SendRequest<OriginBody>,
    req: Request<OriginBody>,
) -> (u16, Option<String>, String) {
    let resp = ready(c).await.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let support = resp
        .headers()
        .get("proxy-support")
        .map(|v| v.to_str().unwrap().to_string());
    let text = String::from_utf8(read_all(resp).await).unwrap();
    (status, support, text)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_origin_authenticated_connection_serves_only_its_client() {
    let origin = ConnAuthOrigin::start().await;
    let url = format!("http://{}/", origin.addr);
    let gh = Gatehouse::start("", "");
    let mut a = proxy_conn(gh.addr()).await;
    let mut b = proxy_conn(gh.addr()).await;

    // A: challenged, authenticates, then is known without credentials.
    let challenge = exchange(&mut a, get(&url, None)).await;
    let login = exchange(&mut a, get(&url, Some("NTLM alice"))).await;
    let again = exchange(&mut a, get(&url, None)).await;
    // B, on another client connection, must not inherit A's upstream connection.
    let other = exchange(&mut b, get(&url, None)).await;
    let other2 = exchange(&mut b, get(&url, None)).await;
    let a_still = exchange(&mut a, get(&url, None)).await;

    assert_ne!(
        other.2, "hello alice",
        "client B was served on A's connection"
    );
    assert_ne!(
        other2.2, "hello alice",
        "client B was served on A's connection"
    );
    assert_eq!(other.0, 401);
    assert_eq!((login.0, login.2.as_str()), (200, "hello alice"));
    assert_eq!(
        (again.0, again.2.as_str()),
        (200, "hello alice"),
        "A stays pinned"
    );
    assert_eq!((a_still.0, a_still.2.as_str()), (200, "hello alice"));
    // Every answer involving connection-based auth says the client connection
    // is stateful (Squid's Proxy-Support).
    for (what, r) in [
        ("challenge", &challenge),
        ("login", &login),
        ("pinned", &again),
        ("B's challenge", &other),
    ] {
        assert_eq!(
            r.1.as_deref(),
            Some("Session-Based-Authentication"),
            "{what}: {r:?}"
        );
    }
    let lines = gh.log_lines(6);
    assert!(
        lines
            .iter()
            .filter(|l| l["sc-status"] == "200")
            .all(|l| l["s-action"] == "TCP_NC_MISS"),
        "pinned answers are not cacheable: {lines:?}"
    );

    // The pinned connection dies with A's client connection.
    let before = origin.open.load(Ordering::SeqCst);
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    while origin.open.load(Ordering::SeqCst) >= before {
        assert!(
            Instant::now() < deadline,
            "the pinned upstream connection outlived its client ({before} open)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // B still gets the shared, unauthenticated connection.
    assert_eq!(exchange(&mut b, get(&url, None)).await.0, 401);
}

/// Another destination on the same client connection goes through the pool;
/// the pin stays for the destination it was made for.
#[tokio::test(flavor = "multi_thread")]
async fn a_pin_is_for_one_destination() {
    let one = ConnAuthOrigin::start().await;
    let two = ConnAuthOrigin::start().await;
    let (u1, u2) = (
        format!("http://{}/", one.addr),
        format!("http://{}/", two.addr),
    );
    let gh = Gatehouse::start("", "");
    let mut a = proxy_conn(gh.addr()).await;
    assert_eq!(exchange(&mut a, get(&u1, Some("NTLM alice"))).await.0, 200);
    assert_eq!(exchange(&mut a, get(&u2, None)).await.0, 401);
    let back = exchange(&mut a, get(&u1, None)).await;
    assert_eq!((back.0, back.2.as_str()), (200, "hello alice"));
}

/// A client connection that carries two proxy users (Basic re-presents on
/// every request, so a shared downstream proxy can mix users): bob never
/// gets the upstream connection alice authenticated.
#[tokio::test(flavor = "multi_thread")]
async fn a_pin_is_for_one_proxy_user() {
    let origin = ConnAuthOrigin::start().await;
    let url = format!("http://{}/", origin.addr);
    let dir = tempfile::tempdir().unwrap();
    let gh = Gatehouse::start("", &local_realm(dir.path()));
    let mut c = proxy_conn(gh.addr()).await;
    let as_user = |who: &str, origin_auth: Option<&str>| {
        let mut r = get(&url, origin_auth);
        r.headers_mut()
            .insert("proxy-authorization", basic(who).parse().unwrap());
        r
    };
    let alice = exchange(&mut c, as_user("alice:alice-pw", Some("NTLM alice"))).await;
    assert_eq!((alice.0, alice.2.as_str()), (200, "hello alice"));
    let bob = exchange(&mut c, as_user("bob:bob-pw", None)).await;
    assert_eq!(bob.0, 401, "bob was served on alice's connection: {bob:?}");
    let alice = exchange(&mut c, as_user("alice:alice-pw", None)).await;
    assert_eq!((alice.0, alice.2.as_str()), (200, "hello alice"));
}
