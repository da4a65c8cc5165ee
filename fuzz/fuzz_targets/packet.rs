//! Fuzz target: one frame's bytes decoded down to the transport layer, under each link type.
#![no_main]
use callflow_decode::{packet::decode_frame, LinkType};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&selector, frame)) = data.split_first() else { return };
    let links = [
        LinkType::ETHERNET,
        LinkType::LINUX_SLL,
        LinkType::LINUX_SLL2,
        LinkType::RAW,
        LinkType::NULL,
        LinkType::LOOP,
        LinkType::IPV4,
        LinkType::IPV6,
    ];
    let _ = decode_frame(links[usize::from(selector) % links.len()], frame);
});
