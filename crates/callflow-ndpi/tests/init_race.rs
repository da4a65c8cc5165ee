//! Classifiers made on several threads at once all start: the first detection modules of a process initialise libgcrypt, which aborts the process when two threads do it together.
//!
//! libgcrypt is initialised once per process, so only the first modules a process makes
//! can race: the test runs itself again as fresh processes, each making its first
//! classifiers on several threads at once, and each must exit cleanly.

mod common;

use callflow_ndpi::NdpiClassifier;
use common::unavailable;
use std::process::Command;
use std::sync::{Arc, Barrier};

/// Set in the processes the test starts: they make the classifiers.
const CHILD: &str = "CALLFLOW_NDPI_INIT_RACE_CHILD";
const PROCESSES: usize = 24;
const THREADS: usize = 8;

#[test]
fn classifiers_made_on_several_threads_at_once_do_not_abort_in_libgcrypts_initialisation() {
    if !NdpiClassifier::is_built_in() {
        return unavailable("callflow-ndpi was built without nDPI (run `cargo xtask ndpi`, then `cargo xtask test`)");
    }
    if std::env::var_os(CHILD).is_some() {
        return make_classifiers_at_once();
    }
    let me = std::env::current_exe().expect("the test binary's path");
    for run in 0..PROCESSES {
        let out = Command::new(&me)
            .args(["--exact", "--nocapture", "--test-threads=1"])
            .arg("classifiers_made_on_several_threads_at_once_do_not_abort_in_libgcrypts_initialisation")
            .env(CHILD, "1")
            .output()
            .expect("the test binary starts again");
        assert!(
            out.status.success(),
            "process {run} of {PROCESSES} ended with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn make_classifiers_at_once() {
    let start = Arc::new(Barrier::new(THREADS));
    let made: Vec<bool> = (0..THREADS)
        .map(|_| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                NdpiClassifier::new(Default::default()).is_ok()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("a thread making a classifier panicked"))
        .collect();
    assert_eq!(made, vec![true; THREADS], "every classifier is made");
}
