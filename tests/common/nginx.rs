//! A real nginx origin over TLS offering HTTP/2 (ALPN `h2`, `http/1.1`),
//! started in a temp dir on a free port; its access log says which
//! protocol each request arrived with.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx; killed when dropped.
pub struct Nginx {
    pub addr: SocketAddr,
    pub log: PathBuf,
    child: Child,
}

impl Nginx {
    /// nginx serving `dir/www` (`/` says "hello from nginx", `/1k.bin` is
    /// 1 KiB) with `cert`/`key`, HTTP/2 on. Retries on another port when
    /// the bind fails; ready when its port answers.
    pub fn h2_tls(dir: &Path, cert: &Path, key: &Path) -> Nginx {
        let www = dir.join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), "hello from nginx\n").unwrap();
        std::fs::write(www.join("1k.bin"), vec![b'x'; 1024]).unwrap();
        for _ in 0..5 {
            let port = super::free_port();
            let log = dir.join(format!("nginx-{port}.log"));
            let conf = dir.join(format!("nginx-{port}.conf"));
            let t = dir.display();
            std::fs::write(
                &conf,
                format!(
                    "worker_processes 1; daemon off; pid {t}/nginx-{port}.pid; error_log {t}/nginx-{port}.err;\n\
                     events {{ worker_connections 1024; }}\n\
                     http {{ log_format p '$request $server_protocol $status';\n\
                       access_log {log} p; keepalive_requests 100000;\n\
                       client_body_temp_path {t}/body; proxy_temp_path {t}/proxy;\n\
                       fastcgi_temp_path {t}/fcgi; uwsgi_temp_path {t}/uwsgi; scgi_temp_path {t}/scgi;\n\
                       server {{ listen 127.0.0.1:{port} ssl http2; server_name _;\n\
                         ssl_certificate {}; ssl_certificate_key {};\n\
                         root {}; }} }}\n",
                    cert.display(),
                    key.display(),
                    www.display(),
                    log = log.display(),
                ),
            )
            .unwrap();
            let mut child = Command::new("nginx")
                .args(["-e", &format!("{t}/nginx-{port}.err"), "-c"])
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nginx runs");
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if std::net::TcpStream::connect(addr).is_ok() {
                    return Nginx { addr, log, child };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port was taken: another one
                }
                assert!(Instant::now() < deadline, "nginx did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.wait();
        }
        panic!("nginx found no free port in 5 tries");
    }

    /// The requests nginx logged: `GET /path HTTP/2.0 200` each.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // nginx stops on SIGTERM (its master, our child; the worker follows).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
