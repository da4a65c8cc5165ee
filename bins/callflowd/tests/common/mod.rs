//! Shared by callflowd's tests: the built binary started on its own directories, and plain HTTP/1.1 requests to it over a socket.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};

/// `callflowd` on an ephemeral port with `dir`'s directories, one worker, and `args`; the
/// test's own `CALLFLOW_*` environment does not leak in.
pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = bare_command();
    let (uploads, results) = (dir.join("uploads"), dir.join("results"));
    cmd.args(["--port", "0", "--workers", "1", "--upload-dir"])
        .arg(uploads)
        .arg("--results-dir")
        .arg(results)
        .args(args);
    cmd
}

/// `callflowd` with no argument yet; the test's own `CALLFLOW_*` environment does not leak in.
pub fn bare_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callflowd"));
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("CALLFLOW_")) {
        cmd.env_remove(name);
    }
    cmd
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callflowd-serve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running callflowd; dropping it kills the process (a test that failed half-way) and
/// removes its directory.
pub struct Daemon {
    pub child: Child,
    /// Where it listens (`127.0.0.1:PORT`).
    pub addr: String,
    /// The rest of its standard error.
    pub stderr: BufReader<ChildStderr>,
    pub dir: PathBuf,
}

impl Daemon {
    /// Starts `command(dir, args)` and waits for its "listening on" line.
    pub fn start(dir: PathBuf, args: &[&str]) -> Daemon {
        let cmd = command(&dir, args);
        Daemon::spawn(dir, cmd)
    }

    /// Starts `cmd` (whose directories are in `dir`) and waits for its "listening on" line.
    pub fn spawn(dir: PathBuf, mut cmd: Command) -> Daemon {
        let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while stderr.read_line(&mut line).unwrap() > 0 {
            if let Some(rest) = line.trim().strip_prefix("callflowd: listening on http://") {
                let addr = rest.to_string();
                return Daemon { child, addr, stderr, dir };
            }
            line.clear();
        }
        let status = child.wait().unwrap();
        panic!("callflowd exited ({status}) without listening");
    }

    /// Sends SIGTERM and waits; returns whether it exited successfully, and the rest of
    /// its standard error.
    pub fn terminate(mut self) -> (bool, String) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let mut rest = String::new();
        self.stderr.read_to_string(&mut rest).unwrap();
        (self.child.wait().unwrap().success(), rest)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Already gone after `terminate`; a test that panicked leaves it running otherwise.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One HTTP/1.1 request on its own connection: `head` is the request line and headers
/// (without the blank line), `body` writes the body. Returns the status and the body.
pub fn request(addr: &str, head: &str, body: impl FnOnce(&mut TcpStream)) -> (u16, String) {
    let mut conn = TcpStream::connect(addr).unwrap();
    write!(conn, "{head}\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    body(&mut conn);
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let status = response.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{response}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

/// What `callflowd --hash-password` prints for `password` (an argon2id PHC string), after
/// checking it exited successfully.
pub fn hash_password(password: &str) -> String {
    let mut child = bare_command().arg("--hash-password").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "callflowd --hash-password failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
