//! Runs bindgen over `wrapper.h` with an allowlist of what callflow-ndpi calls.

use std::path::{Path, PathBuf};

const FUNCTIONS: &[&str] = &[
    "ndpi_init_detection_module",
    "ndpi_finalize_initialization",
    "ndpi_exit_detection_module",
    "ndpi_set_protocol_detection_bitmask2",
    "ndpi_detection_get_sizeof_ndpi_flow_struct",
    "ndpi_free_flow_data",
    "ndpi_detection_process_packet",
    "ndpi_detection_giveup",
    "ndpi_extra_dissection_possible",
    "ndpi_get_proto_name",
    "ndpi_confidence_get_name",
    "ndpi_get_num_supported_protocols",
    "ndpi_revision",
    "ndpi_get_api_version",
    "ndpi_get_gcrypt_version",
];

pub fn generate(wrapper: &Path, includes: &[PathBuf]) -> Result<(), String> {
    println!("cargo:rerun-if-env-changed=LIBCLANG_PATH");
    let mut builder = bindgen::Builder::default()
        .header(wrapper.to_string_lossy())
        .clang_args(includes.iter().map(|i| format!("-I{}", i.display())))
        .allowlist_type("ndpi_protocol")
        .allowlist_type("ndpi_flow_struct")
        .allowlist_type("ndpi_confidence_t")
        .allowlist_type("ndpi_protocol_id_t")
        .allowlist_type("ndpi_prefs")
        .allowlist_type("NDPI_PROTOCOL_BITMASK")
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for f in FUNCTIONS {
        builder = builder.allowlist_function(f);
    }
    // bindgen panics when it cannot load libclang; that panic names no package, so it is
    // caught and replaced by one that does.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || builder.generate()));
    std::panic::set_hook(hook);
    let bindings = match result {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return Err(format!("bindgen could not read the nDPI headers: {e}")),
        Err(_) => {
            return Err("bindgen needs libclang, which was not found: apt-get install libclang-dev \
                        (or point LIBCLANG_PATH at a libclang.so)"
                .to_string())
        }
    };
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?).join("bindings.rs");
    bindings.write_to_file(&out).map_err(|e| format!("writing {}: {e}", out.display()))
}
