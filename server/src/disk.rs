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
