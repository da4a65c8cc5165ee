//! `callflowd` as a service: it serves the API on the configured address, stops gracefully on SIGTERM, and refuses a public address without authentication.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

fn command(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callflowd"));
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("CALLFLOW_")) {
        cmd.env_remove(name);
    }
    let (uploads, results) = (dir.join("uploads"), dir.join("results"));
    cmd.args(["--port", "0", "--workers", "1", "--upload-dir"])
        .arg(uploads)
        .arg("--results-dir")
        .arg(results)
        .args(args);
    cmd
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("callflowd-serve-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn serves_the_api_and_stops_on_sigterm() {
    let dir = temp_dir("sigterm");
    let mut child = command(&dir, &[]).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        if let Some(rest) = line.trim().strip_prefix("callflowd: listening on http://") {
            addr = Some(rest.to_string());
            break;
        }
        line.clear();
    }
    let addr = addr.expect("a listening line");
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.write_all(b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""name":"callflowd""#), "{response}");

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success(), "{rest}");
    assert!(rest.contains("callflowd: stopped"), "{rest}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_public_address_without_auth_is_refused_with_how_to_fix_it() {
    let dir = temp_dir("public");
    let out = command(&dir, &["--bind-addr", "0.0.0.0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refusing to listen on 0.0.0.0:0 without authentication"), "{stderr}");
    assert!(stderr.contains("--insecure-no-auth"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn hash_password_prints_an_argon2_hash() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_callflowd"))
        .arg("--hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("$argon2id$"));
}
