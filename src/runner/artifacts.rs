//! A run's directory, `.oxi/runs/<run-id>/`: `raw.jsonl` (stdout as printed, capped),
//! `stderr.log` (capped), `events.jsonl` (canonical events, capped), `transcript.md`,
//! `prompt.md` and `meta.json`. Everything is written after secret masking; the directory is
//! private to the user (0700) because transcripts quote the repository.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Errors writing run artifacts.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct ArtifactError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError + '_ {
    move |source| ArtifactError {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` (and parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> Result<(), ArtifactError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))
}

fn create_file(path: &Path) -> Result<File, ArtifactError> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))
}

/// Writes `contents` to `path` atomically (temp file, then rename), mode 0600.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), ArtifactError> {
    let tmp = path.with_extension("tmp");
    let mut file = create_file(&tmp)?;
    file.write_all(contents).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// A line-oriented file that keeps at most `cap` bytes and counts what it did not keep. What is
/// kept is always a prefix: once one line does not fit, every later line is cut too.
/// A write error (say, a full disk) stops writing but is remembered, never fatal to the run:
/// the ledger row is what must survive.
pub struct CappedFile {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    cap: u64,
    kept: u64,
    cut: u64,
    error: Option<String>,
}

impl CappedFile {
    pub fn create(path: PathBuf, cap: u64) -> Result<Self, ArtifactError> {
        let file = create_file(&path)?;
        Ok(Self {
            out: Some(BufWriter::with_capacity(16 * 1024, file)),
            path,
            cap,
            kept: 0,
            cut: 0,
            error: None,
        })
    }

    /// Writes `line` and a newline if they fit under the cap; otherwise counts them as cut.
    pub fn line(&mut self, line: &[u8]) {
        let len = line.len() as u64 + 1;
        if self.kept + len > self.cap || self.out.is_none() {
            self.cut += len;
            self.flush();
            self.out = None;
            return;
        }
        if let Some(out) = &mut self.out
            && let Err(e) = out.write_all(line).and_then(|()| out.write_all(b"\n"))
        {
            self.error = Some(format!("{}: {e}", self.path.display()));
            self.out = None;
            self.cut += len;
            return;
        }
        self.kept += len;
    }

    /// True once nothing more will be written (cap reached or a write failed), so callers can
    /// skip the work of preparing lines.
    pub fn is_full(&self) -> bool {
        self.out.is_none()
    }

    pub fn kept(&self) -> u64 {
        self.kept
    }

    pub fn cut(&self) -> u64 {
        self.cut
    }

    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Flushes to the file; remembers a failure like `line` does.
    pub fn flush(&mut self) {
        if let Some(out) = &mut self.out
            && let Err(e) = out.flush()
        {
            self.error = Some(format!("{}: {e}", self.path.display()));
            self.out = None;
        }
    }
}

impl Drop for CappedFile {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_whole_lines_up_to_the_cap_and_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raw.jsonl");
        let mut file = CappedFile::create(path.clone(), 10).unwrap();
        file.line(b"abcd"); // 5
        file.line(b"efgh"); // 10
        file.line(b"i"); // would be 12: cut
        assert!(file.is_full());
        file.flush();
        assert_eq!((file.kept(), file.cut()), (10, 2));
        assert_eq!(fs::read_to_string(&path).unwrap(), "abcd\nefgh\n");
    }
}
