//! The MIT Kerberos lab (integration/lab/kdc), per test: realm EXAMPLE.TEST,
//! users alice/bob/carol (password <user>-pw), HTTP/proxy.example.test in a
//! keytab. No DNS: krb5.conf names the KDC by address.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Kdc {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

fn script() -> PathBuf {
    super::lab_script("kdc")
}

impl Kdc {
    pub fn start() -> Kdc {
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let port_arg = port.to_string();
        super::lab_step(
            "kdc",
            &["init".as_ref(), dir.path().as_os_str(), port_arg.as_ref()],
        );
        let child = Command::new(script())
            .arg("run")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("integration/lab/kdc run");
        let mut kdc = Kdc { dir, port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(s) = kdc.child.try_wait().unwrap() {
                panic!("krb5kdc exited at start: {s}");
            }
            assert!(
                Instant::now() < deadline,
                "krb5kdc did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        kdc
    }

    pub fn krb5_conf(&self) -> PathBuf {
        self.dir.path().join("krb5.conf")
    }

    pub fn keytab(&self) -> PathBuf {
        self.dir.path().join("http.keytab")
    }

    /// `kinit user` into its own credential cache; returns the cache path.
    pub fn kinit(&self, user: &str) -> PathBuf {
        let cc = self.dir.path().join(format!("cc-{user}"));
        let out = super::run_with_input(
            Command::new("kinit")
                .arg(user)
                .env("KRB5_CONFIG", self.krb5_conf())
                .env("KRB5CCNAME", format!("FILE:{}", cc.display())),
            &format!("{user}-pw\n"),
        );
        assert!(
            out.status.success(),
            "kinit {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cc
    }

    /// The KDC's own log (ticket requests).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kdc.log")).unwrap_or_default()
    }
}

impl Drop for Kdc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
