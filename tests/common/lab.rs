//! The OpenLDAP lab server (integration/lab/slapd), per test: its own
//! directory and port, started, stopped and restarted at will. If slapd
//! cannot start the test fails here, loudly.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Slapd {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

fn script() -> PathBuf {
    super::lab_script("slapd")
}

impl Slapd {
    /// A fresh, seeded directory on a free loopback port.
    pub fn start() -> Slapd {
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        super::lab_step("slapd", &["init".as_ref(), dir.path().as_os_str()]);
        let mut s = Slapd {
            port,
            dir,
            child: None,
        };
        s.run();
        let port_arg = port.to_string();
        super::lab_step(
            "slapd",
            &["seed".as_ref(), s.dir.path().as_os_str(), port_arg.as_ref()],
        );
        s
    }

    /// Starts (or restarts) the server on the same data and port.
    pub fn run(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(script())
            .arg("run")
            .arg(self.dir.path())
            .arg(self.port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("integration/lab/slapd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("slapd exited at start ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "slapd did not listen within 10 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the server (the directory outage of a test).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The port is closed once the process is gone.
        assert!(std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err());
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("slapd running").id().to_string();
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    }

    /// Restarts the server with `line` added to the end of its slapd.conf
    /// (the database section).
    pub fn restart_with(&mut self, line: &str) {
        self.stop();
        let conf = self.dir.path().join("slapd.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str(&format!("\n{line}\n"));
        std::fs::write(&conf, text).unwrap();
        self.run();
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("slapd.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Simple binds slapd received for `dn`, from its own stats log.
    pub fn binds_for(&self, dn: &str) -> usize {
        let needle = format!("BIND dn=\"{dn}\" method=128");
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }

    /// Every search slapd received (one `SRCH base=` line each).
    pub fn searches(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains(" SRCH base="))
            .count()
    }

    /// Every simple bind slapd received.
    pub fn all_binds(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains(" BIND dn=") && l.contains("method=128"))
            .count()
    }

    /// Applies an LDIF change as the lab admin.
    pub fn modify(&self, ldif: &str) {
        let out = super::run_with_input(
            Command::new("ldapmodify")
                .args([
                    "-x",
                    "-H",
                    &self.url(),
                    "-D",
                    "cn=admin,dc=example,dc=test",
                    "-y",
                ])
                .arg(self.dir.path().join("admin.pw")),
            ldif,
        );
        assert!(
            out.status.success(),
            "ldapmodify failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A realm file for this directory, written into the lab's folder.
    pub fn realm_file(&self, strategy: &str, extra: &str) -> PathBuf {
        let path = self.dir.path().join(format!("realm-{strategy}.toml"));
        let text = format!(
            "name = \"lab\"\nkind = \"ldap\"\nurls = [\"{}\"]\ntls = \"none\"\n\
             bind_dn = \"cn=gatehouse,ou=services,dc=example,dc=test\"\n\
             bind_password_file = \"{}\"\n\
             user_base = \"ou=people,dc=example,dc=test\"\n\
             user_filter = \"(&(objectClass=inetOrgPerson)(uid={{user}}))\"\n\
             login_attribute = \"uid\"\ngroup_base = \"ou=groups,dc=example,dc=test\"\n\
             group_strategy = \"{strategy}\"\ndomains = [\"EXAMPLE\", \"EXAMPLE.TEST\"]\n{extra}\n",
            self.url(),
            self.dir.path().join("bind.pw").display()
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
