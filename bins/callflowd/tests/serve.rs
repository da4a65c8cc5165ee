//! `callflowd` as a service: it serves the API on the configured address, stops gracefully on SIGTERM, and refuses a public address without authentication.

mod common;

use common::{command, hash_password, request, temp_dir, Daemon};

#[test]
fn serves_the_api_and_stops_on_sigterm() {
    let daemon = Daemon::start(temp_dir("sigterm"), &[]);
    let (status, body) = request(&daemon.addr, "GET /version HTTP/1.1", |_| {});
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""name":"callflowd""#), "{body}");
    let (success, rest) = daemon.terminate();
    assert!(success, "{rest}");
    assert!(rest.contains("callflowd: stopped"), "{rest}");
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
fn the_soft_open_file_limit_is_raised_to_the_hard_one_and_a_low_one_is_warned_about() {
    // Regression: a soft limit of 1,024 (the usual default) let the system refuse
    // connections (EMFILE) long before server.max_connections.
    // (The soft and hard "Max open files" of the running daemon, what it said before listening.)
    let start_under = |nofile: &str, name: &str| {
        let dir = temp_dir(name);
        let base = command(&dir, &[]);
        let mut cmd = std::process::Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}")).arg("--").arg(base.get_program()).args(base.get_args());
        for (key, value) in base.get_envs() {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        let mut child = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut said = String::new();
        while std::io::BufRead::read_line(&mut stderr, &mut said).unwrap() > 0 && !said.contains("listening on") {}
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
        child.kill().unwrap();
        let _ = child.wait();
        std::fs::remove_dir_all(dir).ok();
        let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
        let fields: Vec<String> = line.split_whitespace().map(String::from).collect();
        (fields[3..5].to_vec(), said)
    };
    let (limits, said) = start_under("512:8192", "nofile-raised");
    assert_eq!(limits, ["8192", "8192"], "{said}");
    assert!(!said.contains("open-file limit"), "{said}");
    let (limits, said) = start_under("512:512", "nofile-low");
    assert_eq!(limits, ["512", "512"], "{said}");
    assert!(said.contains("the open-file limit (512) is below server.max_connections (4096) plus 256"), "{said}");
}

#[test]
fn hash_password_prints_an_argon2_hash() {
    assert!(hash_password("s3cret").starts_with("$argon2id$"));
}
