//! What the file system needs before a promise of durability holds.

use std::path::Path;

/// Makes the names in `dir` durable: a file created, renamed or removed there survives a power
/// cut only once its folder is synced, however well the file itself was. A no-op where folders
/// cannot be synced.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Syncs the folder `path` is named in (the current one for a bare file name): after a file
/// was created there or renamed into place.
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}
