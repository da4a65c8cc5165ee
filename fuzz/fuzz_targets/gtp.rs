//! Fuzz target: GTPv1 and GTPv2 headers, IEs (grouped ones recursively) and IE values.
#![no_main]
use callflow_decode::gtp::{self, v2::ie, V1Ies, V2Ie};

fn walk_v2(ie: &V2Ie<'_>) {
    let _ = match ie.ie_type {
        ie::PAA => gtp::Paa::parse(ie.value, ie.offset).map(|_| ()),
        ie::FTEID => gtp::Fteid::parse(ie.value, ie.offset).map(|_| ()),
        ie::BEARER_QOS => gtp::BearerQos::parse(ie.value, ie.offset).map(|_| ()),
        ie::ULI => gtp::Uli::parse(ie.value, ie.offset).map(|_| ()),
        ie::APN => gtp::Apn::parse(ie.value, ie.offset).map(|a| drop(a.to_string())),
        _ => gtp::Digits::tbcd(ie.value, ie.offset).map(|_| ()),
    };
    if ie.is_grouped() {
        if let Ok(group) = ie.group() {
            group.flatten().for_each(|inner| walk_v2(&inner));
        }
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(h) = gtp::v1_header(data) {
        let body = data.get(h.header_len..h.end.min(data.len())).unwrap_or_default();
        for ie in V1Ies::new(body, h.header_len).flatten() {
            let _ = gtp::EndUserAddress::parse(ie.value, ie.offset);
            let _ = gtp::QosProfile::parse(ie.value, ie.offset);
        }
    }
    for m in gtp::v2_messages(data).flatten() {
        m.ies().flatten().for_each(|ie| walk_v2(&ie));
    }
});
