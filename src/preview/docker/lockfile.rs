//! The files whose `flock` serializes work across an instance's processes (`serve` and the CLI
//! commands beside it): gateway changes, and builds against the prune of their leftovers. A
//! lock goes with the process that holds it, so a crash never leaves one taken.

use std::fs::File;
use std::io;
use std::path::Path;

/// Opens the lock file at `path`, creating it and its folder when missing. Its content is never
/// read or written; the caller takes the lock it needs on the returned file.
pub fn open(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}
