//! What the lab's origins serve, made by the tools that make the real thing:
//! `/hello.txt`; a PEP 503 index with one wheel (`/simple/`); a flat apt
//! repository with one package built by `dpkg-deb`, indexed by
//! `dpkg-scanpackages` and `apt-ftparchive release` (`/apt/`); a bare git
//! repository readable over dumb HTTP (`/repo.git`).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::lab::HELLO;

/// The wheel's project; `pip download demo-pkg` fetches it.
pub const WHEEL: &str = "demo_pkg-1.0-py3-none-any.whl";
/// The apt package; `apt-get download clients-lab-demo` fetches it.
pub const DEB: &str = "clients-lab-demo";
/// The commit message of the git repository's one commit.
pub const COMMIT: &str = "the clients lab repository";

fn sh(what: &str, cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the document root in `root`; returns it.
pub fn build(root: &Path) -> PathBuf {
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(root.join("hello.txt"), format!("{HELLO}\n")).unwrap();
    pip_index(root);
    apt_repo(root);
    git_repo(root);
    root.to_path_buf()
}

/// A wheel written with Python's zipfile, and its simple index page.
const MAKE_WHEEL: &str = r#"
import base64, hashlib, sys, zipfile
path = sys.argv[1]
files = {
    "demo_pkg/__init__.py": b"HELLO = 'hello from the clients lab'\n",
    "demo_pkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n",
    "demo_pkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: clients-lab\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = ""
for name, data in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record += f"{name},sha256={digest},{len(data)}\n"
record += "demo_pkg-1.0.dist-info/RECORD,,\n"
with zipfile.ZipFile(path, "w") as z:
    for name, data in files.items():
        z.writestr(name, data)
    z.writestr("demo_pkg-1.0.dist-info/RECORD", record)
print(hashlib.sha256(open(path, "rb").read()).hexdigest())
"#;

fn pip_index(root: &Path) {
    let project = root.join("simple/demo-pkg");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::create_dir_all(root.join("packages")).unwrap();
    let wheel = root.join("packages").join(WHEEL);
    let sha = sh(
        "python3 (make a wheel)",
        Command::new("python3").args(["-c", MAKE_WHEEL]).arg(&wheel),
    );
    std::fs::write(
        root.join("simple/index.html"),
        "<!DOCTYPE html><html><body><a href=\"demo-pkg/\">demo-pkg</a></body></html>\n",
    )
    .unwrap();
    std::fs::write(
        project.join("index.html"),
        format!(
            "<!DOCTYPE html><html><body><a href=\"../../packages/{WHEEL}#sha256={}\">{WHEEL}</a></body></html>\n",
            sha.trim()
        ),
    )
    .unwrap();
}

fn apt_repo(root: &Path) {
    let repo = root.join("apt");
    let pkg = root.join("deb-build");
    std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(pkg.join("usr/share/doc").join(DEB)).unwrap();
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(
        pkg.join("DEBIAN/control"),
        format!(
            "Package: {DEB}\nVersion: 1.0\nArchitecture: all\nMaintainer: Gatehouse <lab@example.test>\n\
             Description: {HELLO}\n"
        ),
    )
    .unwrap();
    std::fs::write(pkg.join("usr/share/doc").join(DEB).join("README"), HELLO).unwrap();
    sh(
        "dpkg-deb --build",
        Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group", "-Zgzip"])
            .arg(&pkg)
            .arg(repo.join(format!("{DEB}_1.0_all.deb"))),
    );
    std::fs::remove_dir_all(&pkg).unwrap();
    let packages = sh(
        "dpkg-scanpackages",
        Command::new("dpkg-scanpackages")
            .args(["-m", "."])
            .current_dir(&repo),
    );
    std::fs::write(repo.join("Packages"), packages).unwrap();
    let release = sh(
        "apt-ftparchive release",
        Command::new("apt-ftparchive")
            .args(["release", "."])
            .current_dir(&repo),
    );
    std::fs::write(repo.join("Release"), release).unwrap();
}

fn git_repo(root: &Path) {
    let work = root.join("git-work");
    let git = |args: &[&str], dir: &Path| {
        sh(
            &format!("git {args:?}"),
            Command::new("git")
                .args(args)
                .current_dir(dir)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("HOME", root)
                .env("GIT_AUTHOR_NAME", "Lab")
                .env("GIT_AUTHOR_EMAIL", "lab@example.test")
                .env("GIT_COMMITTER_NAME", "Lab")
                .env("GIT_COMMITTER_EMAIL", "lab@example.test"),
        )
    };
    std::fs::create_dir_all(&work).unwrap();
    git(&["init", "-q", "-b", "main"], &work);
    std::fs::write(work.join("README"), HELLO).unwrap();
    git(&["add", "README"], &work);
    git(&["commit", "-q", "-m", COMMIT], &work);
    git(&["clone", "-q", "--bare", "git-work", "repo.git"], root);
    git(&["update-server-info"], &root.join("repo.git"));
    std::fs::remove_dir_all(&work).unwrap();
}
