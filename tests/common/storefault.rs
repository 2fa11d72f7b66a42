//! Faults in Baton's own store, for the tests: a small tmpfs that fills up, immutable files.

/// Unmounts a test's tmpfs however the test ends.
pub struct Tmpfs(pub std::path::PathBuf);

impl Tmpfs {
    /// A tmpfs of `mb` MiB, or None where this machine does not allow mounting (not root).
    pub fn mount(mb: u32) -> Option<Tmpfs> {
        let dir = std::env::temp_dir().join(format!("baton-tmpfs-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: whatever still has a file open there (a store) lets go when it is done.
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Issue 19 on a real filesystem: the data directory's filesystem is full. The takeover stops
/// before anything changes (the lock and its first record cannot be written) and says why; once
/// space is back, the same takeover runs.
/// Makes files immutable (`chattr +i`) and always gives them back.
pub struct Immutable(Vec<std::path::PathBuf>);

impl Immutable {
    /// None where `chattr` does not work here (not root, or a filesystem without attributes).
    pub fn set(files: Vec<std::path::PathBuf>) -> Option<Immutable> {
        let ok = std::process::Command::new("chattr").arg("+i").args(&files).status().is_ok_and(|s| s.success());
        let guard = Immutable(files);
        ok.then_some(guard)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr").arg("-i").args(&self.0).status();
    }
}

/// Fills the filesystem that holds `dir` (a small tmpfs); the file it made, to remove.
pub fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let _ = f.flush();
    filler
}
