//! Live capture in real network namespaces: datagrams sent over a veth pair come out of the queue, filtered, and every start-up error is the variant that names it.

mod common;

use callflow_correlate::{FrameSource, Pulled};
use callflow_live::capture::{start, CaptureSpec, NetnsTarget};
use callflow_live::error::Capability;
use callflow_live::{channel, ChannelSource, LiveError, OwnedFrame};
use common::netns::{root_or_skip, udp_dst_port, VethPair};
use std::process::Command;
use std::time::{Duration, Instant};

/// Pulls frames until `want` arrived or the source has been quiet for a while (a bound on
/// the wait, not a measurement).
fn collect(source: &mut ChannelSource, want: usize) -> Vec<OwnedFrame> {
    let mut frames = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while frames.len() < want && Instant::now() < deadline {
        match source.next_frame().unwrap() {
            Some(Pulled::Here(f)) => frames.push(OwnedFrame {
                ts: f.ts,
                link_type: f.link_type,
                data: f.data.to_vec(),
                orig_len: f.orig_len,
                interface: f.interface,
            }),
            Some(_) => {}
            None => break,
        }
    }
    frames
}

#[test]
fn capture_in_a_namespace_by_path_gets_only_what_the_filter_lets_through() {
    if !root_or_skip("capture_in_a_namespace_by_path_gets_only_what_the_filter_lets_through") {
        return;
    }
    let pair = VethPair::new(None);
    let (tx, mut rx) = channel(1024, Duration::from_millis(20));
    let spec = CaptureSpec {
        netns: Some(NetnsTarget::Path(pair.capture_path())),
        interfaces: vec![pair.capture_if.clone()],
        filter: Some("udp dst port 5060".into()),
        ..CaptureSpec::default()
    };
    let handle = start(&spec, tx).unwrap();
    assert_eq!(handle.interfaces().len(), 1);
    assert_eq!(handle.interfaces()[0].name, pair.capture_if);
    assert_eq!(handle.interfaces()[0].link_type, callflow_decode::LinkType::ETHERNET);
    assert_eq!(handle.netns_inode(), Some(pair.capture_inode()));

    pair.send_udp(5070, 20, b"not for us");
    pair.send_udp(5060, 20, b"OPTIONS sip:x SIP/2.0\r\n\r\n");
    let frames = collect(&mut rx, 20);
    let stats = handle.stop();
    // Anything still queued arrived before the stop: count it too.
    let frames: Vec<_> = frames.into_iter().chain(collect(&mut rx, usize::MAX)).collect();
    let ports: Vec<_> = frames.iter().map(|f| udp_dst_port(&f.data)).collect();
    assert_eq!(ports, vec![Some(5060); 20]);
    assert!(frames.iter().all(|f| f.interface == 0 && f.orig_len as usize == f.data.len()));
    // Nanosecond timestamps of now, not of 1970 or microseconds read as nanoseconds.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(frames.iter().all(|f| (f.ts.as_nanos() / 1_000_000_000 - now).abs() < 600), "{:?}", frames[0].ts);
    // The kernel counts from the socket's opening, before libpcap sets the filter: a packet
    // of the fresh link (an IPv6 neighbour solicitation...) may be counted then (seen: 21).
    assert!((20..=30).contains(&stats[0].received), "{stats:?}");
    assert_eq!(stats[0].kernel_dropped, 0);
}

#[test]
fn capture_by_inode_on_all_interfaces_describes_each_interface() {
    if !root_or_skip("capture_by_inode_on_all_interfaces_describes_each_interface") {
        return;
    }
    let pair = VethPair::new(None);
    let (tx, mut rx) = channel(1024, Duration::from_millis(20));
    let spec = CaptureSpec {
        netns: Some(NetnsTarget::Inode(pair.capture_inode())),
        filter: Some("udp".into()),
        ..CaptureSpec::default()
    };
    let handle = start(&spec, tx).unwrap();
    let names: Vec<_> = handle.interfaces().iter().map(|i| i.name.as_str()).collect();
    assert!(names.contains(&"lo") && names.contains(&pair.capture_if.as_str()), "{names:?}");
    let veth = names.iter().position(|n| *n == pair.capture_if).unwrap() as u32;
    pair.send_udp(9, 5, b"discard");
    let frames = collect(&mut rx, 5);
    handle.stop();
    let udp: Vec<_> = frames.iter().filter(|f| udp_dst_port(&f.data) == Some(9)).collect();
    assert_eq!(udp.len(), 5, "{} frames in all", frames.len());
    assert!(udp.iter().all(|f| f.interface == veth));
}

#[test]
fn a_consumer_that_does_not_read_costs_counted_drops_not_memory() {
    if !root_or_skip("a_consumer_that_does_not_read_costs_counted_drops_not_memory") {
        return;
    }
    let pair = VethPair::new(None);
    let (tx, mut rx) = channel(8, Duration::from_millis(20));
    let counters = rx.counters().clone();
    let spec = CaptureSpec {
        netns: Some(NetnsTarget::Path(pair.capture_path())),
        interfaces: vec![pair.capture_if.clone()],
        filter: Some("udp dst port 5060".into()),
        ..CaptureSpec::default()
    };
    let handle = start(&spec, tx).unwrap();
    pair.send_udp(5060, 500, &[b'x'; 200]);
    // Wait until the reader has handed on (or dropped) all of them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while handle.stats()[0].received < 500 && counters.snapshot().2 < 492 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = handle.stop();
    let queued = collect(&mut rx, usize::MAX).len() as u64;
    let (_, _, dropped, kernel) = counters.snapshot();
    assert!(queued <= 8, "the queue holds at most its capacity, got {queued}");
    assert_eq!(queued + dropped + kernel, 500, "queued {queued}, dropped {dropped}, kernel {kernel}, {stats:?}");
    assert!(dropped >= 400, "dropped {dropped}");
}

#[test]
fn start_up_errors_name_the_interface_or_the_filter() {
    if !root_or_skip("start_up_errors_name_the_interface_or_the_filter") {
        return;
    }
    let pair = VethPair::new(None);
    let netns = Some(NetnsTarget::Path(pair.capture_path()));

    let (tx, _rx) = channel(8, Duration::from_millis(20));
    let spec = CaptureSpec { netns: netns.clone(), interfaces: vec!["eth0".into()], ..CaptureSpec::default() };
    match start(&spec, tx).unwrap_err() {
        // eth0 is the host's, not the namespace's: the lookup happened inside it.
        LiveError::UnknownInterface { name, netns, available } => {
            assert_eq!(name, "eth0");
            assert_eq!(netns, format!("net:[{}]", pair.capture_inode()));
            assert_eq!(available, vec!["lo".to_owned(), pair.capture_if.clone()]);
        }
        other => panic!("expected UnknownInterface, got {other}"),
    }

    let (tx, _rx) = channel(8, Duration::from_millis(20));
    let spec = CaptureSpec { netns, filter: Some("udp port".into()), ..CaptureSpec::default() };
    match start(&spec, tx).unwrap_err() {
        LiveError::BadFilter { filter, message } => {
            assert_eq!(filter, "udp port");
            assert!(message.contains("syntax error"), "{message}");
        }
        other => panic!("expected BadFilter, got {other}"),
    }
}

#[test]
fn a_namespace_with_too_many_interfaces_is_refused_and_a_name_asked_twice_is_opened_once() {
    if !root_or_skip("a_namespace_with_too_many_interfaces_is_refused_and_a_name_asked_twice_is_opened_once") {
        return;
    }
    let pair = VethPair::new(None);
    let netns = Some(NetnsTarget::Path(pair.capture_path()));
    let (tx, _rx) = channel(8, Duration::from_millis(20));
    let spec =
        CaptureSpec { netns: netns.clone(), interfaces: vec![pair.capture_if.clone(); 3], ..CaptureSpec::default() };
    assert_eq!(start(&spec, tx).unwrap().interfaces().len(), 1);

    // lo, the veth and 32 more veth pairs: 66, more than a capture may take.
    for i in 0..callflow_live::capture::MAX_INTERFACES / 2 {
        let (a, b) = (format!("a{i}"), format!("b{i}"));
        let out = Command::new("ip")
            .args(["-n", &pair.capture_ns, "link", "add", &a, "type", "veth", "peer", "name", &b])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let (tx, _rx) = channel(8, Duration::from_millis(20));
    let spec = CaptureSpec { netns, ..CaptureSpec::default() };
    match start(&spec, tx).unwrap_err() {
        LiveError::InvalidTarget(message) => assert!(message.contains("66 interfaces, more than the 64"), "{message}"),
        other => panic!("expected InvalidTarget, got {other}"),
    }
}

#[test]
fn a_process_started_during_the_capture_does_not_keep_it_open_after_the_stop() {
    if !root_or_skip("a_process_started_during_the_capture_does_not_keep_it_open_after_the_stop") {
        return;
    }
    let pair = VethPair::new(None);
    let (tx, _rx) = channel(8, Duration::from_millis(20));
    let spec = CaptureSpec {
        netns: Some(NetnsTarget::Path(pair.capture_path())),
        interfaces: vec![pair.capture_if.clone()],
        ..CaptureSpec::default()
    };
    let handle = start(&spec, tx).unwrap();
    let sockets = || {
        let out =
            Command::new("ip").args(["netns", "exec", &pair.capture_ns, "cat", "/proc/net/packet"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count() - 1
    };
    assert_eq!(sockets(), 1);
    // A child that outlives the capture (as a job's helper process or a test's tshark would).
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    handle.stop();
    let open = sockets();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(open, 0, "the child inherited the capture's packet socket");
}

/// Runs `child` of this test binary with `capability` out of its bounding set (so root
/// has lost it), handing it the namespace path.
fn run_without(capability: &str, child: &str, netns: &std::path::Path) -> std::process::Output {
    let exe = std::env::current_exe().unwrap();
    Command::new("setpriv")
        .args(["--bounding-set", &format!("-{capability}"), "--inh-caps", &format!("-{capability}"), "--"])
        .arg(exe)
        .args(["--exact", child, "--nocapture", "--test-threads=1"])
        .env("CALLFLOW_TEST_CHILD_NETNS", netns)
        .output()
        .expect("running setpriv")
}

#[test]
fn without_cap_sys_admin_entering_a_namespace_is_not_permitted_and_says_so() {
    if !root_or_skip("without_cap_sys_admin_entering_a_namespace_is_not_permitted_and_says_so") {
        return;
    }
    let pair = VethPair::new(None);
    let out = run_without("sys_admin", "child_start_capture", &pair.capture_path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("child outcome: not permitted: entering network namespace")
            && stdout.contains("needs CAP_SYS_ADMIN"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn without_cap_net_raw_opening_an_interface_is_not_permitted_and_says_so() {
    if !root_or_skip("without_cap_net_raw_opening_an_interface_is_not_permitted_and_says_so") {
        return;
    }
    let pair = VethPair::new(None);
    let out = run_without("net_raw", "child_start_capture", &pair.capture_path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("child outcome: not permitted: capturing on") && stdout.contains("needs CAP_NET_RAW"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The other half of the two tests above: does its work only when they start it (with
/// the namespace in `CALLFLOW_TEST_CHILD_NETNS`), and reports the outcome on stdout.
#[test]
fn child_start_capture() {
    let Some(path) = std::env::var_os("CALLFLOW_TEST_CHILD_NETNS") else { return };
    let (tx, _rx) = channel(8, Duration::from_millis(20));
    let spec = CaptureSpec { netns: Some(NetnsTarget::Path(path.into())), ..CaptureSpec::default() };
    match start(&spec, tx) {
        Ok(handle) => {
            handle.stop();
            println!("child outcome: started");
        }
        Err(err) => {
            if let LiveError::NotPermitted { capability, .. } = &err {
                assert!(matches!(capability, Capability::SysAdmin | Capability::NetRaw));
            }
            println!("child outcome: {err}");
        }
    }
}
