//! What `bt-submit --version` says beyond the crate's version: the commit it
//! was built from and the Slurm release its package was built for, so a bug
//! report names both. Neither is needed to build: without git (a source
//! tarball) or outside scripts/package.sh the line says so instead.
//!
//! `BT_SUBMIT_COMMIT` names the commit where git cannot (a build from an
//! exported tree); `BT_SUBMIT_SLURM_RELEASE` is set by scripts/package.sh to
//! the release it reads from slurm_version.h.

use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=BT_SUBMIT_COMMIT");
    println!("cargo:rerun-if-env-changed=BT_SUBMIT_SLURM_RELEASE");
    let commit = env::var("BT_SUBMIT_COMMIT")
        .ok()
        .filter(|commit| !commit.is_empty())
        .or_else(git_commit);
    let commit = commit.map_or_else(|| "commit unknown".to_owned(), |c| format!("commit {c}"));
    let slurm = match env::var("BT_SUBMIT_SLURM_RELEASE") {
        Ok(release) if !release.is_empty() => format!("packaged for Slurm {release}"),
        _ => "not packaged for a Slurm release".to_owned(),
    };
    let version = env::var("CARGO_PKG_VERSION").unwrap_or_default();
    println!("cargo:rustc-env=BT_SUBMIT_VERSION={version} ({commit}, {slurm})");
}

/// The commit checked out; `None` without git or outside a repository.
fn git_commit() -> Option<String> {
    let git = |args: &[&str]| {
        let output = Command::new("git").args(args).output().ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    // Rebuild when HEAD moves: its file, and the branch file it names.
    for path in [git(&["rev-parse", "--git-path", "HEAD"])]
        .into_iter()
        .chain([git(&["symbolic-ref", "-q", "HEAD"])
            .and_then(|branch| git(&["rev-parse", "--git-path", &branch]))])
        .flatten()
    {
        println!("cargo:rerun-if-changed={path}");
    }
    Some(commit)
}
