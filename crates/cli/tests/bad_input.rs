//! Bad input never panics: each case gets a one-line error naming the problem and a non-zero
//! exit status from the `mixture` binary.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mixture-bad-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

/// Run mixture; expect failure with exactly one stderr line containing `needle`.
fn expect_error(args: &[&str], needle: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_mixture"))
        .args(args)
        .output()
        .expect("run mixture");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{args:?} succeeded; stderr: {stderr}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?}: not a clean exit (panic?): {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: expected one line, got: {stderr}");
    assert!(
        lines[0].to_lowercase().contains(&needle.to_lowercase()),
        "{args:?}: `{}` does not mention `{needle}`",
        lines[0]
    );
}

fn score(model: &Path, ids: &str, needle: &str) {
    let m = model.to_str().expect("utf-8 path");
    expect_error(&["score", "--model", m, "--ids", ids], needle);
}

#[test]
fn missing_path() {
    score(Path::new("/no/such/model.gguf"), "1,2", "no such file");
}

#[test]
fn directory_without_config() {
    let d = tmpdir("noconfig");
    score(&d, "1,2", "config.json");
}

#[test]
fn bad_magic() {
    let d = tmpdir("magic");
    let p = d.join("x.gguf");
    std::fs::write(
        &p,
        b"NOPE\x03\0\0\0 and some more bytes to read past the header",
    )
    .expect("write");
    score(&p, "1,2", "magic");
}

#[test]
fn empty_file() {
    let d = tmpdir("empty");
    let p = d.join("x.gguf");
    std::fs::write(&p, b"").expect("write");
    score(&p, "1,2", "gguf");
}

#[test]
fn truncated_gguf() {
    let src = std::fs::read(fixtures().join("llama/model.f32.gguf")).expect("fixture");
    let d = tmpdir("trunc");
    for (i, cut) in [100, src.len() / 3, src.len() - 7].into_iter().enumerate() {
        let p = d.join(format!("t{i}.gguf"));
        std::fs::write(&p, &src[..cut]).expect("write");
        score(&p, "1,2", "gguf");
    }
}

fn replace_all(hay: &mut [u8], from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len());
    let mut n = 0;
    let mut i = 0;
    while i + from.len() <= hay.len() {
        if &hay[i..i + from.len()] == from {
            hay[i..i + from.len()].copy_from_slice(to);
            n += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    n
}

#[test]
fn unknown_architecture() {
    let mut b = std::fs::read(fixtures().join("qwen2/model.f32.gguf")).expect("fixture");
    // Rename the architecture everywhere (value and key prefixes), keeping lengths.
    assert!(replace_all(&mut b, b"qwen2", b"qwen9") > 0);
    let d = tmpdir("arch");
    let p = d.join("x.gguf");
    std::fs::write(&p, &b).expect("write");
    score(&p, "1,2", "architecture");
}

#[test]
fn unsupported_tensor_type() {
    let mut b = std::fs::read(fixtures().join("qwen2/model.f32.gguf")).expect("fixture");
    // Tensor info: u64 name length, name, u32 n_dims, u64 dims[n_dims], u32 type, u64 offset.
    let name = b"output_norm.weight";
    let at = b
        .windows(name.len())
        .position(|w| w == name)
        .expect("tensor name in file");
    let mut i = at + name.len();
    let n_dims = u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes")) as usize;
    i += 4 + 8 * n_dims;
    b[i..i + 4].copy_from_slice(&20u32.to_le_bytes()); // IQ4_NL
    let d = tmpdir("type");
    let p = d.join("x.gguf");
    std::fs::write(&p, &b).expect("write");
    score(&p, "1,2", "IQ4_NL");
}

#[test]
fn ids_outside_vocabulary() {
    score(
        &fixtures().join("llama/model.f32.gguf"),
        "1,999999",
        "vocabulary",
    );
    score(&fixtures().join("llama/hf"), "999999,1", "vocabulary");
}

#[test]
fn unparsable_ids() {
    // Argument errors come from clap: exit status 2 and a first line naming the bad value.
    let out = Command::new(env!("CARGO_BIN_EXE_mixture"))
        .args(["score", "--model", "x.gguf", "--ids", "1,banana"])
        .output()
        .expect("run mixture");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().next().unwrap_or("").contains("banana"),
        "{stderr}"
    );
}
