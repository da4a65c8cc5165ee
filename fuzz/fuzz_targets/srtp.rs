//! Fuzz target: `a=crypto` values, DTLS-SRTP ServerHellos and SRTCP decryption (every suite decrypted, with and without an MKI) on arbitrary bytes.
#![no_main]
use callflow_decode::sdp::Crypto;
use callflow_decode::srtp::{SrtcpContext, SrtpSuite};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Crypto::parse(text);
    }
    let _ = callflow_decode::srtp::dtls_srtp_profile(data);
    // Keys fixed: damaged packets reach the MKI, tag and decryption paths.
    let contexts = [
        SrtcpContext::new(SrtpSuite::AesCm128HmacSha1_80, &[1; 30], Some((7, 4)), 0),
        SrtcpContext::new(SrtpSuite::AesCm256HmacSha1_32, &[2; 46], None, 3),
        SrtcpContext::new(SrtpSuite::AeadAes128Gcm, &[3; 28], None, 0),
        SrtcpContext::new(SrtpSuite::AeadAes256Gcm, &[4; 44], Some((1, 1)), 0),
    ];
    let mut out = Vec::new();
    for mut ctx in contexts.into_iter().flatten() {
        let _ = ctx.decrypt(data, &mut out);
    }
});
