//! `callflowd --database postgres://...`: the service on a PostgreSQL job store (a throwaway cluster), uploads analysed and listed, jobs kept across a restart, and a store newer than the build refused.

mod common;

#[path = "../../../crates/callflow-jobs/tests/common/pg.rs"]
mod pg;

use common::{request, temp_dir, Daemon};
use serde_json::Value;
use std::io::Write;
use std::path::Path;

fn example() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/captures/basic-call.pcap")).unwrap()
}

fn get(addr: &str, path: &str) -> Value {
    let (status, body) = request(addr, &format!("GET {path} HTTP/1.1"), |_| {});
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Uploads the example capture and waits for its job to finish; returns the job's id.
fn analyse(addr: &str) -> String {
    let body = example();
    let head = format!(
        "POST /api/v1/upload?name=call.pcap HTTP/1.1\r\nContent-Type: application/vnd.tcpdump.pcap\r\nContent-Length: {}",
        body.len()
    );
    let (status, reply) = request(addr, &head, |conn| conn.write_all(&body).unwrap());
    assert!(status == 201 || status == 202, "{status} {reply}");
    let id = serde_json::from_str::<Value>(&reply).unwrap()["job_id"].as_str().unwrap().to_string();
    // A guard against a hang, not a measure: the job takes well under a second.
    for _ in 0..600 {
        let status = get(addr, &format!("/api/v1/jobs/{id}/status"));
        let state = status["status"].as_str().unwrap().to_ascii_lowercase();
        if state != "queued" && state != "running" {
            assert_eq!(state, "completed", "{status}");
            return id;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("job {id} did not finish");
}

#[test]
fn callflowd_on_postgres_analyses_uploads_lists_them_and_keeps_them_across_a_restart() {
    let Some(cluster) = pg::shared("callflowd_on_postgres") else { return };
    let url = cluster.create_database();
    let dir = temp_dir("postgres");
    let daemon = Daemon::start(dir.clone(), &["--database", &url]);
    let id = analyse(&daemon.addr);
    let page = get(&daemon.addr, &format!("/api/v1/jobs/{id}/sessions"));
    assert_eq!(page["total"], 1, "{page}");
    let session = &page["sessions"][0];
    assert_eq!(session["kind"], "sip_call", "{page}");
    let (success, stderr) = daemon.terminate();
    assert!(success, "{stderr}");
    assert!(!dir.join("results/callflow.db").exists(), "no SQLite file beside a PostgreSQL store");

    // Another start on the same database (and fresh directories) finds the job and its sessions.
    let dir = temp_dir("postgres-again");
    let daemon = Daemon::start(dir, &["--database", &url]);
    let jobs = get(&daemon.addr, "/api/v1/jobs");
    let listed: Vec<String> =
        jobs["jobs"].as_array().unwrap().iter().map(|j| j["job_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(listed, std::slice::from_ref(&id), "{jobs}");
    let again = get(&daemon.addr, &format!("/api/v1/jobs/{id}/sessions"));
    assert_eq!(again["sessions"], page["sessions"], "the same sessions from the store");
    let second = analyse(&daemon.addr);
    assert!(second > id, "ids keep rising: {second} after {id}");
}

#[test]
fn callflowd_refuses_a_postgres_store_newer_than_itself_naming_both_versions() {
    let Some(cluster) = pg::shared("callflowd_newer_postgres_schema") else { return };
    let url = cluster.create_database();
    let db = url.rsplit('/').next().unwrap();
    cluster.psql(
        db,
        "CREATE TABLE callflow_schema (version BIGINT PRIMARY KEY); INSERT INTO callflow_schema VALUES (1), (7)",
    );
    let dir = temp_dir("postgres-newer");
    let out = common::command(&dir, &["--database", &url]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let known = callflow_jobs::PgStore::SCHEMA_VERSION;
    assert!(stderr.contains(&format!("schema version 7 is newer than this build knows ({known})")), "{stderr}");
    assert!(
        stderr.contains(&format!("postgres://postgres@127.0.0.1:{}/{db}", cluster.port)),
        "names the store: {stderr}"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// PostgreSQL stopped under a running callflowd: requests that need the store answer 503
/// (without the store's address), and once it is back the pool connects again.
#[test]
fn callflowd_answers_503_while_postgres_is_down_and_carries_on_once_it_is_back() {
    let Some(bin) = pg::binaries_or_skip("callflowd_postgres_down") else { return };
    let cluster = pg::Cluster::start(&bin, None);
    let url = cluster.create_database();
    let daemon = Daemon::start(temp_dir("postgres-down"), &["--database", &url]);
    let first = analyse(&daemon.addr);

    cluster.stop();
    let (status, body) = request(&daemon.addr, "GET /api/v1/jobs HTTP/1.1", |_| {});
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("job store cannot be reached") && !body.contains("127.0.0.1"), "{body}");
    let (status, body) = request(&daemon.addr, "GET /health HTTP/1.1", |_| {});
    assert_eq!(status, 503, "{body}");

    cluster.start_again();
    let jobs = get(&daemon.addr, "/api/v1/jobs");
    assert_eq!(jobs["jobs"][0]["job_id"], first, "{jobs}");
    let second = analyse(&daemon.addr);
    assert!(second > first);
    // Health keeps its answer for a second; then it is asked again, and ok.
    let healthy = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        request(&daemon.addr, "GET /health HTTP/1.1", |_| {}).0 == 200
    });
    assert!(healthy, "{:?}", request(&daemon.addr, "GET /health HTTP/1.1", |_| {}));
}

/// Two nodes on one database, with users: a token one node issued is accepted by the
/// other, a logout on either is seen by both, and a restart keeps the tokens.
#[test]
fn a_login_token_is_valid_on_every_node_and_a_logout_on_one_is_seen_by_all() {
    let Some(cluster) = pg::shared("callflowd_tokens_across_nodes") else { return };
    let url = cluster.create_database();
    let hash = common::hash_password("s3cret");
    let start = |name: &str| {
        let dir = temp_dir(name);
        let config = dir.join("callflowd.toml");
        std::fs::write(&config, format!("[auth]\nenabled = true\nusers = {{ ann = \"{hash}\" }}\n")).unwrap();
        Daemon::start(dir, &["--config", config.to_str().unwrap(), "--database", &url, "--node-name", name])
    };
    let login = |addr: &str| {
        let body = r#"{"username":"ann","password":"s3cret"}"#;
        let head =
            format!("POST /api/login HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}", body.len());
        let (status, reply) = request(addr, &head, |conn| conn.write_all(body.as_bytes()).unwrap());
        assert_eq!(status, 200, "{reply}");
        serde_json::from_str::<Value>(&reply).unwrap()["token"].as_str().unwrap().to_string()
    };
    let jobs = |addr: &str, token: &str| {
        request(addr, &format!("GET /api/v1/jobs HTTP/1.1\r\nAuthorization: Bearer {token}"), |_| {}).0
    };
    let (a, b) = (start("tokens-a"), start("tokens-b"));
    let token = login(&a.addr);
    assert_eq!(jobs(&a.addr, &token), 200);
    assert_eq!(jobs(&b.addr, &token), 200, "a token node A issued is valid on node B");
    assert_eq!(jobs(&b.addr, &"0".repeat(64)), 401, "an invented token is not");

    let (status, body) =
        request(&b.addr, &format!("POST /api/logout HTTP/1.1\r\nAuthorization: Bearer {token}"), |_| {});
    assert_eq!(status, 204, "{body}");
    assert_eq!(jobs(&b.addr, &token), 401, "revoked where the logout was made");
    // Node A reads revocations every second; a guard against a hang, not a measure.
    let seen = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        jobs(&a.addr, &token) == 401
    });
    assert!(seen, "node A still accepts a token revoked on node B");

    let kept = login(&b.addr);
    drop(a);
    let (success, stderr) = b.terminate();
    assert!(success, "{stderr}");
    let c = start("tokens-c");
    assert_eq!(jobs(&c.addr, &kept), 200, "a token outlives the node that issued it");
    assert_eq!(jobs(&c.addr, &token), 401, "and a revoked one stays revoked");
}

/// A share link made on one node opens on another (the link's routes need no login, and
/// read the link from the store), and a revocation on either is seen by both at once.
#[test]
fn a_share_link_made_on_one_node_opens_on_another_until_either_revokes_it() {
    let Some(cluster) = pg::shared("callflowd_shares_across_nodes") else { return };
    let url = cluster.create_database();
    let start = |name: &str| Daemon::start(temp_dir(name), &["--database", &url, "--node-name", name]);
    let (a, b) = (start("shares-a"), start("shares-b"));
    let job = analyse(&a.addr);
    let page = get(&a.addr, &format!("/api/v1/jobs/{job}/sessions"));
    let sid = page["sessions"][0]["id"].as_str().unwrap().to_string();
    let body = format!(r#"{{"job_id":"{job}","session_id":"{sid}"}}"#);
    let head =
        format!("POST /api/v1/shares HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}", body.len());
    let (status, reply) = request(&a.addr, &head, |conn| conn.write_all(body.as_bytes()).unwrap());
    assert_eq!(status, 201, "{reply}");
    let token = serde_json::from_str::<Value>(&reply).unwrap()["token"].as_str().unwrap().to_string();

    let shared = get(&b.addr, &format!("/api/v1/share/{token}"));
    assert_eq!(shared["id"], sid.as_str(), "node B opens the link node A made: {shared}");
    let (status, body) = request(&b.addr, &format!("DELETE /api/v1/shares/{token} HTTP/1.1"), |_| {});
    assert_eq!(status, 204, "{body}");
    for node in [&a, &b] {
        let (status, body) = request(&node.addr, &format!("GET /api/v1/share/{token} HTTP/1.1"), |_| {});
        assert_eq!(status, 404, "revoked on node B, so on every node: {body}");
    }
    let (status, _) = request(&a.addr, &format!("DELETE /api/v1/shares/{token} HTTP/1.1"), |_| {});
    assert_eq!(status, 404, "revoked once");
}
