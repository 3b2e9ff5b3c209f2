//! The one policy for directories wpc writes (bundles, `wpc run` outputs):
//! a directory is written whole into a hidden sibling and swapped into
//! place, so readers see the old contents or the new, never a mix, and a
//! failure leaves nothing behind. An existing directory is replaced only
//! when wpc wrote it (its marker file says so) or it is empty; anything
//! else — a user's folder, a file, a symbolic link — is refused unless the
//! caller forces it, and the current directory, its ancestors and `/` are
//! refused always.

use std::path::{Component, Path, PathBuf};

use crate::{Error, Result};

/// What wpc keeps in a directory, recognised by a marker file whose JSON
/// `format` field names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirKind {
    /// A bundle: `manifest.json` with format `wpc-bundle`.
    Bundle,
    /// `wpc run` outputs: `outputs.json` with format `wpc-outputs`.
    Outputs,
}

impl DirKind {
    /// The marker file and the `format` it holds.
    pub fn marker(self) -> (&'static str, &'static str) {
        match self {
            DirKind::Bundle => ("manifest.json", crate::manifest::FORMAT),
            DirKind::Outputs => ("outputs.json", OUTPUTS_FORMAT),
        }
    }

    /// A name to suggest for a new directory of this kind.
    fn example(self) -> &'static str {
        match self {
            DirKind::Bundle => "model.wpc",
            DirKind::Outputs => "outputs",
        }
    }

    fn what(self) -> &'static str {
        match self {
            DirKind::Bundle => "a wpc bundle",
            DirKind::Outputs => "a wpc outputs directory",
        }
    }

    /// Whether `dir` holds this kind's marker.
    fn owns(self, dir: &Path) -> bool {
        let (file, format) = self.marker();
        std::fs::read(dir.join(file))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v.get("format").and_then(|f| f.as_str()) == Some(format))
    }
}

/// The `format` of `outputs.json` in a `wpc run` output directory.
pub const OUTPUTS_FORMAT: &str = "wpc-outputs";

fn refused(path: &Path, reason: impl Into<String>) -> Error {
    Error::Refused {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `path` made absolute against the current directory, with `.` and `..`
/// resolved by name (so `-o .` and `-o sub/..` are seen for what they are).
fn absolute(path: &Path) -> Result<PathBuf> {
    let cwd = std::env::current_dir().map_err(io(Path::new(".")))?;
    let mut out = PathBuf::new();
    for c in cwd.join(path).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Checks that `dir` may be written as `kind`: it does not exist, or is
/// empty, or wpc wrote it as that kind; with `force`, any file or directory
/// there may be replaced. The current directory, its ancestors and the
/// root are never replaced. Returns the absolute path to write.
pub fn check(dir: &Path, kind: DirKind, force: bool) -> Result<PathBuf> {
    let target = absolute(dir)?;
    if target.file_name().is_none() {
        return Err(refused(dir, "is the root directory; give a new directory"));
    }
    let Ok(meta) = std::fs::symlink_metadata(&target) else {
        return Ok(target);
    };
    let cwd = std::env::current_dir()
        .and_then(std::fs::canonicalize)
        .map_err(io(Path::new(".")))?;
    if std::fs::canonicalize(&target).is_ok_and(|t| cwd.starts_with(t)) {
        return Err(refused(
            dir,
            format!(
                "is the current directory or contains it; wpc replaces its output directory \
                 whole, so give a new one (e.g. -o {})",
                kind.example()
            ),
        ));
    }
    if force {
        return Ok(target);
    }
    let hint = "choose another output directory, or pass --force to replace it";
    if meta.file_type().is_symlink() {
        return Err(refused(dir, format!("is a symbolic link; {hint}")));
    }
    if !meta.is_dir() {
        return Err(refused(
            dir,
            format!("exists and is not a directory; {hint}"),
        ));
    }
    let empty = std::fs::read_dir(&target)
        .map_err(io(dir))?
        .next()
        .is_none();
    if empty || kind.owns(&target) {
        return Ok(target);
    }
    Err(refused(
        dir,
        format!(
            "exists and is not {} (no {} of format \"{}\"); wpc will not replace your files: {hint}",
            kind.what(),
            kind.marker().0,
            kind.marker().1
        ),
    ))
}

/// Writes `dir` as `kind` under the policy of [`check`]: `fill` writes
/// the contents into a fresh staging directory beside it, which then
/// replaces `dir` in one rename. On any error the staging directory is
/// removed and `dir` is left as it was. `fill` may fail with its own
/// error type.
pub fn write<E: From<Error>>(
    dir: &Path,
    kind: DirKind,
    force: bool,
    fill: impl FnOnce(&Path) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let target = check(dir, kind, force)?;
    let parent = target.parent().expect("check refuses the root");
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let base = target
        .file_name()
        .expect("check refuses the root")
        .to_string_lossy()
        .into_owned();
    let sibling = |what: &str| parent.join(format!(".{base}.{what}-{}", std::process::id()));
    let (tmp, old) = (sibling("tmp"), sibling("old"));
    let staged = (|| -> std::result::Result<(), E> {
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        std::fs::create_dir(&tmp).map_err(io(&tmp))?;
        fill(&tmp)
    })();
    if let Err(e) = staged {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // Move the old contents aside (not deleted until the new are in).
    let had_old = std::fs::symlink_metadata(&target).is_ok();
    if had_old && let Err(e) = std::fs::rename(&target, &old) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(io(dir)(e).into());
    }
    if let Err(e) = std::fs::rename(&tmp, &target) {
        if had_old {
            let _ = std::fs::rename(&old, &target);
        }
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(io(dir)(e).into());
    }
    if had_old {
        let removed = if std::fs::symlink_metadata(&old).is_ok_and(|m| m.is_dir()) {
            std::fs::remove_dir_all(&old)
        } else {
            std::fs::remove_file(&old)
        };
        removed.map_err(io(&old))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` with the current directory set to a fresh temporary one
    /// (tests in this module share the process's current directory, so
    /// they take a lock).
    fn in_temp_dir(f: impl FnOnce(&Path)) {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let tmp = std::env::temp_dir().join(format!("wpc-outdir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(tmp.join("work")).unwrap();
        let back = std::env::current_dir().unwrap();
        std::env::set_current_dir(tmp.join("work")).unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&tmp)));
        std::env::set_current_dir(back).unwrap();
        let _ = std::fs::remove_dir_all(&tmp);
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
    }

    fn fill_with(name: &'static str) -> impl FnOnce(&Path) -> Result<()> {
        move |d| {
            std::fs::write(d.join("outputs.json"), r#"{"format":"wpc-outputs"}"#).unwrap();
            std::fs::write(d.join(name), b"x").unwrap();
            Ok(())
        }
    }

    #[test]
    fn the_current_directory_and_its_ancestors_are_never_replaced() {
        in_temp_dir(|_| {
            std::fs::write("mine.txt", b"keep").unwrap();
            for dir in [".", "./", "..", "sub/..", "../work"] {
                for force in [false, true] {
                    let e =
                        write(Path::new(dir), DirKind::Outputs, force, fill_with("a")).unwrap_err();
                    assert!(e.to_string().contains("current directory"), "{dir}: {e}");
                }
            }
            assert_eq!(std::fs::read("mine.txt").unwrap(), b"keep");
            assert!(write(Path::new("/"), DirKind::Bundle, true, fill_with("a")).is_err());
        });
    }

    #[test]
    fn a_users_directory_or_file_is_replaced_only_with_force() {
        in_temp_dir(|_| {
            std::fs::create_dir("theirs").unwrap();
            std::fs::write("theirs/notes.txt", b"keep").unwrap();
            std::fs::write("file", b"keep").unwrap();
            for (path, needle) in [("theirs", "is not a wpc"), ("file", "not a directory")] {
                let e = write(Path::new(path), DirKind::Outputs, false, fill_with("a"));
                assert!(e.unwrap_err().to_string().contains(needle), "{path}");
            }
            assert_eq!(std::fs::read("theirs/notes.txt").unwrap(), b"keep");
            assert_eq!(std::fs::read("file").unwrap(), b"keep");
            // A directory of the other kind is not ours either.
            std::fs::create_dir("bundle").unwrap();
            std::fs::write("bundle/manifest.json", r#"{"format":"wpc-bundle"}"#).unwrap();
            assert!(write(Path::new("bundle"), DirKind::Outputs, false, fill_with("a")).is_err());
            write(Path::new("file"), DirKind::Outputs, true, fill_with("a")).unwrap();
            assert!(Path::new("file/a").exists());
        });
    }

    #[test]
    fn our_own_or_an_empty_directory_is_replaced_whole_and_failures_leave_it() {
        in_temp_dir(|_| {
            std::fs::create_dir("out").unwrap();
            write(
                Path::new("out"),
                DirKind::Outputs,
                false,
                fill_with("first"),
            )
            .unwrap();
            write(
                Path::new("out"),
                DirKind::Outputs,
                false,
                fill_with("second"),
            )
            .unwrap();
            assert!(!Path::new("out/first").exists() && Path::new("out/second").exists());
            let e = write(Path::new("out"), DirKind::Outputs, false, |d| {
                std::fs::write(d.join("partial"), b"x").unwrap();
                Err(Error::Input("failed half way".into()))
            });
            assert!(e.is_err());
            assert!(Path::new("out/second").exists() && !Path::new("out/partial").exists());
            let left: Vec<_> = std::fs::read_dir(".").unwrap().collect();
            assert_eq!(left.len(), 1, "no staging directory left behind");
        });
    }
}
