//! `callflowd` under a flood of logins: its memory stays flat, since password verifications (argon2, 19 MiB each) are capped.

mod common;

use common::{hash_password, request, temp_dir, Daemon};
use std::io::Write;

/// A field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in KiB.
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(&format!("{field}:"))).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn login(addr: &str, user: &str) -> u16 {
    let body = format!(r#"{{"username":"{user}","password":"guess"}}"#);
    let head = format!("POST /api/login HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}", body.len());
    request(addr, &head, |conn| conn.write_all(body.as_bytes()).unwrap()).0
}

#[cfg(target_os = "linux")]
#[test]
fn three_hundred_parallel_logins_leave_memory_flat() {
    let dir = temp_dir("login-flood");
    let config = dir.join("callflowd.toml");
    // No throttles: what is checked is the cap on verifications running at once, which
    // holds even when the attempts come from many addresses and name many users.
    let toml = format!(
        "[auth]\nenabled = true\nusers = {{ ann = \"{}\" }}\nlogin_attempts_per_minute = 0\n\
         [limits]\nrate_limit_per_second = 0\n",
        hash_password("s3cret")
    );
    std::fs::write(&config, toml).unwrap();
    let daemon = Daemon::start(dir, &["--config", config.to_str().unwrap()]);
    let pid = daemon.child.id();
    assert_eq!(login(&daemon.addr, "ann"), 401, "one verification first, as a baseline");
    let before = memory_kib(pid, "VmRSS");
    let attempts: Vec<_> = (0..300)
        .map(|i| {
            let addr = daemon.addr.clone();
            // A known user (each attempt verified even before the fix) and unknown ones.
            let user = if i % 2 == 0 { "ann".to_string() } else { format!("user{i}") };
            std::thread::spawn(move || login(&addr, &user))
        })
        .collect();
    let statuses: Vec<u16> = attempts.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(statuses.iter().all(|s| [401, 503].contains(s)), "{statuses:?}");
    // The peak, not what is left: 300 verifications at once took 5.9 GB.
    let peak = memory_kib(pid, "VmHWM");
    let growth_mib = peak.saturating_sub(before) / 1024;
    eprintln!("RSS {} MiB before, peak {} MiB during 300 parallel logins", before / 1024, peak / 1024);
    assert!(growth_mib < 200, "memory grew by {growth_mib} MiB under 300 parallel logins");
    let (success, rest) = daemon.terminate();
    assert!(success, "{rest}");
}
