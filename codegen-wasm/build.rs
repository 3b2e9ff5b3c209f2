//! Builds `wpc-wasm-reference` (the reference kernels as a wasm32 module)
//! so the backend can embed it: the module ops without a hand-written
//! kernel run in. It is a separate cargo invocation for the wasm32 target,
//! with its own target directory beside ours so it never waits on our lock.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-unknown-unknown";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("codegen-wasm is in the workspace");
    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    // OUT_DIR is <target>/<profile>/build/<package>/out.
    let target_root = out.ancestors().nth(4).unwrap_or(&out);
    let target_dir = target_root.join("wasm-reference");
    for watched in [
        "ir/src",
        "ir/Cargo.toml",
        "codegen-wasm/reference",
        "Cargo.lock",
    ] {
        println!(
            "cargo::rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "-p",
            "wpc-wasm-reference",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        // Size over link time: strip names and debug info.
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false");
    // What the outer build sets for its own target must not leak in (a
    // clippy or coverage wrapper, host RUSTFLAGS, a target override).
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("cargo runs");
    let built = target_dir
        .join(TARGET)
        .join("release")
        .join("wpc_wasm_reference.wasm");
    if !status.success() || !built.exists() {
        panic!(
            "building the wasm32 reference kernels failed (is the target installed? \
             `rustup target add {TARGET}`)"
        );
    }
    copy(&built, &out.join("reference.wasm"));
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), to.display()));
}
