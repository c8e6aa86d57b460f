//! Generates the CRI v1 server and client from our own proto, with protox
//! (pure Rust) so that no system `protoc` is needed; and builds the static
//! built-in pause program that dockercri carries (`pause/pause.c`).

use std::path::PathBuf;
use std::process::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/runtime/v1/api.proto");
    let fds = protox::compile(["runtime/v1/api.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;

    println!("cargo:rerun-if-changed=pause/pause.c");
    println!("cargo:rerun-if-env-changed=CC");
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("pause");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-static", "-Os", "-s", "-Wall", "-o"])
        .arg(&out)
        .arg("pause/pause.c")
        .status()
        .map_err(|e| format!("cannot run the C compiler {cc:?} for pause/pause.c: {e}"))?;
    if !status.success() {
        return Err(format!("building pause/pause.c with {cc:?} failed ({status}); a static libc (libc6-dev) is needed").into());
    }
    Ok(())
}
