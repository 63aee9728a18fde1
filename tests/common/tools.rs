//! The programs some tests run besides Switchboard (chromedriver, promtool, node, the SMTP
//! sink's Python, ...). A missing one fails its test with one line naming the program and how
//! to install it — no backtrace, and the other tests (and test binaries, under
//! `scripts/test`'s `--no-fail-fast`) still run.

use std::path::{Path, PathBuf};

/// How to get every tool at once.
const ALL: &str = "scripts/test installs every test tool and runs the suite";

/// Fail the calling test with `line` alone: printed once, no panic message, no backtrace.
pub fn fail(line: &str) -> ! {
    eprintln!("{line}");
    std::panic::resume_unwind(Box::new(line.to_owned()))
}

/// The path of `program` on `PATH`, or fail with how to install it.
pub fn require(program: &str, install: &str) -> PathBuf {
    find(program).unwrap_or_else(|| {
        fail(&format!(
            "missing test tool: {program} is not on PATH; install it with `{install}` ({ALL})"
        ))
    })
}

/// The path of `program` on `PATH`.
pub fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The build's target directory (where `scripts/test` puts the test tools' own files).
pub fn target_dir() -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_switchboard"));
    exe.parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
}

/// A Python with aiosmtpd: `SWITCHBOARD_TEST_PYTHON`, the virtual environment `scripts/test`
/// makes under the target directory, or a `python3` on `PATH` that has it.
pub fn python_with_aiosmtpd() -> PathBuf {
    if let Some(p) = std::env::var_os("SWITCHBOARD_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = target_dir().join("test-venv/bin/python");
    if is_executable(&venv) {
        return venv;
    }
    let system = require(
        "python3",
        "apt-get install python3 python3-venv (macOS: brew install python)",
    );
    let has = std::process::Command::new(&system)
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        fail(&format!(
            "missing test tool: Python aiosmtpd (the SMTP sink); install it with `python3 -m venv {0}/test-venv && {0}/test-venv/bin/pip install aiosmtpd==1.4.6` ({ALL})",
            target_dir().display()
        ));
    }
    system
}
