//! Fuzz target: the TLS record layer, hellos, key log lines and record decryption on arbitrary bytes.
#![no_main]
use callflow_decode::tls::{self, crypto, keylog::KeyLog};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = (tls::frame_record(data), tls::starts_tls(data));
    let _ = KeyLog::parse(data);
    // Keys of a CBC and an AEAD suite, fixed: the decryption paths see damaged records.
    let cbc = crypto::CipherSuite::by_id(0xc013).expect("suite");
    let gcm = crypto::CipherSuite::by_id(0x1301).expect("suite");
    let mut keys = [
        crypto::RecordKeys::tls12(cbc, &[1; 48], &[2; 32], &[3; 32], crypto::Side::Client, data.first() == Some(&0)),
        crypto::RecordKeys::tls13(gcm, &[4; 32]),
    ];
    let mut out = Vec::new();
    for record in tls::records(data).take(64) {
        let Ok(record) = record else { break };
        for k in keys.iter_mut().flatten() {
            let _ = k.decrypt(&record, &mut out);
        }
        for m in tls::handshake_messages(record.fragment).take(64) {
            let Ok(m) = m else { break };
            let _ = (tls::ClientHello::parse(m.body), tls::ServerHello::parse(m.body));
        }
    }
});
