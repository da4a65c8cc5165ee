//! A detection module kept from an earlier classifier classifies every capture exactly as a new module does.
//!
//! `NdpiClassifier::new` takes a module a dropped classifier left (emptied of nDPI's
//! caches by `callflow_ndpi_forget`) rather than paying some tens of milliseconds for a new
//! one. Over nDPI's test captures and the public corpus, each capture is classified once
//! with a new module and twice with kept ones, after every other capture in forward and in
//! reverse order: the three answers must be the same, flow for flow.
//!
//! One test in its own binary: the kept modules are shared by the whole process, and no
//! other test may take or leave one meanwhile.

mod common;

use callflow_ndpi::NdpiClassifier;
use common::{captures_in, corpus, ours, unavailable};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[test]
fn a_kept_module_classifies_every_capture_as_a_new_one() {
    if !NdpiClassifier::is_built_in() {
        return unavailable("callflow-ndpi was built without nDPI (run `cargo xtask ndpi`, then `cargo xtask test`)");
    }
    let mut captures = captures_in(&corpus(), false);
    captures.extend(captures_in(&corpus().join("../public"), true));
    if captures.len() < 60 {
        return unavailable("the corpora at ../shared/pcaps/ndpi-4.2 and ../shared/pcaps/public are missing");
    }
    NdpiClassifier::release_spare_modules();
    drop(NdpiClassifier::new(Default::default()).unwrap());
    if NdpiClassifier::spare_modules() != 1 {
        return unavailable("modules are not kept: nDPI is the system's libndpi, not the vendored build");
    }

    let mut new = BTreeMap::new();
    for capture in &captures {
        NdpiClassifier::release_spare_modules();
        new.insert(capture.clone(), ours(capture).0);
    }
    let check = |order: &mut dyn Iterator<Item = &PathBuf>, which: &str| {
        let mut flows = 0;
        for capture in order {
            let kept = ours(capture).0;
            assert_eq!(NdpiClassifier::spare_modules(), 1, "the module was kept");
            assert_eq!(
                kept,
                new[capture],
                "{} with a module kept from the capture before it, {which}",
                capture.display()
            );
            flows += kept.len();
        }
        flows
    };
    let flows = check(&mut captures.iter(), "in order");
    assert_eq!(check(&mut captures.iter().rev(), "in reverse order"), flows);
    assert!(flows > 900, "{flows} flows in {} captures", captures.len());
}
