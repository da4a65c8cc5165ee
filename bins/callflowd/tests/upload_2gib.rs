//! A 2 GiB upload to the real callflowd: the server streams it to disk with flat memory, and the stored file goes with its job. (Its own test binary: the process measured is the server's, not this one.)

mod common;

use common::{request, temp_dir, Daemon};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

const MIB: u64 = 1 << 20;

/// `field` of `/proc/PID/status` (`VmHWM`, `RssAnon`...), in bytes.
fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':')).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// 1 MiB of identical pcap records (1,024 bytes each: Ethernet, IPv4, UDP, zeros), to be
/// sent again and again after the file header: the body is made as it is sent.
fn records() -> Vec<u8> {
    const RECORD: usize = 1024;
    let frame_len = RECORD - 16;
    let mut frame = vec![0u8; frame_len];
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14] = 0x45;
    frame[16..18].copy_from_slice(&((frame_len - 14) as u16).to_be_bytes());
    frame[22] = 64;
    frame[23] = 17;
    frame[26..30].copy_from_slice(&[10, 0, 0, 1]);
    frame[30..34].copy_from_slice(&[10, 0, 0, 2]);
    frame[34..36].copy_from_slice(&40000u16.to_be_bytes());
    frame[36..38].copy_from_slice(&40002u16.to_be_bytes());
    frame[38..40].copy_from_slice(&((frame_len - 34) as u16).to_be_bytes());
    let mut block = Vec::with_capacity(MIB as usize);
    for i in 0..(MIB as usize / RECORD) as u32 {
        for v in [1_700_000_000u32, i, frame_len as u32, frame_len as u32] {
            block.extend_from_slice(&v.to_le_bytes());
        }
        block.extend_from_slice(&frame);
    }
    block
}

fn pcap_header() -> Vec<u8> {
    let mut h = Vec::new();
    for v in [0xa1b2c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    h
}

#[test]
fn a_2_gib_upload_keeps_the_server_memory_flat_and_its_file_goes_with_its_job() {
    const BLOCKS: u64 = 2048;
    let daemon = Daemon::start(temp_dir("upload-2gib"), &[]);
    let pid = daemon.child.id();
    let (anon_before, hwm_before) = (proc_status(pid, "RssAnon"), proc_status(pid, "VmHWM"));
    // Anonymous memory is what buffering the body would grow; the file's pages are the
    // kernel's page cache and the analysis maps the capture (file pages), so RssAnon is
    // sampled while the body streams.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(proc_status(pid, "RssAnon"));
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            peak
        })
    };
    let (header, block) = (pcap_header(), records());
    let total = header.len() as u64 + BLOCKS * MIB;
    let started = Instant::now();
    let head = format!(
        "POST /api/v1/upload?name=big.pcap HTTP/1.1\r\nContent-Type: application/vnd.tcpdump.pcap\r\n\
         Content-Length: {total}"
    );
    let (status, body) = request(&daemon.addr, &head, |conn| {
        conn.write_all(&header).unwrap();
        for _ in 0..BLOCKS {
            conn.write_all(&block).unwrap();
        }
    });
    let elapsed = started.elapsed();
    let hwm_after = proc_status(pid, "VmHWM");
    stop.store(true, Ordering::Relaxed);
    let anon_peak = sampler.join().unwrap();
    assert_eq!(status, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["bytes"], total);
    let job = v["job_id"].as_str().unwrap().to_string();
    // Named after the job's key in the store: the first job's is 1.
    let stored = daemon.dir.join("uploads").join("1.capture");
    assert_eq!(std::fs::metadata(&stored).unwrap().len(), total, "stored whole, under the job's key");
    // Reported, not asserted: the machine's speed is not the server's.
    eprintln!(
        "2 GiB upload: {:.2} s, {:.0} MB/s; server RssAnon {} MiB before, peak {} MiB; VmHWM {} -> {} MiB",
        elapsed.as_secs_f64(),
        total as f64 / 1e6 / elapsed.as_secs_f64(),
        anon_before / MIB,
        anon_peak / MIB,
        hwm_before / MIB,
        hwm_after / MIB,
    );
    let grown = anon_peak.saturating_sub(anon_before);
    assert!(grown < 64 * MIB, "the server's anonymous memory grew by {} MiB for a 2 GiB upload", grown / MIB);

    // Deleting the job cancels its analysis of 2 GiB first, and removes the file.
    let (status, body) = request(&daemon.addr, &format!("DELETE /api/v1/jobs/{job} HTTP/1.1"), |_| {});
    assert_eq!(status, 204, "{body}");
    assert!(!stored.exists());
    let (success, rest) = daemon.terminate();
    assert!(success, "{rest}");
}
