//! `mixture bench --json` prints one object with the fields other tools read (bench/compare.sh
//! reads `pp_tokens_per_s`, `tg_tokens_per_s`, `bound_tokens_per_s`), with measured values.

use std::path::Path;
use std::process::Command;

#[test]
fn bench_json_has_its_fields() {
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llama/model.q8_0.gguf");
    let out = Command::new(env!("CARGO_BIN_EXE_mixture"))
        .args(["bench", "--model"])
        .arg(&model)
        .args([
            "-p",
            "16",
            "-n",
            "4",
            "-r",
            "2",
            "--bandwidth-mib",
            "16",
            "--threads",
            "2",
            "--json",
        ])
        .output()
        .expect("run mixture");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one JSON object expected: {stdout}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON");
    for key in [
        "pp_tokens_per_s",
        "tg_tokens_per_s",
        "bandwidth_gb_per_s",
        "bound_tokens_per_s",
    ] {
        let x = v[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {v}"));
        assert!(x.is_finite() && x > 0.0, "{key} = {x}");
    }
    assert_eq!(v["pp_samples"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v["tg_samples"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v["n_prompt"], 16);
    assert_eq!(v["threads"], 2);
    let kernels = v["kernels"].as_str().expect("kernels");
    assert!(
        ["scalar", "avx2", "avx512"]
            .iter()
            .any(|isa| kernels.starts_with(&format!("{isa} row dots"))),
        "{kernels}"
    );
}
