//! The house rules that hold for the whole tree: no import circle among the files of
//! `src/` and `jobs/src/` (checked by `scripts/import-cycles.py`, which anyone can run).

use std::process::Command;

#[test]
fn no_file_level_import_cycles() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .arg(format!("{root}/scripts/import-cycles.py"))
        .arg("--root")
        .arg(root)
        .output()
        .expect("python3 on PATH (apt-get install python3)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("import cycles: none"), "{text}");
}
