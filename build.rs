//! Generates the CRI v1 server and client from our own proto, with protox
//! (pure Rust) so that no system `protoc` is needed; and builds the static
//! built-in pause program that dockercri carries (`pause/pause.c`); and
//! records the git commit it is built from for `--version`.

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

    git_commit();
    Ok(())
}

/// Sets `DOCKERCRI_GIT_COMMIT` to the short commit of the checkout, or
/// "unknown" (a source tarball, no git): never a build failure. Reruns
/// when HEAD moves (a checkout, or a commit on the current branch).
fn git_commit() {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !text.is_empty()).then_some(text)
    };
    let commit = git(&["rev-parse", "--short=7", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=DOCKERCRI_GIT_COMMIT={commit}");
    // In a worktree `.git` is a file: ask git where HEAD and its branch live.
    // Only existing files are watched (a missing one would rerun every build).
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
        watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    }
    for path in watched.into_iter().flatten() {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
