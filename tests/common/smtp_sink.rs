//! A real SMTP server for tests: `tests/smtp/sink.py` (Python aiosmtpd) in a child process,
//! writing each message it accepts to a directory of the test's own. It can be stopped (its
//! port then refuses connections, as a mail server that is down does) and started again on
//! the same port and directory.

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
};

/// A real SMTP server (Python aiosmtpd) writing each message to a directory.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl SmtpSink {
    /// A sink on a free port that answers the first `fail_first` messages with a 451.
    pub fn start(fail_first: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (child, port) = spawn_sink(&dir, 0, fail_first);
        Self { child, port, dir }
    }

    /// Kill the server: connections to its port are refused until [`SmtpSink::restart`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start the server again on the same port, writing into the same directory, refusing
    /// nothing.
    pub fn restart(&mut self) {
        let (child, port) = spawn_sink(&self.dir, self.port, 0);
        assert_eq!(port, self.port);
        self.child = child;
    }

    /// The messages received so far, as raw text.
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sink process on `port` (0: a free one), and the port it listens on.
fn spawn_sink(dir: &tempfile::TempDir, port: u16, fail_first: u32) -> (Child, u16) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp/sink.py");
    let mut child = Command::new(super::tools::python_with_aiosmtpd())
        .arg(script)
        .arg("--dir")
        .arg(dir.path())
        .args(["--port", &port.to_string()])
        .args(["--fail-first", &fail_first.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the SMTP sink");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("READY ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("sink said {line:?}"));
    (child, port)
}
