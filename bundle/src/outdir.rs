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

    /// Whether wpc wrote `dir` as this kind: its marker has the right
    /// format and lists every entry of the directory (so a user's file
    /// added beside a bundle is not deleted with it). `Err` says why not.
    fn owns(self, dir: &Path) -> std::result::Result<(), String> {
        let (file, format) = self.marker();
        let no_marker = || format!("no {file} of format \"{format}\"");
        let marker: serde_json::Value = std::fs::read(dir.join(file))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(no_marker)?;
        if marker.get("format").and_then(|f| f.as_str()) != Some(format) {
            return Err(no_marker());
        }
        let lists: &[&str] = match self {
            DirKind::Bundle => &["code", "shards"],
            DirKind::Outputs => &["outputs"],
        };
        // The top-level names the marker accounts for (`runtime/x.js`
        // accounts for `runtime`).
        let mut listed = vec![file.to_string()];
        for list in lists {
            let entries = marker.get(*list).and_then(|l| l.as_array());
            for entry in entries.into_iter().flatten() {
                if let Some(f) = entry.get("file").and_then(|f| f.as_str()) {
                    listed.extend(f.split('/').next().map(str::to_string));
                }
            }
        }
        let entries = std::fs::read_dir(dir).map_err(|e| e.to_string())?;
        for entry in entries {
            let name = entry.map_err(|e| e.to_string())?.file_name();
            let name = name.to_string_lossy();
            if !listed.iter().any(|l| *l == name) {
                return Err(format!("it holds '{name}', which its {file} does not list"));
            }
        }
        Ok(())
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

/// `path` made absolute the way the kernel resolves it: the longest part
/// that exists is canonicalized (through symbolic links, so `link/..` is
/// the link target's parent), the rest is resolved by name. A final
/// component that is a symbolic link is kept, not followed: replacing it
/// replaces the link.
fn absolute(path: &Path) -> Result<PathBuf> {
    let cwd = std::env::current_dir().map_err(io(Path::new(".")))?;
    let full = cwd.join(path);
    let mut parts: Vec<Component> = full.components().collect();
    let last = match parts.last() {
        Some(Component::Normal(name)) => {
            let name = PathBuf::from(name);
            parts.pop();
            Some(name)
        }
        _ => None,
    };
    let mut out = PathBuf::new();
    for k in (0..=parts.len()).rev() {
        let prefix: PathBuf = parts[..k].iter().collect();
        if let Ok(real) = std::fs::canonicalize(&prefix) {
            out = real;
            for c in &parts[k..] {
                match c {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::Normal(n) => out.push(n),
                    _ => {}
                }
            }
            break;
        }
    }
    out.extend(last);
    Ok(out)
}

/// Refuses `dir` as an output directory when it is, or contains, one of
/// `inputs` (the model, a bundle being run, an input tensor): with
/// `--force` the directory is replaced, and what a command reads must
/// survive what it writes.
pub fn refuse_inputs(dir: &Path, inputs: &[&Path]) -> Result<()> {
    let target = absolute(dir)?;
    for input in inputs {
        if absolute(input).is_ok_and(|i| i.starts_with(&target)) {
            return Err(refused(
                dir,
                format!(
                    "holds {}, which this command reads; give another output directory",
                    input.display()
                ),
            ));
        }
    }
    Ok(())
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
    if empty {
        return Ok(target);
    }
    match kind.owns(&target) {
        Ok(()) => Ok(target),
        Err(why) => Err(refused(
            dir,
            format!(
                "exists and is not {} ({why}); wpc will not replace your files: {hint}",
                kind.what(),
            ),
        )),
    }
}

/// Removes the staging and old copies (`.NAME.tmp-PID`, `.NAME.old-PID`)
/// that an earlier wpc left beside `base` when it was killed or could not
/// remove them, once the process that made them is gone.
fn remove_stale_siblings(parent: &Path, base: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&format!(".{base}.")))
        else {
            continue;
        };
        let pid = rest
            .strip_prefix("tmp-")
            .or_else(|| rest.strip_prefix("old-"))
            .and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| pid != std::process::id() && process_is_gone(pid)) {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}

/// Whether no process `pid` runs (known on Linux through /proc; elsewhere
/// assumed running, so nothing is removed).
fn process_is_gone(pid: u32) -> bool {
    cfg!(target_os = "linux")
        && Path::new("/proc/self").exists()
        && !Path::new("/proc").join(pid.to_string()).exists()
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
    remove_stale_siblings(parent, &base);
    let sibling = |what: &str| parent.join(format!(".{base}.{what}-{}", std::process::id()));
    let (tmp, old) = (sibling("tmp"), sibling("old"));
    let staged = (|| -> std::result::Result<(), E> {
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        std::fs::create_dir(&tmp).map_err(io(&tmp))?;
        fill(&tmp)?;
        // Filling may take minutes: check again that what is there now
        // may be replaced.
        check(dir, kind, force)?;
        Ok(())
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
        // The new contents are in place: the write succeeded. An old copy
        // that cannot be removed now is removed by the next write here.
        let _ = if std::fs::symlink_metadata(&old).is_ok_and(|m| m.is_dir()) {
            std::fs::remove_dir_all(&old)
        } else {
            std::fs::remove_file(&old)
        };
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
            let marker = format!(r#"{{"format":"wpc-outputs","outputs":[{{"file":"{name}"}}]}}"#);
            std::fs::write(d.join("outputs.json"), marker).unwrap();
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

    #[test]
    fn a_file_the_marker_does_not_list_keeps_a_wpc_directory_from_being_replaced() {
        in_temp_dir(|_| {
            write(
                Path::new("out"),
                DirKind::Outputs,
                false,
                fill_with("y.npy"),
            )
            .unwrap();
            std::fs::write("out/notes.txt", b"keep").unwrap();
            let e = write(
                Path::new("out"),
                DirKind::Outputs,
                false,
                fill_with("y.npy"),
            );
            let e = e.unwrap_err().to_string();
            assert!(
                e.contains("'notes.txt', which its outputs.json does not list"),
                "{e}"
            );
            assert_eq!(std::fs::read("out/notes.txt").unwrap(), b"keep");
        });
    }

    #[test]
    fn an_output_directory_holding_an_input_is_refused_even_with_force() {
        in_temp_dir(|_| {
            std::fs::create_dir_all("models/sub").unwrap();
            std::fs::write("models/sub/m.onnx", b"model").unwrap();
            for dir in ["models", "models/sub", "models/../models/sub"] {
                let e = refuse_inputs(Path::new(dir), &[Path::new("models/sub/m.onnx")]);
                assert!(
                    e.unwrap_err()
                        .to_string()
                        .contains("which this command reads"),
                    "{dir}"
                );
            }
            refuse_inputs(Path::new("models/out"), &[Path::new("models/sub/m.onnx")]).unwrap();
            refuse_inputs(Path::new("mod"), &[Path::new("models/sub/m.onnx")]).unwrap();
        });
    }

    #[cfg(unix)]
    #[test]
    fn dot_dot_after_a_symbolic_link_is_the_link_targets_parent() {
        in_temp_dir(|tmp| {
            std::fs::create_dir_all(tmp.join("real/deep")).unwrap();
            std::os::unix::fs::symlink(tmp.join("real/deep"), "link").unwrap();
            let real = std::fs::canonicalize(tmp.join("real")).unwrap();
            assert_eq!(absolute(Path::new("link/../x")).unwrap(), real.join("x"));
            assert_eq!(absolute(Path::new("link/..")).unwrap(), real);
            // A final link is the link itself, not what it points to.
            let cwd = std::fs::canonicalize(".").unwrap();
            assert_eq!(absolute(Path::new("link")).unwrap(), cwd.join("link"));
        });
    }

    #[test]
    fn copies_left_by_a_process_that_is_gone_are_removed_by_the_next_write() {
        in_temp_dir(|_| {
            // No process has pid u32::MAX - 1 (Linux caps pids far below).
            let stale = format!(".out.old-{}", u32::MAX - 1);
            std::fs::create_dir(&stale).unwrap();
            write(Path::new("out"), DirKind::Outputs, false, fill_with("a")).unwrap();
            assert_eq!(!Path::new(&stale).exists(), cfg!(target_os = "linux"));
        });
    }
}
