//! `include/spike.h` is generated from the Rust source by cbindgen and checked in; this test
//! regenerates it into a string and fails if the checked-in copy is stale (rustls-ffi runs
//! `git diff --exit-code` after cbindgen; this is the same guard inside `cargo test`).
//!
//! `SPIKE_BLESS=1 cargo test -p spike-ffi --test header_current` rewrites the header.

use std::path::Path;

fn generate() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let version = env!("CARGO_PKG_VERSION");
    let mut parts = version.split('.');
    let mut next = || parts.next().unwrap_or("0").to_owned();
    let (major, minor, patch) = (next(), next(), next());
    config.after_includes = Some(format!(
        "\n#define SPIKE_FFI_VERSION \"{version}\"\n#define SPIKE_FFI_VERSION_MAJOR {major}\n\
         #define SPIKE_FFI_VERSION_MINOR {minor}\n#define SPIKE_FFI_VERSION_PATCH {patch}\n"
    ));
    // `with_src` follows the crate's `mod` declarations from lib.rs without running
    // `cargo metadata`, so the test needs neither the network nor the lock file.
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen parses ffi/src");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("cbindgen writes UTF-8")
}

#[test]
fn checked_in_header_matches_the_rust_source() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/spike.h");
    let fresh = generate();
    if std::env::var_os("SPIKE_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &fresh).expect("write include/spike.h");
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == fresh,
        "ffi/include/spike.h is stale: run `SPIKE_BLESS=1 cargo test -p spike-ffi --test \
         header_current` and commit the result"
    );
}

#[test]
fn header_declares_every_entry_point_and_code() {
    let header = generate();
    for name in [
        "spike_client_new_from_env",
        "spike_client_new",
        "spike_client_free",
        "spike_client_builder_build",
        "spike_client_builder_set_jwt_audience",
        "spike_client_put_secret",
        "spike_client_get_secret",
        "spike_secret_get",
        "spike_secret_free",
        "spike_client_list_secrets",
        "spike_client_delete_secret",
        "spike_client_undelete_secret",
        "spike_client_secret_metadata",
        "spike_client_create_policy",
        "spike_client_list_policies",
        "spike_client_delete_policy",
        "spike_client_encrypt",
        "spike_client_decrypt",
        "spike_error_message",
        "spike_last_error",
        "spike_version",
        "SPIKE_RESULT_FORBIDDEN = 302",
        "#define SPIKE_PERMISSION_READ",
        "typedef struct spike_client spike_client;",
    ] {
        assert!(header.contains(name), "spike.h lacks {name}");
    }
}
