//! Test harness: a real origin server and echo server on loopback, and the real
//! `gatehouse` binary started with a config of the test's choosing.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub mod kdc;
pub mod lab;
pub mod nginx;
pub mod ntlm;
pub mod samba;
pub mod tls_lab;

/// `integration/lab/<name>`, a lab server script.
pub fn lab_script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("integration/lab")
        .join(name)
}

/// Runs one step of a lab script (`init`, `seed`, …) to completion; a step
/// that fails fails the test here, loudly, with the script's stderr.
pub fn lab_step(name: &str, args: &[&std::ffi::OsStr]) {
    let out = std::process::Command::new(lab_script(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("integration/lab/{name}: {e}"));
    assert!(
        out.status.success(),
        "integration/lab/{name} {:?} failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cmd` to completion with `input` on its stdin; stdout and stderr
/// are captured.
pub fn run_with_input(cmd: &mut std::process::Command, input: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    // A child that exits without reading its input is not our failure here:
    // its status and output say what happened.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

/// A port below 32768 (out of the ephemeral range) that was free a moment
/// ago, for a server that binds it itself. Each test process starts at a
/// random place in the range: test binaries run side by side (five builders
/// on one machine), and starts derived from neighbouring pids collided after
/// a few ports. Free when probed is all it promises: a server given it must
/// retry on another when the bind fails (`Gatehouse::start` does), and a
/// port that must stay closed is [`closed_port`].
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    static START: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        let mut b = [0u8; 2];
        getrandom::fill(&mut b).unwrap();
        u16::from_le_bytes(b) % 12000
    });
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20000 + (start.wrapping_add(n)) % 12000;
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A loopback port nobody listens on, for as long as the value lives: the
/// socket is bound (so no other process can take the port) but never
/// listens, so a connection to it is refused. A port merely probed free could
/// be taken by a server in a neighbouring test process before the refusal
/// the test expects.
pub struct ClosedPort {
    pub port: u16,
    _bound: tokio::net::TcpSocket,
}

pub fn closed_port() -> ClosedPort {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let port = socket.local_addr().unwrap().port();
    ClosedPort {
        port,
        _bound: socket,
    }
}

/// A listener on a free loopback port below 32768, bound directly (no
/// probe-then-bind race with anything else on the machine).
pub async fn bind_free() -> TcpListener {
    for _ in 0..1000 {
        if let Ok(l) = TcpListener::bind(("127.0.0.1", free_port())).await {
            return l;
        }
    }
    panic!("no free loopback port below 32768");
}

// === Origin ===

/// What the origin saw of each request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A real HTTP/1.1 origin on loopback. Paths:
/// `/bytes/N` N bytes with Content-Length; `/chunked/N` N bytes chunked;
/// `/echo` echoes the body back (streamed, chunked); `/status/N` empty answer with N;
/// `/slow/MS` answers after MS milliseconds.
pub struct Origin {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Origin {
    pub async fn start() -> Origin {
        let listener = bind_free().await;
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (c, s) = (connections.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| origin_handle(req, s.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Origin {
            addr,
            connections,
            seen,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn last_seen(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("origin saw no request")
    }

    pub fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

pub type OriginBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

async fn origin_handle(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<OriginBody>, Infallible> {
    let path = req.uri().path().to_string();
    let mut record = Seen {
        method: req.method().to_string(),
        uri: req.uri().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body_len: 0,
    };
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(2, '/').collect();
    let arg = |i: usize| {
        parts
            .get(i)
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(0)
    };
    let resp = match parts[0] {
        "echo" => {
            // Stream the body back as it arrives, frame by frame.
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, hyper::Error>>(4);
            let mut body = req.into_body();
            let seen2 = seen.clone();
            let rec = record.clone();
            tokio::spawn(async move {
                let mut total = 0;
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(f) => {
                            if let Some(d) = f.data_ref() {
                                total += d.len();
                                if tx.send(Ok(Frame::data(d.clone()))).await.is_err() {
                                    break;
                                }
                            }
                        }
                        Err(_) => break,
                    }
                }
                let mut rec = rec;
                rec.body_len = total;
                seen2.lock().unwrap().push(rec);
            });
            let stream = tokio_stream_from(rx);
            return Ok(Response::new(BodyExt::boxed(StreamBody::new(stream))));
        }
        "bytes" => Response::new(full(vec![b'x'; arg(1)])),
        "chunked" => {
            let n = arg(1);
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tokio::spawn(async move {
                let mut left = n;
                while left > 0 {
                    let k = left.min(16 * 1024);
                    if tx
                        .send(Ok(Frame::data(Bytes::from(vec![b'y'; k]))))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    left -= k;
                }
            });
            Response::new(BodyExt::boxed(StreamBody::new(tokio_stream_from(rx))))
        }
        "status" => {
            let mut r = Response::new(full(Vec::new()));
            *r.status_mut() = hyper::StatusCode::from_u16(arg(1) as u16).unwrap();
            r
        }
        "slow" => {
            tokio::time::sleep(Duration::from_millis(arg(1) as u64)).await;
            Response::new(full(b"late".to_vec()))
        }
        _ => Response::new(full(b"hello from origin".to_vec())),
    };
    let mut resp = resp;
    resp.headers_mut()
        .insert("connection", "keep-alive, x-origin-hop".parse().unwrap());
    resp.headers_mut()
        .insert("x-origin-hop", "must-not-pass".parse().unwrap());
    resp.headers_mut()
        .insert("keep-alive", "timeout=5".parse().unwrap());
    record.body_len = 0;
    seen.lock().unwrap().push(record);
    Ok(resp)
}

fn full(v: Vec<u8>) -> OriginBody {
    BodyExt::boxed(Full::new(Bytes::from(v)).map_err(|never: Infallible| match never {}))
}

/// Adapts an mpsc receiver into a `Stream` without pulling in tokio-stream.
fn tokio_stream_from<T>(rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_core::Stream<Item = T> {
    struct S<T>(tokio::sync::mpsc::Receiver<T>);
    impl<T> futures_core::Stream for S<T> {
        type Item = T;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
    S(rx)
}

/// A TCP echo server (the far end of CONNECT tunnels). Returns its address.
pub async fn echo_server() -> SocketAddr {
    let listener = bind_free().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

// === The proxy under test ===

pub struct Gatehouse {
    pub port: u16,
    pub log_path: PathBuf,
    pub config_path: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Gatehouse {
    /// Starts the binary with the default config plus `extra` TOML (sections
    /// in `extra` replace nothing: they must not repeat `[listener]` or `[accesslog]`;
    /// use `listener_extra` for listener keys).
    pub fn start(listener_extra: &str, extra: &str) -> Gatehouse {
        Self::start_with_env(listener_extra, extra, &[])
    }

    /// [`Gatehouse::start`] with extra environment variables (KRB5_CONFIG ...).
    /// A port taken between choosing it and the proxy binding it is retried.
    pub fn start_with_env(listener_extra: &str, extra: &str, env: &[(&str, &str)]) -> Gatehouse {
        Self::start_logging(None, listener_extra, extra, env)
    }

    /// [`Gatehouse::start`] with `accesslog` as the `[accesslog]` section's
    /// keys (`{log_path}` stands for the usual file) instead of an ELFF file.
    pub fn start_logging(
        accesslog: Option<&str>,
        listener_extra: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Gatehouse {
        for _ in 0..5 {
            match Self::try_start(accesslog, listener_extra, extra, env) {
                Ok(g) => return g,
                Err(e) if e.contains("cannot listen") => continue,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("gatehouse found no free port in 5 tries");
    }

    fn try_start(
        accesslog: Option<&str>,
        listener_extra: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Result<Gatehouse, String> {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        // A config that names the proxy's own port (a PAC file) says `{proxy_port}`.
        let extra = &extra.replace("{proxy_port}", &port.to_string());
        let log_path = dir.path().join("access.log");
        let accesslog = accesslog
            .unwrap_or("path = \"{log_path}\"\nformat = \"elff\"")
            .replace("{log_path}", &log_path.display().to_string());
        let config = format!(
            "[listener]\naddresses = [\"127.0.0.1:{port}\"]\n{listener_extra}\n\
             [accesslog]\n{accesslog}\n{extra}\n",
        );
        // A 5 s grace period unless the test sets its own.
        let config = if extra.contains("[shutdown]") {
            config
        } else {
            format!("{config}[shutdown]\ngrace_period = \"5s\"\n")
        };
        // Core tests run without authentication unless the test configures it.
        let config = if extra.contains("[auth]") {
            config
        } else {
            format!("{config}[auth]\nrequired = false\nrealms = []\n")
        };
        // ... and without protocol detection unless the test turns it on.
        let config = if extra.contains("[detection]") {
            config
        } else {
            format!("{config}[detection]\nenabled = false\n")
        };
        let cfg_path = dir.path().join("gatehouse.toml");
        std::fs::write(&cfg_path, config).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["run", "--config"])
            .arg(&cfg_path)
            .env("RUST_LOG", "gatehouse=debug")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("stderr.log")).unwrap(),
            ))
            .spawn()
            .expect("start gatehouse");
        let mut g = Gatehouse {
            port,
            log_path,
            config_path: cfg_path,
            child: Some(child),
            _dir: dir,
        };
        g.wait_ready()?;
        Ok(g)
    }

    /// Readiness: the proxy says it is listening (it binds every listener,
    /// plain and TLS, before it says so for any). Not a probe connection:
    /// the proxy would count one against `max_connections` and the
    /// per-address cap until it noticed the close — on a busy machine, after
    /// the test's own first connections arrived.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.stderr().contains("listening") {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!(
                    "gatehouse exited at start: {status}\n{}",
                    self.stderr()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(format!(
            "gatehouse did not listen within 30 s\n{}",
            self.stderr()
        ))
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        child.wait().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal by name (`HUP`, `TERM`).
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        assert!(Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .unwrap()
            .success());
    }

    /// Waits until the diagnostics contain `needle` at least `count` times.
    pub fn wait_stderr(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.stderr().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} x{count} in diagnostics:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn send_term(&self) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
    }

    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "gatehouse did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Access log lines (ELFF), as field maps, waiting until at least `n` exist.
    pub fn log_lines(&self, n: usize) -> Vec<HashMap<String, String>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let lines = parse_elff(&std::fs::read_to_string(&self.log_path).unwrap_or_default());
            if lines.len() >= n || Instant::now() > deadline {
                assert!(
                    lines.len() >= n,
                    "expected {n} access log lines, got {}: {lines:?}",
                    lines.len()
                );
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Parses an ELFF file: header checked, each line split on spaces outside quotes.
pub fn parse_elff(text: &str) -> Vec<HashMap<String, String>> {
    let mut fields: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(f) = line.strip_prefix("#Fields: ") {
            fields = f.split(' ').map(str::to_string).collect();
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        assert!(!fields.is_empty(), "log line before #Fields: {line}");
        let mut vals = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        for c in line.chars() {
            match c {
                '"' => quoted = !quoted,
                ' ' if !quoted => vals.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            }
        }
        vals.push(cur);
        assert_eq!(vals.len(), fields.len(), "field count in {line}");
        out.push(fields.iter().cloned().zip(vals).collect());
    }
    out
}

// === Raw client helpers ===

/// Sends raw bytes on a fresh connection, returns everything the proxy sent
/// back until it closed (or `wait` passed without a byte).
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    read_until_close(&mut s, wait).await
}

/// How long the first byte of an answer may take: as long as a busy machine
/// makes it (five builders on two cores can hold a proxy for seconds), only
/// not for ever. A peer that closes ends the wait at once.
pub const FIRST_BYTE: Duration = Duration::from_secs(60);

/// Reads until the peer closes, or nothing more arrives for `wait` once the
/// answer has begun (its first byte may take up to [`FIRST_BYTE`]: a short
/// wait there read "" from a proxy that had not yet had the CPU to answer).
pub async fn read_until_close(s: &mut tokio::net::TcpStream, wait: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(Ok(n)) = tokio::time::timeout(
        if out.is_empty() {
            wait.max(FIRST_BYTE)
        } else {
            wait
        },
        s.read(&mut buf),
    )
    .await
    {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in `text`.
pub fn status_of(text: &str) -> u16 {
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// An HTTP/1.1 client connection to the proxy that sends absolute-form URIs as given.
pub async fn proxy_conn(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<OriginBody> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

pub fn body(v: impl Into<Vec<u8>>) -> OriginBody {
    full(v.into())
}

pub fn empty() -> OriginBody {
    full(Vec::new())
}

pub async fn read_all(resp: Response<Incoming>) -> Vec<u8> {
    resp.into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec()
}

/// Waits until the client connection can take the next request (it is busy
/// finishing the previous exchange for a moment); fails if the proxy closed it.
pub async fn ready(
    c: &mut hyper::client::conn::http1::SendRequest<OriginBody>,
) -> &mut hyper::client::conn::http1::SendRequest<OriginBody> {
    c.ready()
        .await
        .expect("the proxy kept the connection usable");
    c
}

/// A local realm with alice (staff, telephony → Skype Users) and bob, in a temp dir.
pub fn local_realm(dir: &std::path::Path) -> String {
    let users = dir.join("users.toml");
    std::fs::write(
        &users,
        "[groups.telephony]\nmember_of = [\"Skype Users\"]\n",
    )
    .unwrap();
    gatehouse::directory::local::set_password(
        &users,
        "alice",
        "alice-pw",
        Some(&["staff".into(), "telephony".into()]),
    )
    .unwrap();
    gatehouse::directory::local::set_password(&users, "bob", "bob-pw", None).unwrap();
    let realm = dir.join("local.toml");
    std::fs::write(
        &realm,
        format!(
            "name = \"local\"\nkind = \"local\"\nusers_file = \"{}\"\ndomains = [\"EXAMPLE.TEST\"]\n",
            users.display()
        ),
    )
    .unwrap();
    format!(
        "[auth]\nrequired = true\nrealms = [\"{}\"]\nbasic_realm = \"Corp Proxy\"\nmax_failures_per_connection = 3\n",
        realm.display()
    )
}

pub fn basic(user_pass: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

// === Kerberos clients ===

/// `kinit user` with `password` against the KDC `krb5_conf` names, into a
/// credential cache file in `dir`; its path.
pub fn kinit(
    krb5_conf: &std::path::Path,
    user: &str,
    password: &str,
    dir: &std::path::Path,
) -> PathBuf {
    let cc = dir.join(format!("cc-{user}"));
    let out = run_with_input(
        Command::new("kinit")
            .arg(user)
            .env("KRB5_CONFIG", krb5_conf)
            .env("KRB5CCNAME", format!("FILE:{}", cc.display())),
        &format!("{password}\n"),
    );
    assert!(
        out.status.success(),
        "kinit {user}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    cc
}

/// `curl --proxy-negotiate` to `url` through the proxy reached by `name`
/// (its SPN's host, mapped to loopback with --resolve) on `port`, as the
/// holder of `cc`: (status code, curl's stderr).
pub fn curl_negotiate(
    krb5_conf: &std::path::Path,
    cc: &std::path::Path,
    name: &str,
    port: u16,
    url: &str,
) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--proxy-negotiate", "-U", ":"])
        .args(["-x", &format!("http://{name}:{port}")])
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
        .args(["-o", "/dev/null", "-w", "%{http_code}", url])
        .env("KRB5_CONFIG", krb5_conf)
        .env("KRB5CCNAME", format!("FILE:{}", cc.display()))
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One GET through the proxy from `source` (a loopback address such as
/// 127.0.0.5: each stands for another client machine) with these
/// credentials; the whole answer.
pub async fn get_from(proxy: SocketAddr, source: &str, url: &str, user_pass: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(
        source.parse::<std::net::IpAddr>().unwrap(),
        0,
    ))
    .unwrap();
    let mut s = sock.connect(proxy).await.unwrap();
    let raw = format!(
        "GET {url} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {}\r\nConnection: close\r\n\r\n",
        basic(user_pass)
    );
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut out = String::new();
    let _ = tokio::time::timeout(FIRST_BYTE, s.read_to_string(&mut out)).await;
    out
}
