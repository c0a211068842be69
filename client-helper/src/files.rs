//! Rewriting the helper's own files safely: under a lock, through a temporary file renamed over
//! the old one, so that concurrent writers take turns and a reader never sees half a file.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode a rewritten file gets.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    /// Always this one (files holding secrets).
    Exactly(u32),
    /// The old file's, or this one for a new file.
    KeepOr(u32),
}

/// Replaces the file at `path` with what `produce` returns, `produce` being called under an
/// exclusive `flock` on `<file>.lock` beside it (so it may read the old file and build on it).
/// A symlink at `path` is followed, so the link stays; missing folders are made (mode 0700).
/// The new file and its folder are synced before this returns.
pub(crate) fn rewrite_locked<E: From<std::io::Error>>(
    path: &Path,
    mode: Mode,
    produce: impl FnOnce() -> Result<Vec<u8>, E>,
) -> Result<(), E> {
    rewrite(path, mode, false, produce)
}

/// As [`rewrite_locked`], the lock taken on the file's folder itself, so that nothing but the
/// file is left in it (for folders another program reads every file of, such as ostree's
/// `remotes.d`).
pub(crate) fn rewrite_locked_by_folder<E: From<std::io::Error>>(
    path: &Path,
    mode: Mode,
    produce: impl FnOnce() -> Result<Vec<u8>, E>,
) -> Result<(), E> {
    rewrite(path, mode, true, produce)
}

fn rewrite<E: From<std::io::Error>>(
    path: &Path,
    mode: Mode,
    lock_folder: bool,
    produce: impl FnOnce() -> Result<Vec<u8>, E>,
) -> Result<(), E> {
    let target: PathBuf = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => std::fs::canonicalize(path)?,
        _ => path.to_owned(),
    };
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let lock = if lock_folder {
        std::fs::File::open(dir)?
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join(format!("{name}.lock")))?
    };
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(std::io::Error::from)?;
    let bytes = produce()?;
    let mode = match mode {
        Mode::Exactly(mode) => mode,
        Mode::KeepOr(new) => std::fs::metadata(&target)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(new),
    };
    // Under the lock, a leftover temporary file is a crashed rewrite's, and goes.
    let temp = dir.join(format!("{name}.tmp"));
    let _ = std::fs::remove_file(&temp);
    let written = (|| {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        // The umask may have narrowed the mode asked for; a kept mode is restored whole.
        out.set_permissions(std::fs::Permissions::from_mode(mode))?;
        out.write_all(&bytes)?;
        out.sync_all()?;
        std::fs::rename(&temp, &target)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    Ok(written?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_links_and_modes_and_lets_writers_take_turns() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.toml");
        std::fs::write(&real, "a\n").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        rewrite_locked::<std::io::Error>(&link, Mode::KeepOr(0o644), || {
            Ok(format!("{}b\n", std::fs::read_to_string(&link)?).into_bytes())
        })
        .unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "a\nb\n");
        let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);

        // Forced modes win; new files in new folders.
        let secret = dir.path().join("new/secret.json");
        rewrite_locked::<std::io::Error>(&secret, Mode::Exactly(0o600), || Ok(b"{}".to_vec()))
            .unwrap();
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);

        // Eight threads appending one line each: none is lost.
        let counter = dir.path().join("counter");
        std::thread::scope(|s| {
            for i in 0..8 {
                let counter = &counter;
                s.spawn(move || {
                    rewrite_locked::<std::io::Error>(counter, Mode::KeepOr(0o644), || {
                        let old = std::fs::read_to_string(counter).unwrap_or_default();
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        Ok(format!("{old}{i}\n").into_bytes())
                    })
                    .unwrap();
                });
            }
        });
        assert_eq!(
            std::fs::read_to_string(&counter).unwrap().lines().count(),
            8
        );

        // Locked by its folder: the same turns, and nothing left beside the file.
        let only = dir.path().join("only");
        let remote = only.join("vendor.conf");
        std::thread::scope(|s| {
            for i in 0..4 {
                let remote = &remote;
                s.spawn(move || {
                    rewrite_locked_by_folder::<std::io::Error>(
                        remote,
                        Mode::Exactly(0o600),
                        || {
                            let old = std::fs::read_to_string(remote).unwrap_or_default();
                            Ok(format!("{old}{i}\n").into_bytes())
                        },
                    )
                    .unwrap();
                });
            }
        });
        assert_eq!(std::fs::read_to_string(&remote).unwrap().lines().count(), 4);
        let left: Vec<_> = std::fs::read_dir(&only)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["vendor.conf"]);
    }
}
