//! Generates the CRI v1 server and client from our own proto, with protox
//! (pure Rust) so that no system `protoc` is needed; and builds the static
//! built-in pause program that dockercri carries (`pause/pause.c`).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/runtime/v1/api.proto");
    let fds = protox::compile(["runtime/v1/api.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;

    println!("cargo:rerun-if-changed=pause/pause.c");
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("pause");
    // The cc crate picks the C compiler and its flags for TARGET (CC_<target>,
    // TARGET_CC, CFLAGS...), so a cross build embeds a pause program of the
    // target's architecture. It builds libraries only: take its compiler and
    // link the one static executable ourselves.
    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .opt_level_str("s")
        .debug(false)
        .pic(false)
        .warnings(true)
        .try_get_compiler()?;
    let status = compiler
        .to_command()
        .args(["-static", "-s", "-o"])
        .arg(&out)
        .arg("pause/pause.c")
        .status()
        .map_err(|e| {
            format!(
                "cannot run the C compiler {:?} for pause/pause.c: {e}",
                compiler.path()
            )
        })?;
    if !status.success() {
        return Err(format!(
            "building pause/pause.c with {:?} failed ({status}); a static libc for the target (libc6-dev) is needed",
            compiler.path()
        )
        .into());
    }
    Ok(())
}
