//! `callflow-cli jobs`: batch runs persisted in a results directory, and a run killed with SIGKILL then restarted.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/captures/basic-call.pcap")
}

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_callflow-cli"))
}

fn run(args: &[&str]) -> Output {
    cli().args(args).env_remove("CALLFLOW_RESULTS_DIR").output().expect("run callflow-cli")
}

fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callflow-cli-jobs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// The example call repeated `copies` times, a minute apart: a long capture.
fn long_capture(dir: &Path, copies: u32) -> PathBuf {
    let bytes = std::fs::read(example()).unwrap();
    let mut records = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let caplen = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        records.push(&bytes[at..at + 16 + caplen]);
        at += 16 + caplen;
    }
    let secs = |r: &[u8]| u32::from_le_bytes(r[..4].try_into().unwrap());
    let span = secs(records.last().unwrap()) - secs(records[0]) + 60;
    let mut out = bytes[..24].to_vec();
    for copy in 0..copies {
        for r in &records {
            out.extend_from_slice(&(secs(r) + copy * span).to_le_bytes());
            out.extend_from_slice(&r[4..]);
        }
    }
    let path = dir.join("long.pcap");
    std::fs::write(&path, out).unwrap();
    path
}

/// `jobs list` as (id, state, sessions, attempts) rows, oldest first.
/// `jobs list`, oldest first: (id, state, sessions, attempts).
fn list(dir: &Path) -> Vec<(String, String, u64, u32)> {
    let out = run(&["jobs", "list", "--results-dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut rows: Vec<_> = text
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let id = f[0].to_string();
            assert!(callflow_jobs::Uuid::parse_str(&id).is_ok_and(|u| u.get_version_num() == 7), "{line}");
            (id, f[1].to_string(), f[3].parse().unwrap(), f[5].parse().unwrap())
        })
        .collect();
    rows.reverse();
    rows
}

/// `list`'s rows without their ids.
fn states(rows: &[(String, String, u64, u32)]) -> Vec<(&str, u64, u32)> {
    rows.iter().map(|(_, state, sessions, attempts)| (state.as_str(), *sessions, *attempts)).collect()
}

#[test]
fn a_batch_run_stores_its_jobs_and_sessions() {
    let dir = tmp_dir("batch");
    let bad = dir.join("page.html");
    std::fs::write(&bad, "<html></html>").unwrap();
    let ex = example();
    let out = run(&[
        "jobs",
        "run",
        "--results-dir",
        dir.to_str().unwrap(),
        "--workers",
        "2",
        ex.to_str().unwrap(),
        ex.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "a failed job fails the batch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("3/3 jobs finished"), "{stderr}");
    assert!(stderr.contains("error: 1 of 3 jobs failed"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(not a capture file: bad magic 0x3c68746d at offset 0)"), "{stdout}");
    assert!(dir.join("callflow.db").exists(), "the database lives in the results directory");
    let jobs = list(&dir);
    assert_eq!(states(&jobs), [("completed", 1, 1), ("completed", 1, 1), ("failed", 0, 1)]);
    let out = run(&["jobs", "sessions", "--results-dir", dir.to_str().unwrap(), &jobs[0].0, "--json"]);
    assert!(out.status.success());
    let session: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(session["state"], "COMPLETED");
    let out = run(&["jobs", "sessions", "--results-dir", dir.to_str().unwrap(), "9"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no job 9"));
    let unknown = "0190a5c2-7c1e-7d3a-9f1e-2b3c4d5e6f70";
    let out = run(&["jobs", "sessions", "--results-dir", dir.to_str().unwrap(), unknown]);
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("no job {unknown}")));
    let out = run(&["jobs", "sessions", "--results-dir", dir.to_str().unwrap(), "x1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("`x1` is not a job id"), "{out:?}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_killed_run_is_resumed_finished_jobs_kept_and_the_interrupted_one_rerun() {
    let dir = tmp_dir("sigkill");
    let long = long_capture(&dir, 800);
    let ex = example();
    let d = dir.to_str().unwrap();
    let mut child = cli()
        .args(["jobs", "run", "--quiet", "--results-dir", d, "--workers", "1"])
        .args([ex.to_str().unwrap(), ex.to_str().unwrap(), long.to_str().unwrap()])
        .env_remove("CALLFLOW_RESULTS_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once the two small jobs are done and the long one has made progress.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed: {:?}", list(&dir));
        let jobs = list(&dir);
        if jobs.len() == 3 && jobs[..2].iter().all(|j| j.1 == "completed") && jobs[2].1 == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "never saw the long job running: {jobs:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL on Unix: no destructor, no clean-up runs.
    child.wait().unwrap();
    let after_kill = list(&dir);
    assert_eq!(after_kill[2].1, "running", "the store still says what was going on");

    let restarted = Instant::now();
    let out = run(&["jobs", "run", "--quiet", "--results-dir", d]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("resuming 1 job(s) left by an earlier run (1 interrupted while running)"), "{stderr}");
    let resumed = list(&dir);
    assert_eq!(
        states(&resumed),
        [("completed", 1, 1), ("completed", 1, 1), ("completed", 1, 2)],
        "finished jobs untouched; the interrupted one re-run from the start"
    );
    let ids = |rows: &[(String, String, u64, u32)]| rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&resumed), ids(&after_kill), "the same jobs, under the same ids");
    eprintln!("restart test: killed with {after_kill:?}; resumed run finished in {:?}", restarted.elapsed());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_batch_run_on_a_results_dir_another_process_holds_is_refused_naming_it() {
    let dir = tmp_dir("locked");
    // This test process stands for callflowd (or another run) on the directory.
    let _held = callflow_jobs::DirLock::acquire(&dir).unwrap();
    let out = run(&["jobs", "run", "--results-dir", dir.to_str().unwrap(), example().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", std::process::id())), "{stderr}");
    assert!(!dir.join("callflow.db").exists(), "refused before its store was opened");
    let _ = std::fs::remove_dir_all(dir);
}

#[path = "../../../crates/callflow-jobs/tests/common/pg.rs"]
mod pg;

/// With `storage.database` a PostgreSQL URL, `jobs run` and `jobs list` use that server
/// (before, the URL was taken for a file path: a `postgres:` directory appeared).
#[test]
fn jobs_run_and_list_on_a_postgres_store() {
    let Some(cluster) = pg::shared("jobs_on_postgres") else { return };
    let url = cluster.create_database();
    let dir = tmp_dir("postgres");
    let with_db = |args: &[&str]| {
        cli()
            .args(args)
            .current_dir(&dir)
            .env_remove("CALLFLOW_RESULTS_DIR")
            .env("CALLFLOW_STORAGE__DATABASE", &url)
            .output()
            .expect("run callflow-cli")
    };
    let results = dir.join("results");
    let out =
        with_db(&["jobs", "run", "--quiet", "--results-dir", results.to_str().unwrap(), example().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = with_db(&["jobs", "list", "--results-dir", results.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{text}");
    assert!(rows[0].to_ascii_lowercase().contains("completed"), "{text}");
    assert!(!dir.join("postgres:").exists() && !results.join("callflow.db").exists(), "no file named after the URL");
    std::fs::remove_dir_all(dir).ok();
}
