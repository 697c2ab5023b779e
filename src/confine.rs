//! Confining what a worker can write. On Linux, Landlock: the ruleset is built here, in oxi,
//! before the fork, and the child only applies it (`enter`, two async-signal-safe syscalls
//! between fork and exec). Restriction is inherited across fork and exec, so everything the
//! worker starts (shells, git, its helpers) is confined too. Reads are not restricted.
//!
//! A worker may write beneath: its worktree; the git metadata a worktree needs (its own
//! `.git/worktrees/<name>` and the shared object store, never the main repository's refs,
//! packed-refs, HEAD, index or config); a temp directory of its own (`TMPDIR` points there);
//! its CLI's state directory (`~/.claude`, `CODEX_HOME`); and the terminal-ish devices
//! (`/dev/null`, `/dev/tty`, ptys). Where Landlock is missing (older kernels, macOS) nothing is
//! confined and the post-run check (`crate::pipeline::attribution`) attributes what changed.
//!
//! A read-only run (the planner) gets only its temp directory, its CLI's state and the
//! devices: nothing of the worktree ([`Writable::read_only`]).

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Errors preparing a confinement. Not retryable with the same paths; the run does not start.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// The kernel refused the ruleset or one of its rules (returned by `Confinement::build`).
    #[cfg(target_os = "linux")]
    #[error("cannot build the Landlock ruleset for {path}: {source}")]
    Ruleset {
        path: PathBuf,
        #[source]
        source: landlock::RulesetError,
    },
    /// The run's own temp directory could not be made (returned by `RunTemp::create`).
    #[error("cannot create the run's temp directory in {path}: {source}")]
    TempDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Which protection a run had, as recorded in its meta.json and ledger summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Protection {
    /// The kernel refused the worker's writes outside its allowed paths (Landlock ABI `abi`);
    /// the post-run check still runs.
    Landlock { abi: u32 },
    /// Codex confined itself with its own sandbox (`workers.<name>.sandbox`), which builds
    /// namespaces and mounts that Landlock forbids; the post-run check still runs.
    CodexSandbox { mode: String },
    /// Nothing was confined: only the post-run check guards the main checkout.
    PostRunCheck,
}

impl Protection {
    /// What this machine offers: Landlock when the kernel has it, else the post-run check.
    pub fn available() -> Self {
        match usable_abi() {
            Some(abi) => Protection::Landlock { abi },
            None => Protection::PostRunCheck,
        }
    }

    pub fn is_landlock(&self) -> bool {
        matches!(self, Protection::Landlock { .. })
    }
}

impl std::fmt::Display for Protection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Protection::Landlock { abi } => write!(f, "Landlock ABI {abi}"),
            Protection::CodexSandbox { mode } => write!(f, "codex's own sandbox ({mode})"),
            Protection::PostRunCheck => f.write_str("post-run check only"),
        }
    }
}

/// Why Landlock is not in use on this machine, for `oxi doctor`.
pub fn unavailable_reason() -> &'static str {
    if cfg!(target_os = "linux") {
        "this kernel does not offer Landlock ABI 2 or later (Linux 5.19+ with landlock in the lsm= list)"
    } else {
        "Landlock is Linux-only"
    }
}

/// The kernel's Landlock ABI when oxi can confine workers with it: ABI 1 refuses every
/// rename or link across directories, which git needs to store an object (`git add`).
fn usable_abi() -> Option<u32> {
    landlock_abi().filter(|abi| *abi >= 2)
}

/// The kernel's Landlock ABI version, `None` when it has none (or this is not Linux).
#[cfg(target_os = "linux")]
fn landlock_abi() -> Option<u32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    #[allow(unsafe_code)]
    // SAFETY: landlock_create_ruleset(NULL, 0, VERSION) only returns the ABI version (or -1
    // with errno); it reads no memory and creates no descriptor.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(version).ok().filter(|v| *v > 0)
}

#[cfg(not(target_os = "linux"))]
fn landlock_abi() -> Option<u32> {
    None
}

/// Where a worker may write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Writable {
    /// Directories, with everything beneath them.
    pub dirs: Vec<PathBuf>,
    /// Single files (written in place; creating them needs their directory in `dirs`).
    pub files: Vec<PathBuf>,
}

impl Writable {
    /// The git metadata a worktree at `worktree` needs: its own admin directory
    /// (`.git/worktrees/<name>`: HEAD, index, logs) and the shared object store. Not the main
    /// repository's refs, packed-refs, HEAD, index or config, so a worker can neither move a
    /// branch (its own included: oxi commits its work after verification) nor change what the
    /// main checkout has checked out.
    pub fn git_for_worktree(worktree: &Path) -> Vec<PathBuf> {
        let rev_parse = |what: &str| {
            crate::git::run(worktree, &["rev-parse", "--path-format=absolute", what])
                .ok()
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        };
        let mut dirs = Vec::new();
        if let Some(admin) = rev_parse("--git-dir") {
            dirs.push(admin);
        }
        if let Some(common) = rev_parse("--git-common-dir") {
            dirs.push(common.join("objects"));
        }
        dirs
    }

    /// An executor's: its worktree and the git metadata that needs, its temp directory, and
    /// the devices.
    #[must_use]
    pub fn worktree(worktree: &Path, temp: &Path) -> Self {
        let mut writable = Self {
            dirs: vec![worktree.to_path_buf(), temp.to_path_buf()],
            files: Vec::new(),
        };
        writable.dirs.extend(Self::git_for_worktree(worktree));
        writable.extend(Self::devices());
        writable
    }

    /// A read-only run's (the planner's): its own temp directory and the devices, nothing of
    /// the worktree or its git metadata; the CLI's state directory is added by the caller.
    #[must_use]
    pub fn read_only(temp: &Path) -> Self {
        let mut writable = Self {
            dirs: vec![temp.to_path_buf()],
            files: Vec::new(),
        };
        writable.extend(Self::devices());
        writable
    }

    /// Devices every program writes to: the null sinks and terminals.
    pub fn devices() -> Self {
        Self {
            dirs: vec![PathBuf::from("/dev/pts")],
            files: [
                "/dev/null",
                "/dev/zero",
                "/dev/full",
                "/dev/tty",
                "/dev/ptmx",
            ]
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        }
    }

    pub fn extend(&mut self, other: Writable) {
        self.dirs.extend(other.dirs);
        self.files.extend(other.files);
    }
}

/// A run's own temp directory (`TMPDIR` for the worker), removed when dropped.
#[derive(Debug)]
pub struct RunTemp(tempfile::TempDir);

impl RunTemp {
    /// A private directory `oxi-<run id>-…` under the system temp directory.
    pub fn create(run_id: &str) -> Result<Self, ConfineError> {
        let parent = std::env::temp_dir();
        tempfile::Builder::new()
            .prefix(&format!("oxi-{run_id}-"))
            .tempdir_in(&parent)
            .map(Self)
            .map_err(|source| ConfineError::TempDir {
                path: parent,
                source,
            })
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Removes what a run that died with oxi (kill -9) left of its temp directory; the reaper
    /// calls it for each run it reaps.
    pub fn remove_leftovers(run_id: &str) {
        let prefix = format!("oxi-{run_id}-");
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// A Landlock ruleset ready to be applied in a worker's child process.
#[derive(Debug)]
pub struct Confinement {
    #[cfg(target_os = "linux")]
    ruleset: std::os::fd::OwnedFd,
    abi: u32,
}

impl Confinement {
    /// A ruleset that lets writes happen only beneath `writable` (paths that do not exist are
    /// left out: nothing can be written there). `None` where the kernel has no Landlock.
    #[cfg(target_os = "linux")]
    pub fn build(writable: &Writable) -> Result<Option<Self>, ConfineError> {
        use landlock::{
            ABI, AccessFs, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, Scope,
        };
        let Some(abi) = usable_abi() else {
            return Ok(None);
        };
        // Every right that changes the file system, as of ABI 4 (truncate, refer): reads,
        // execution and device ioctls stay as they were.
        let write = AccessFs::from_write(ABI::V4);
        let file_write = AccessFs::WriteFile | AccessFs::Truncate;
        let error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ConfineError::Ruleset { path, source }
        };
        let mut ruleset = Ruleset::default()
            .handle_access(write)
            .map_err(error(Path::new("/")))?
            // ABI 6+: no signals to processes outside the worker's own tree (oxi, the
            // operator's programs); older kernels skip it.
            .scope(Scope::Signal)
            .map_err(error(Path::new("/")))?
            .create()
            .map_err(error(Path::new("/")))?;
        let rules = writable
            .dirs
            .iter()
            .map(|d| (d, write))
            .chain(writable.files.iter().map(|f| (f, file_write)));
        for (path, access) in rules {
            // A path that does not exist cannot be opened, and needs no rule.
            let Ok(fd) = PathFd::new(path) else { continue };
            ruleset = ruleset
                .add_rule(PathBeneath::new(fd, access))
                .map_err(error(path))?;
        }
        let fd: Option<std::os::fd::OwnedFd> = ruleset.into();
        Ok(fd.map(|ruleset| Self { ruleset, abi }))
    }

    #[cfg(not(target_os = "linux"))]
    pub fn build(_writable: &Writable) -> Result<Option<Self>, ConfineError> {
        Ok(None)
    }

    pub fn protection(&self) -> Protection {
        Protection::Landlock { abi: self.abi }
    }

    /// Confines what `command` starts: the ruleset is applied in its child between fork and
    /// exec (after any `pre_exec` hook registered before this one).
    #[cfg(target_os = "linux")]
    pub fn apply(self: &std::sync::Arc<Self>, command: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        let confinement = std::sync::Arc::clone(self);
        #[allow(unsafe_code)]
        // SAFETY: `enter` only calls prctl(2) and landlock_restrict_self(2), which are
        // async-signal-safe; it allocates nothing and touches no locks.
        unsafe {
            command.pre_exec(move || confinement.enter());
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn apply(self: &std::sync::Arc<Self>, _command: &mut std::process::Command) {}

    /// Applies the ruleset to the calling process. Called in the forked child before exec:
    /// only prctl(2) and landlock_restrict_self(2), no allocation, no locks.
    #[cfg(target_os = "linux")]
    fn enter(&self) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        // Required to restrict oneself without CAP_SYS_ADMIN; also keeps setuid binaries from
        // lifting the restriction.
        nix::sys::prctl::set_no_new_privs().map_err(std::io::Error::from)?;
        #[allow(unsafe_code)]
        // SAFETY: landlock_restrict_self takes a ruleset descriptor this struct owns (open until
        // it is dropped, after the spawn) and flags 0; it touches no memory of ours.
        let status = unsafe {
            libc::syscall(
                libc::SYS_landlock_restrict_self,
                self.ruleset.as_raw_fd(),
                0u32,
            )
        };
        if status == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_run_temp_left_behind_is_removed_by_run_id() {
        let id = format!("test-{}", std::process::id());
        let temp = RunTemp::create(&id).unwrap();
        let path = temp.path().to_path_buf();
        std::fs::write(path.join("scratch"), "x").unwrap();
        // As if oxi had been killed: nothing dropped it.
        std::mem::forget(temp);
        assert!(path.exists());
        RunTemp::remove_leftovers(&id);
        assert!(!path.exists());
    }

    #[test]
    fn a_worktree_may_write_its_admin_dir_and_the_objects_never_the_main_refs() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().canonicalize().unwrap();
        let git = |args: &[&str]| {
            crate::git::run(
                &repo,
                &[&["-c", "user.name=t", "-c", "user.email=t@t"], args].concat(),
            )
            .unwrap()
        };
        git(&["init", "-q", "-b", "main"]);
        git(&["commit", "-q", "--allow-empty", "-m", "init"]);
        let worktree = repo.join(".oxi/worktrees/t1");
        git(&[
            "worktree",
            "add",
            "-q",
            "-b",
            "oxi/t1",
            worktree.to_str().unwrap(),
        ]);
        assert_eq!(
            Writable::git_for_worktree(&worktree),
            [repo.join(".git/worktrees/t1"), repo.join(".git/objects")]
        );
    }

    #[test]
    fn a_confined_child_writes_only_where_it_may() {
        let Some(_) = usable_abi() else { return };
        let dir = tempfile::tempdir().unwrap();
        let (inside, outside) = (dir.path().join("inside"), dir.path().join("outside"));
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let mut writable = Writable {
            dirs: vec![inside.clone(), dir.path().join("does-not-exist")],
            files: Vec::new(),
        };
        writable.extend(Writable::devices());
        let confinement = Confinement::build(&writable).unwrap().unwrap();
        // From ABI 6 it may not signal its parent (outside its domain) either.
        let signal_check = if landlock_abi().is_some_and(|abi| abi >= 6) {
            "if kill -0 $PPID 2>/dev/null; then exit 4; fi"
        } else {
            "true"
        };
        let script = format!(
            "echo a > {}/a && echo x > /dev/null && if echo b > {}/b; then exit 3; fi; {signal_check}",
            inside.display(),
            outside.display()
        );
        let mut command = std::process::Command::new("sh");
        command.args(["-c", &script]);
        let status = {
            use std::os::unix::process::CommandExt;
            let c = std::sync::Arc::new(confinement);
            #[allow(unsafe_code)]
            // SAFETY: `enter` is async-signal-safe (see its doc).
            unsafe {
                command.pre_exec(move || c.enter());
            }
            command.status().unwrap()
        };
        assert!(status.success(), "{status:?}");
        assert!(inside.join("a").exists() && !outside.join("b").exists());
    }
}
