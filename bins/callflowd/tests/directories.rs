//! `callflowd` and the directories it owns: one instance at a time on them, and stored captures are never taken for leftovers.

mod common;

use common::{request, temp_dir, Daemon};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};

fn example() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/captures/basic-call.pcap")).unwrap()
}

/// Uploads the example capture; returns the status and the body.
fn upload(addr: &str) -> (u16, String) {
    let body = example();
    let head = format!(
        "POST /api/v1/upload?name=call.pcap HTTP/1.1\r\nContent-Type: application/vnd.tcpdump.pcap\r\nContent-Length: {}",
        body.len()
    );
    request(addr, &head, |conn| conn.write_all(&body).unwrap())
}

/// callflowd on the given directories with `args`, without the test's `CALLFLOW_*` environment.
fn command(uploads: &Path, results: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callflowd"));
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("CALLFLOW_")) {
        cmd.env_remove(name);
    }
    cmd.args(["--port", "0", "--workers", "1", "--upload-dir"]).arg(uploads).arg("--results-dir").arg(results);
    cmd.args(args);
    cmd
}

/// Runs callflowd to its end.
fn run(uploads: &Path, results: &Path, args: &[&str]) -> Output {
    command(uploads, results, args).output().unwrap()
}

/// A callflowd that, unlike [`Daemon`], leaves its directories when it stops (killed on drop).
struct Instance {
    child: Child,
    addr: String,
    stderr: BufReader<ChildStderr>,
    /// What it printed up to its "listening" line.
    log: String,
}

impl Instance {
    fn start(dir: &Path) -> Instance {
        let mut child =
            command(&dir.join("uploads"), &dir.join("results"), &[]).stderr(Stdio::piped()).spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut log = String::new();
        while stderr.read_line(&mut log).unwrap() > 0 {
            let line = log.lines().last().unwrap_or("");
            if let Some(addr) = line.trim().strip_prefix("callflowd: listening on http://") {
                let addr = addr.to_string();
                return Instance { child, addr, stderr, log };
            }
        }
        panic!("callflowd exited ({}) without listening", child.wait().unwrap());
    }

    /// SIGTERM, then what it printed from its start on.
    fn terminate(mut self) -> String {
        assert!(Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success());
        let mut log = std::mem::take(&mut self.log);
        self.stderr.read_to_string(&mut log).unwrap();
        assert!(self.child.wait().unwrap().success(), "{log}");
        log
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

#[test]
fn a_second_instance_on_the_same_upload_dir_is_refused_naming_the_first_and_deletes_nothing() {
    let first = Daemon::start(temp_dir("second-instance"), &[]);
    let (status, body) = upload(&first.addr);
    assert_eq!(status, 201, "{body}");
    let job = serde_json::from_str::<serde_json::Value>(&body).unwrap()["job_id"].as_str().unwrap().to_string();
    let uploads = first.dir.join("uploads");
    assert_eq!(files(&uploads), ["1.capture"]);

    // Its own results directory (a mistyped one), the first one's uploads.
    let other_results: PathBuf = first.dir.join("other-results");
    let mut second = command(&uploads, &other_results, &[]).stderr(Stdio::piped()).spawn().unwrap();
    // Bounded, so that a second instance that starts (and serves) fails the test rather than hangs it.
    for _ in 0..600 {
        if second.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if second.try_wait().unwrap().is_none() {
        let _ = second.kill();
    }
    let out = second.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", first.child.id())), "{stderr}");
    assert!(stderr.contains("in use by another callflowd"), "{stderr}");
    assert_eq!(files(&uploads), ["1.capture"], "the first instance's capture is still there");
    // The first instance still serves it under its own id.
    let (status, body) = request(&first.addr, &format!("GET /api/v1/jobs/{job}/status HTTP/1.1"), |_| {});
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""name":"call.pcap""#), "{body}");
}

#[test]
fn a_fresh_results_dir_keeps_captures_without_a_job_and_removes_them_only_when_asked() {
    let dir = temp_dir("fresh-results");
    let first = Instance::start(&dir);
    let (status, body) = upload(&first.addr);
    assert_eq!(status, 201, "{body}");
    first.terminate();
    let uploads = dir.join("uploads");
    let stored = std::fs::read(uploads.join("1.capture")).unwrap();

    // The database is lost (or another results directory is given): the capture stays,
    // reported; the new store's job 1 does not overwrite it.
    std::fs::remove_dir_all(dir.join("results")).unwrap();
    // With a .part file the new store cannot tell for its own (it never reserved id 7).
    std::fs::write(uploads.join("7.capture.part"), b"x").unwrap();
    let second = Instance::start(&dir);
    let (status, body) = upload(&second.addr);
    assert_eq!(status, 201, "{body}");
    assert!(files(&uploads).contains(&"2.capture".to_string()), "the kept capture's name is not reused");
    let log = second.terminate();
    assert!(log.contains("belong to no job of this database"), "{log}");
    assert_eq!(std::fs::read(uploads.join("1.capture")).unwrap(), stored);
    let mut kept = files(&uploads);
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert!(kept.contains(&"7.capture.part".to_string()), "{kept:?}");

    // Only the operator's command removes it, and nothing else.
    let out = run(&uploads, &dir.join("results"), &["--remove-orphan-captures"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("2 capture(s) without a job"), "{stderr}");
    kept.retain(|n| n != "1.capture" && n != "7.capture.part");
    assert_eq!(files(&uploads), kept);
    std::fs::remove_dir_all(dir).ok();
}
