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
fn hash_password_prints_an_argon2_hash() {
    assert!(hash_password("s3cret").starts_with("$argon2id$"));
}
