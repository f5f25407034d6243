//! Compiles the SPIFFE Workload API proto with protox (pure Rust), so no system `protoc` is
//! needed; tonic's generated code goes to `OUT_DIR` only.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/workload.proto");
    let fds = protox::compile(["workload.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)?;
    Ok(())
}
