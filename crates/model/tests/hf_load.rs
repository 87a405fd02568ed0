//! Loading Hugging Face checkpoint directories built here: single and sharded safetensors,
//! dtypes, tied embeddings, FP8 block dequantization, DeepSeek `kv_b` split, expert layouts
//! (per expert and transformers 5's fused form), and bad files (errors, never panics).

use half::{bf16, f16};
use mixture_kernels::DType;
use mixture_model::hf;
use mixture_model::{LoadedModel, ModelError, Storage, Tensor};
use safetensors::tensor::TensorView;
use safetensors::Dtype as StDtype;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "mixture-hf-load-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.0.join(name), bytes).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One tensor to write: name, safetensors dtype, shape, raw little-endian bytes.
struct T {
    name: String,
    dtype: StDtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn f32t(name: &str, shape: &[usize], vals: &[f32]) -> T {
    assert_eq!(shape.iter().product::<usize>(), vals.len());
    T {
        name: name.into(),
        dtype: StDtype::F32,
        shape: shape.to_vec(),
        bytes: vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// Deterministic values `seed + i / 16`.
fn ramp(n: usize, seed: f32) -> Vec<f32> {
    (0..n).map(|i| seed + (i % 97) as f32 / 16.0).collect()
}

fn f32r(name: &str, shape: &[usize], seed: f32) -> T {
    f32t(name, shape, &ramp(shape.iter().product(), seed))
}

fn safetensors_bytes(ts: &[T]) -> Vec<u8> {
    let views: Vec<(String, TensorView)> = ts
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                TensorView::new(t.dtype, t.shape.clone(), &t.bytes).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

fn load(dir: &Path) -> Result<LoadedModel, ModelError> {
    hf::load(dir)
}

fn load_err(dir: &Path) -> String {
    match load(dir) {
        Ok(_) => panic!("expected an error loading {}", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn values(m: &LoadedModel, name: &str) -> Vec<f32> {
    m.weights.get(name).unwrap().to_f32().unwrap()
}

fn is_mapped(t: &Tensor) -> bool {
    matches!(t.data, Storage::Mapped { .. })
}

// ---------------------------------------------------------------- a tiny Qwen2-style model

const V: usize = 16;
const D: usize = 8;
const F: usize = 12;

fn dense_config(arch: &str, tie: bool) -> Value {
    json!({
        "architectures": [arch],
        "vocab_size": V, "hidden_size": D, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": F,
        "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 64,
        "tie_word_embeddings": tie
    })
}

fn dense_tensors(with_lm_head: bool) -> Vec<T> {
    let hd = D / 2;
    let mut ts = vec![
        f32r("model.embed_tokens.weight", &[V, D], 0.0),
        f32r("model.norm.weight", &[D], 1.0),
        f32r("model.layers.0.input_layernorm.weight", &[D], 2.0),
        f32r("model.layers.0.post_attention_layernorm.weight", &[D], 3.0),
        f32r("model.layers.0.self_attn.q_proj.weight", &[D, D], 4.0),
        f32r("model.layers.0.self_attn.q_proj.bias", &[D], 5.0),
        f32r("model.layers.0.self_attn.k_proj.weight", &[hd, D], 6.0),
        f32r("model.layers.0.self_attn.k_proj.bias", &[hd], 7.0),
        f32r("model.layers.0.self_attn.v_proj.weight", &[hd, D], 8.0),
        f32r("model.layers.0.self_attn.v_proj.bias", &[hd], 9.0),
        f32r("model.layers.0.self_attn.o_proj.weight", &[D, D], 10.0),
        f32r("model.layers.0.mlp.gate_proj.weight", &[F, D], 11.0),
        f32r("model.layers.0.mlp.up_proj.weight", &[F, D], 12.0),
        f32r("model.layers.0.mlp.down_proj.weight", &[D, F], 13.0),
        f32r(
            "model.layers.0.self_attn.rotary_emb.inv_freq",
            &[hd / 2],
            0.0,
        ),
        f32r("model.extra_buffer.weight", &[3], 14.0),
    ];
    if with_lm_head {
        ts.push(f32r("lm_head.weight", &[V, D], 15.0));
    }
    ts
}

fn write_dense(dir: &TempDir, arch: &str, tie: bool, with_lm_head: bool) {
    dir.write(
        "config.json",
        dense_config(arch, tie).to_string().as_bytes(),
    );
    dir.write(
        "model.safetensors",
        &safetensors_bytes(&dense_tensors(with_lm_head)),
    );
}

#[test]
fn single_file_maps_names_without_copying() {
    let d = TempDir::new("qwen2");
    write_dense(&d, "Qwen2ForCausalLM", false, true);
    let m = load(d.path()).unwrap();
    assert_eq!(m.spec.arch, mixture_model::Arch::Qwen2);
    assert_eq!(m.files, vec![d.path().join("model.safetensors")]);
    let expect = [
        ("token_embd.weight", "model.embed_tokens.weight"),
        ("output_norm.weight", "model.norm.weight"),
        ("output.weight", "lm_head.weight"),
        (
            "blk.0.attn_norm.weight",
            "model.layers.0.input_layernorm.weight",
        ),
        (
            "blk.0.ffn_norm.weight",
            "model.layers.0.post_attention_layernorm.weight",
        ),
        (
            "blk.0.attn_q.weight",
            "model.layers.0.self_attn.q_proj.weight",
        ),
        ("blk.0.attn_q.bias", "model.layers.0.self_attn.q_proj.bias"),
        (
            "blk.0.attn_k.weight",
            "model.layers.0.self_attn.k_proj.weight",
        ),
        ("blk.0.attn_k.bias", "model.layers.0.self_attn.k_proj.bias"),
        (
            "blk.0.attn_v.weight",
            "model.layers.0.self_attn.v_proj.weight",
        ),
        ("blk.0.attn_v.bias", "model.layers.0.self_attn.v_proj.bias"),
        (
            "blk.0.attn_output.weight",
            "model.layers.0.self_attn.o_proj.weight",
        ),
        (
            "blk.0.ffn_gate.weight",
            "model.layers.0.mlp.gate_proj.weight",
        ),
        ("blk.0.ffn_up.weight", "model.layers.0.mlp.up_proj.weight"),
        (
            "blk.0.ffn_down.weight",
            "model.layers.0.mlp.down_proj.weight",
        ),
        ("model.extra_buffer.weight", "model.extra_buffer.weight"),
    ];
    let written = dense_tensors(true);
    for (canon, hfname) in expect {
        let t = m.weights.get(canon).unwrap();
        let src = written.iter().find(|t| t.name == hfname).unwrap();
        assert_eq!(t.shape, src.shape, "{canon}");
        assert_eq!(t.dtype, DType::F32);
        assert_eq!(t.bytes(), &src.bytes[..], "{canon}");
        assert!(is_mapped(t), "{canon} should be a mapped view");
    }
    assert_eq!(m.weights.tensors.len(), expect.len(), "inv_freq is skipped");
}

#[test]
fn tied_embeddings() {
    let d = TempDir::new("tied");
    write_dense(&d, "LlamaForCausalLM", true, false);
    let m = load(d.path()).unwrap();
    assert!(!m.weights.contains("output.weight"));
    assert!(m.weights.contains("token_embd.weight"));

    // Untied but no lm_head: an error, not a silently tied model.
    let d = TempDir::new("untied");
    write_dense(&d, "LlamaForCausalLM", false, false);
    let e = load_err(d.path());
    assert!(e.contains("lm_head.weight"), "{e}");
}

#[test]
fn f16_bf16_and_fp8_dtypes_are_read_as_stored() {
    let vals = [0.5f32, -1.25, 3.0, 65504.0];
    let f16b: Vec<u8> = vals
        .iter()
        .flat_map(|v| f16::from_f32(*v).to_le_bytes())
        .collect();
    let bf16b: Vec<u8> = vals
        .iter()
        .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
        .collect();
    let d = TempDir::new("dtypes");
    let mut ts = dense_tensors(true);
    ts.push(T {
        name: "a.f16".into(),
        dtype: StDtype::F16,
        shape: vec![2, 2],
        bytes: f16b,
    });
    ts.push(T {
        name: "a.bf16".into(),
        dtype: StDtype::BF16,
        shape: vec![4],
        bytes: bf16b,
    });
    d.write(
        "config.json",
        dense_config("LlamaForCausalLM", false)
            .to_string()
            .as_bytes(),
    );
    d.write("model.safetensors", &safetensors_bytes(&ts));
    let m = load(d.path()).unwrap();
    let t = m.weights.get("a.f16").unwrap();
    assert_eq!((t.dtype, t.shape.clone()), (DType::F16, vec![2, 2]));
    assert!(is_mapped(t));
    assert_eq!(values(&m, "a.f16"), vals);
    let t = m.weights.get("a.bf16").unwrap();
    assert_eq!(t.dtype, DType::BF16);
    assert_eq!(values(&m, "a.bf16")[..3], vals[..3]);
}

#[test]
fn sharded_checkpoint() {
    let d = TempDir::new("sharded");
    let ts = dense_tensors(true);
    let (a, b) = ts.split_at(7);
    d.write(
        "config.json",
        dense_config("Qwen2ForCausalLM", false)
            .to_string()
            .as_bytes(),
    );
    d.write("model-00001-of-00002.safetensors", &safetensors_bytes(a));
    d.write("model-00002-of-00002.safetensors", &safetensors_bytes(b));
    let mut wm = serde_json::Map::new();
    for t in a {
        wm.insert(t.name.clone(), json!("model-00001-of-00002.safetensors"));
    }
    for t in b {
        wm.insert(t.name.clone(), json!("model-00002-of-00002.safetensors"));
    }
    let index = json!({"metadata": {"total_size": 0}, "weight_map": wm});
    d.write("model.safetensors.index.json", index.to_string().as_bytes());
    let m = load(d.path()).unwrap();
    assert_eq!(m.files.len(), 2);
    let single = TempDir::new("single");
    write_dense(&single, "Qwen2ForCausalLM", false, true);
    let s = load(single.path()).unwrap();
    let names: Vec<_> = m.weights.tensors.keys().collect();
    assert_eq!(names, s.weights.tensors.keys().collect::<Vec<_>>());
    for (k, t) in &s.weights.tensors {
        assert_eq!(m.weights.get(k).unwrap().bytes(), t.bytes(), "{k}");
    }

    // The index names a shard that is not there.
    let mut wm2 = wm.clone();
    wm2.insert(
        "model.norm.weight".into(),
        json!("model-00009-of-00009.safetensors"),
    );
    d.write(
        "model.safetensors.index.json",
        json!({"weight_map": wm2}).to_string().as_bytes(),
    );
    let e = load_err(d.path());
    assert!(e.contains("model-00009-of-00009.safetensors"), "{e}");

    // The index puts a tensor in the wrong shard.
    let mut wm3 = wm.clone();
    wm3.insert(
        "model.norm.weight".into(),
        json!("model-00002-of-00002.safetensors"),
    );
    wm3.insert(
        "lm_head.weight".into(),
        json!("model-00001-of-00002.safetensors"),
    );
    d.write(
        "model.safetensors.index.json",
        json!({"weight_map": wm3}).to_string().as_bytes(),
    );
    let e = load_err(d.path());
    assert!(e.contains("not in shard"), "{e}");

    // A shard path escaping the directory.
    let mut wm4 = wm.clone();
    wm4.insert("model.norm.weight".into(), json!("../x.safetensors"));
    d.write(
        "model.safetensors.index.json",
        json!({"weight_map": wm4}).to_string().as_bytes(),
    );
    let e = load_err(d.path());
    assert!(e.contains("../x.safetensors"), "{e}");

    // No weight_map.
    d.write("model.safetensors.index.json", b"{}");
    assert!(load_err(d.path()).contains("weight_map"));
}

#[test]
fn no_weight_files() {
    let d = TempDir::new("noweights");
    d.write(
        "config.json",
        dense_config("LlamaForCausalLM", false)
            .to_string()
            .as_bytes(),
    );
    let e = load_err(d.path());
    assert!(e.contains("model.safetensors"), "{e}");
}

// ---------------------------------------------------------------- FP8

/// An independent E4M3FN decoder: build the f32 bit pattern (normal) or scale the mantissa
/// (subnormal).
fn e4m3_ref(b: u8) -> f32 {
    let s = (b >> 7) as u32;
    let e = ((b >> 3) & 0xf) as u32;
    let m = (b & 7) as u32;
    if e == 0xf && m == 7 {
        return f32::NAN;
    }
    let mag = if e == 0 {
        m as f32 * (1.0 / 512.0)
    } else {
        f32::from_bits(((e + 120) << 23) | (m << 20))
    };
    if s == 1 {
        -mag
    } else {
        mag
    }
}

#[test]
fn e4m3_reference_decoder_agrees_with_known_values() {
    assert_eq!(e4m3_ref(0x38), 1.0);
    assert_eq!(e4m3_ref(0x40), 2.0);
    assert_eq!(e4m3_ref(0xc0), -2.0);
    assert_eq!(e4m3_ref(0x7e), 448.0);
    assert_eq!(e4m3_ref(0x01), 2f32.powi(-9));
    assert_eq!(e4m3_ref(0x08), 2f32.powi(-6));
    assert!(e4m3_ref(0x7f).is_nan());
}

fn fp8_bytes(rows: usize, cols: usize) -> Vec<u8> {
    // Every finite code, skipping the NaN codes 0x7f / 0xff.
    (0..rows * cols)
        .map(|i| {
            let b = ((i * 37 + 11) % 256) as u8;
            if b & 0x7f == 0x7f {
                0x3c
            } else {
                b
            }
        })
        .collect()
}

fn fp8_dir(rows: usize, cols: usize, block: Option<[usize; 2]>, with_scale: bool) -> TempDir {
    let [br, bc] = block.unwrap_or([128, 128]);
    let (sr, sc) = (rows.div_ceil(br), cols.div_ceil(bc));
    let mut cfg = dense_config("LlamaForCausalLM", false);
    if let Some(b) = block {
        cfg["quantization_config"] =
            json!({"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": b});
    }
    let mut ts = dense_tensors(true);
    ts.push(T {
        name: "model.layers.0.mlp.big.weight".into(),
        dtype: StDtype::F8_E4M3,
        shape: vec![rows, cols],
        bytes: fp8_bytes(rows, cols),
    });
    if with_scale {
        let scales: Vec<f32> = (0..sr * sc).map(|i| 0.5 + i as f32 * 0.25).collect();
        ts.push(f32t(
            "model.layers.0.mlp.big.weight_scale_inv",
            &[sr, sc],
            &scales,
        ));
    }
    let d = TempDir::new("fp8");
    d.write("config.json", cfg.to_string().as_bytes());
    d.write("model.safetensors", &safetensors_bytes(&ts));
    d
}

fn check_fp8(rows: usize, cols: usize, block: Option<[usize; 2]>) {
    let [br, bc] = block.unwrap_or([128, 128]);
    let sc = cols.div_ceil(bc);
    let d = fp8_dir(rows, cols, block, true);
    let m = load(d.path()).unwrap();
    let t = m.weights.get("model.layers.0.mlp.big.weight").unwrap();
    assert_eq!(t.dtype, DType::F32);
    assert_eq!(t.shape, vec![rows, cols]);
    assert!(!m
        .weights
        .contains("model.layers.0.mlp.big.weight_scale_inv"));
    let got = t.to_f32().unwrap();
    let q = fp8_bytes(rows, cols);
    for r in 0..rows {
        for c in 0..cols {
            let scale = 0.5 + ((r / br) * sc + c / bc) as f32 * 0.25;
            let want = e4m3_ref(q[r * cols + c]) * scale;
            assert_eq!(got[r * cols + c], want, "[{r}][{c}]");
        }
    }
}

#[test]
fn fp8_block_dequantization() {
    // Not multiples of 128: partial blocks on both edges.
    check_fp8(300, 130, None);
    check_fp8(1, 1, None);
    check_fp8(128, 256, None);
    // Block size from quantization_config.
    check_fp8(70, 45, Some([32, 16]));
}

#[test]
fn fp8_errors() {
    let d = fp8_dir(20, 20, None, false);
    let e = load_err(d.path());
    assert!(
        e.contains("model.layers.0.mlp.big.weight") && e.contains("scale"),
        "{e}"
    );

    // A scale of the wrong shape.
    let d = fp8_dir(200, 20, Some([128, 128]), true);
    d.write(
        "config.json",
        dense_config("LlamaForCausalLM", false)
            .to_string()
            .as_bytes(),
    );
    let cfg = {
        let mut c = dense_config("LlamaForCausalLM", false);
        c["quantization_config"] = json!({"weight_block_size": [64, 64]});
        c
    };
    d.write("config.json", cfg.to_string().as_bytes());
    let e = load_err(d.path());
    assert!(e.contains("weight_scale_inv"), "{e}");

    // A scale for a tensor that is not FP8.
    let d = TempDir::new("stray-scale");
    let mut ts = dense_tensors(true);
    ts.push(f32r(
        "model.layers.0.mlp.gate_proj.weight_scale_inv",
        &[1, 1],
        1.0,
    ));
    d.write(
        "config.json",
        dense_config("LlamaForCausalLM", false)
            .to_string()
            .as_bytes(),
    );
    d.write("model.safetensors", &safetensors_bytes(&ts));
    let e = load_err(d.path());
    assert!(e.contains("gate_proj.weight_scale_inv"), "{e}");
}

// ---------------------------------------------------------------- DeepSeek MLA + MoE

const NH: usize = 2;
const NOPE: usize = 3;
const ROPE: usize = 2;
const VD: usize = 4;
const LORA: usize = 5;
const NE: usize = 4;
const EF: usize = 6;

fn deepseek_config() -> Value {
    json!({
        "architectures": ["DeepseekV3ForCausalLM"],
        "vocab_size": V, "hidden_size": D, "num_hidden_layers": 2,
        "num_attention_heads": NH, "num_key_value_heads": NH, "intermediate_size": F,
        "moe_intermediate_size": EF, "n_routed_experts": NE, "n_shared_experts": 1,
        "num_experts_per_tok": 2, "n_group": 2, "topk_group": 1, "first_k_dense_replace": 1,
        "q_lora_rank": null, "kv_lora_rank": LORA, "qk_nope_head_dim": NOPE,
        "qk_rope_head_dim": ROPE, "v_head_dim": VD, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "max_position_embeddings": 64, "tie_word_embeddings": false,
        "num_nextn_predict_layers": 1
    })
}

fn deepseek_tensors() -> Vec<T> {
    let mut ts = vec![
        f32r("model.embed_tokens.weight", &[V, D], 0.0),
        f32r("model.norm.weight", &[D], 1.0),
        f32r("lm_head.weight", &[V, D], 2.0),
    ];
    for l in 0..3 {
        let p = format!("model.layers.{l}");
        ts.push(f32r(&format!("{p}.input_layernorm.weight"), &[D], 3.0));
        ts.push(f32r(
            &format!("{p}.post_attention_layernorm.weight"),
            &[D],
            3.5,
        ));
        ts.push(f32r(
            &format!("{p}.self_attn.q_proj.weight"),
            &[NH * (NOPE + ROPE), D],
            4.0,
        ));
        ts.push(f32r(
            &format!("{p}.self_attn.kv_a_proj_with_mqa.weight"),
            &[LORA + ROPE, D],
            5.0,
        ));
        ts.push(f32r(
            &format!("{p}.self_attn.kv_a_layernorm.weight"),
            &[LORA],
            6.0,
        ));
        ts.push(f32r(
            &format!("{p}.self_attn.kv_b_proj.weight"),
            &[NH * (NOPE + VD), LORA],
            7.0 + l as f32,
        ));
        ts.push(f32r(
            &format!("{p}.self_attn.o_proj.weight"),
            &[D, NH * VD],
            8.0,
        ));
    }
    let p = "model.layers.0.mlp";
    ts.push(f32r(&format!("{p}.gate_proj.weight"), &[F, D], 9.0));
    ts.push(f32r(&format!("{p}.up_proj.weight"), &[F, D], 10.0));
    ts.push(f32r(&format!("{p}.down_proj.weight"), &[D, F], 11.0));
    for l in [1, 2] {
        let p = format!("model.layers.{l}.mlp");
        ts.push(f32r(&format!("{p}.gate.weight"), &[NE, D], 12.0));
        ts.push(f32r(
            &format!("{p}.gate.e_score_correction_bias"),
            &[NE],
            13.0,
        ));
        for e in 0..NE {
            let s = 20.0 + e as f32;
            ts.push(f32r(
                &format!("{p}.experts.{e}.gate_proj.weight"),
                &[EF, D],
                s,
            ));
            ts.push(f32r(
                &format!("{p}.experts.{e}.up_proj.weight"),
                &[EF, D],
                s + 0.1,
            ));
            ts.push(f32r(
                &format!("{p}.experts.{e}.down_proj.weight"),
                &[D, EF],
                s + 0.2,
            ));
        }
        ts.push(f32r(
            &format!("{p}.shared_experts.gate_proj.weight"),
            &[EF, D],
            14.0,
        ));
        ts.push(f32r(
            &format!("{p}.shared_experts.up_proj.weight"),
            &[EF, D],
            15.0,
        ));
        ts.push(f32r(
            &format!("{p}.shared_experts.down_proj.weight"),
            &[D, EF],
            16.0,
        ));
    }
    // The MTP layer's own tensors (layer index == num_hidden_layers).
    let p = "model.layers.2";
    ts.push(f32r(&format!("{p}.enorm.weight"), &[D], 17.0));
    ts.push(f32r(&format!("{p}.hnorm.weight"), &[D], 17.5));
    ts.push(f32r(&format!("{p}.eh_proj.weight"), &[D, 2 * D], 18.0));
    ts.push(f32r(&format!("{p}.shared_head.norm.weight"), &[D], 18.5));
    ts
}

fn find<'a>(ts: &'a [T], name: &str) -> &'a T {
    ts.iter().find(|t| t.name == name).unwrap()
}

fn as_f32(t: &T) -> Vec<f32> {
    t.bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn deepseek_kv_b_split_experts_and_mtp() {
    let d = TempDir::new("deepseek");
    let ts = deepseek_tensors();
    d.write("config.json", deepseek_config().to_string().as_bytes());
    d.write("model.safetensors", &safetensors_bytes(&ts));
    let m = load(d.path()).unwrap();

    for l in 0..3 {
        let kv_b = as_f32(find(
            &ts,
            &format!("model.layers.{l}.self_attn.kv_b_proj.weight"),
        ));
        let k_b = m.weights.get(&format!("blk.{l}.attn_k_b.weight")).unwrap();
        let v_b = m.weights.get(&format!("blk.{l}.attn_v_b.weight")).unwrap();
        assert_eq!(k_b.shape, vec![NH, LORA, NOPE]);
        assert_eq!(v_b.shape, vec![NH, VD, LORA]);
        let (k_b, v_b) = (k_b.to_f32().unwrap(), v_b.to_f32().unwrap());
        for h in 0..NH {
            for c in 0..LORA {
                for n in 0..NOPE {
                    let row = h * (NOPE + VD) + n;
                    assert_eq!(k_b[(h * LORA + c) * NOPE + n], kv_b[row * LORA + c]);
                }
                for v in 0..VD {
                    let row = h * (NOPE + VD) + NOPE + v;
                    assert_eq!(v_b[(h * VD + v) * LORA + c], kv_b[row * LORA + c]);
                }
            }
        }
        assert!(!m
            .weights
            .contains(&format!("model.layers.{l}.self_attn.kv_b_proj.weight")));
        assert!(m.weights.contains(&format!("blk.{l}.attn_q.weight")));
        assert!(m.weights.contains(&format!("blk.{l}.attn_kv_a_mqa.weight")));
        assert!(m
            .weights
            .contains(&format!("blk.{l}.attn_kv_a_norm.weight")));
    }
    for e in 0..NE {
        for (hf_p, canon) in [
            ("gate_proj", "ffn_gate"),
            ("up_proj", "ffn_up"),
            ("down_proj", "ffn_down"),
        ] {
            let src = find(
                &ts,
                &format!("model.layers.1.mlp.experts.{e}.{hf_p}.weight"),
            );
            let t = m
                .weights
                .get(&format!("blk.1.exp.{e}.{canon}.weight"))
                .unwrap();
            assert_eq!(t.bytes(), &src.bytes[..]);
            assert!(is_mapped(t));
        }
    }
    for (canon, hfname) in [
        (
            "blk.1.ffn_gate_inp.weight",
            "model.layers.1.mlp.gate.weight",
        ),
        (
            "blk.1.exp_probs_b.bias",
            "model.layers.1.mlp.gate.e_score_correction_bias",
        ),
        (
            "blk.1.ffn_gate_shexp.weight",
            "model.layers.1.mlp.shared_experts.gate_proj.weight",
        ),
        (
            "blk.1.ffn_up_shexp.weight",
            "model.layers.1.mlp.shared_experts.up_proj.weight",
        ),
        (
            "blk.1.ffn_down_shexp.weight",
            "model.layers.1.mlp.shared_experts.down_proj.weight",
        ),
        (
            "blk.0.ffn_gate.weight",
            "model.layers.0.mlp.gate_proj.weight",
        ),
        ("blk.2.nextn.enorm.weight", "model.layers.2.enorm.weight"),
        ("blk.2.nextn.hnorm.weight", "model.layers.2.hnorm.weight"),
        (
            "blk.2.nextn.eh_proj.weight",
            "model.layers.2.eh_proj.weight",
        ),
        (
            "blk.2.nextn.shared_head_norm.weight",
            "model.layers.2.shared_head.norm.weight",
        ),
        (
            "blk.2.exp.3.ffn_down.weight",
            "model.layers.2.mlp.experts.3.down_proj.weight",
        ),
    ] {
        let t = m.weights.get(canon).unwrap();
        assert_eq!(t.bytes(), &find(&ts, hfname).bytes[..], "{canon}");
    }

    // kv_b of the wrong shape is an error naming it.
    let mut bad = deepseek_tensors();
    let i = bad
        .iter()
        .position(|t| t.name == "model.layers.1.self_attn.kv_b_proj.weight")
        .unwrap();
    bad[i] = f32r(
        "model.layers.1.self_attn.kv_b_proj.weight",
        &[NH * (NOPE + VD), LORA + 1],
        0.0,
    );
    d.write("model.safetensors", &safetensors_bytes(&bad));
    let e = load_err(d.path());
    assert!(e.contains("kv_b_proj"), "{e}");
}

#[test]
fn mixtral_expert_names() {
    let d = TempDir::new("mixtral");
    let mut cfg = dense_config("MixtralForCausalLM", false);
    cfg["num_local_experts"] = json!(NE);
    cfg["num_experts_per_tok"] = json!(2);
    let mut ts: Vec<T> = dense_tensors(true)
        .into_iter()
        .filter(|t| !t.name.contains(".mlp."))
        .collect();
    ts.push(f32r(
        "model.layers.0.block_sparse_moe.gate.weight",
        &[NE, D],
        1.0,
    ));
    for e in 0..NE {
        let p = format!("model.layers.0.block_sparse_moe.experts.{e}");
        ts.push(f32r(&format!("{p}.w1.weight"), &[F, D], 2.0 + e as f32));
        ts.push(f32r(&format!("{p}.w3.weight"), &[F, D], 3.0 + e as f32));
        ts.push(f32r(&format!("{p}.w2.weight"), &[D, F], 4.0 + e as f32));
    }
    d.write("config.json", cfg.to_string().as_bytes());
    d.write("model.safetensors", &safetensors_bytes(&ts));
    let m = load(d.path()).unwrap();
    assert_eq!(
        m.weights.get("blk.0.ffn_gate_inp.weight").unwrap().bytes(),
        &find(&ts, "model.layers.0.block_sparse_moe.gate.weight").bytes[..]
    );
    for e in 0..NE {
        for (w, canon) in [("w1", "ffn_gate"), ("w3", "ffn_up"), ("w2", "ffn_down")] {
            let src = find(
                &ts,
                &format!("model.layers.0.block_sparse_moe.experts.{e}.{w}.weight"),
            );
            let t = m
                .weights
                .get(&format!("blk.0.exp.{e}.{canon}.weight"))
                .unwrap();
            assert_eq!(t.bytes(), &src.bytes[..], "{e} {w}");
        }
    }
}

/// transformers 5's in-memory layout (written by `save_pretrained(save_original_format=False)`):
/// `mlp.experts.gate_up_proj` `[E, 2 * ffn, hidden]` with the gate half first, and
/// `mlp.experts.down_proj` `[E, hidden, ffn]`.
#[test]
fn fused_experts_are_split_per_expert() {
    let d = TempDir::new("fused");
    let mut cfg = dense_config("Qwen3MoeForCausalLM", false);
    cfg["num_experts"] = json!(NE);
    cfg["num_experts_per_tok"] = json!(2);
    cfg["moe_intermediate_size"] = json!(EF);
    cfg["head_dim"] = json!(4);
    let mut ts: Vec<T> = dense_tensors(true)
        .into_iter()
        .filter(|t| !t.name.contains(".mlp."))
        .collect();
    ts.push(f32r("model.layers.0.mlp.gate.weight", &[NE, D], 1.0));
    let gu: Vec<f32> = (0..NE * 2 * EF * D).map(|i| i as f32).collect();
    let dn: Vec<f32> = (0..NE * D * EF).map(|i| -(i as f32)).collect();
    ts.push(f32t(
        "model.layers.0.mlp.experts.gate_up_proj",
        &[NE, 2 * EF, D],
        &gu,
    ));
    ts.push(f32t(
        "model.layers.0.mlp.experts.down_proj",
        &[NE, D, EF],
        &dn,
    ));
    d.write("config.json", cfg.to_string().as_bytes());
    d.write("model.safetensors", &safetensors_bytes(&ts));
    let m = load(d.path()).unwrap();
    for e in 0..NE {
        let gate = m
            .weights
            .get(&format!("blk.0.exp.{e}.ffn_gate.weight"))
            .unwrap();
        let up = m
            .weights
            .get(&format!("blk.0.exp.{e}.ffn_up.weight"))
            .unwrap();
        let down = m
            .weights
            .get(&format!("blk.0.exp.{e}.ffn_down.weight"))
            .unwrap();
        assert_eq!(gate.shape, vec![EF, D]);
        assert_eq!(up.shape, vec![EF, D]);
        assert_eq!(down.shape, vec![D, EF]);
        assert!(is_mapped(gate) && is_mapped(up) && is_mapped(down));
        let (g, u, dd) = (
            gate.to_f32().unwrap(),
            up.to_f32().unwrap(),
            down.to_f32().unwrap(),
        );
        for r in 0..EF {
            for c in 0..D {
                assert_eq!(g[r * D + c], gu[(e * 2 * EF + r) * D + c]);
                assert_eq!(u[r * D + c], gu[(e * 2 * EF + EF + r) * D + c]);
            }
        }
        assert_eq!(dd, dn[e * D * EF..(e + 1) * D * EF]);
    }
    assert!(!m
        .weights
        .contains("model.layers.0.mlp.experts.gate_up_proj"));

    // Expert count disagreeing with config.json.
    cfg["num_experts"] = json!(NE + 1);
    d.write("config.json", cfg.to_string().as_bytes());
    let e = load_err(d.path());
    assert!(e.contains("gate_up_proj") || e.contains("down_proj"), "{e}");

    // Both layouts at once: two tensors for one canonical name.
    cfg["num_experts"] = json!(NE);
    d.write("config.json", cfg.to_string().as_bytes());
    ts.push(f32r(
        "model.layers.0.mlp.experts.0.gate_proj.weight",
        &[EF, D],
        0.0,
    ));
    d.write("model.safetensors", &safetensors_bytes(&ts));
    let e = load_err(d.path());
    assert!(e.contains("blk.0.exp.0.ffn_gate.weight"), "{e}");
}

// ---------------------------------------------------------------- bad files

fn good_file() -> Vec<u8> {
    safetensors_bytes(&dense_tensors(true))
}

fn dir_with_file(bytes: &[u8]) -> TempDir {
    let d = TempDir::new("bad");
    d.write(
        "config.json",
        dense_config("LlamaForCausalLM", false)
            .to_string()
            .as_bytes(),
    );
    d.write("model.safetensors", bytes);
    d
}

/// A file with this header JSON and `data_len` zero bytes of data.
fn file_with_header(header: &Value, data_len: usize) -> Vec<u8> {
    let h = header.to_string();
    let mut b = (h.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(h.as_bytes());
    b.resize(b.len() + data_len, 0);
    b
}

#[test]
fn bad_safetensors_files_are_errors() {
    // Header length past the end of the file.
    let mut b = good_file();
    let n = b.len() as u64;
    b[..8].copy_from_slice(&n.to_le_bytes());
    let e = load_err(dir_with_file(&b).path());
    assert!(
        e.contains("header length") && e.contains("past the end"),
        "{e}"
    );
    let mut b = good_file();
    b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = load_err(dir_with_file(&b).path());
    assert!(e.contains("past the end"), "{e}");

    // Too short for a header at all; empty file.
    for short in [&b"\x01\x00"[..], &b""[..]] {
        let e = load_err(dir_with_file(short).path());
        assert!(e.contains("too short"), "{e}");
    }

    // Header not JSON.
    let mut b = 5u64.to_le_bytes().to_vec();
    b.extend_from_slice(b"{oops");
    let e = load_err(dir_with_file(&b).path());
    assert!(e.contains("not valid JSON"), "{e}");

    // Offsets out of range.
    let h = json!({"model.norm.weight": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}});
    let e = load_err(dir_with_file(&file_with_header(&h, 16)).path());
    assert!(
        e.contains("model.norm.weight") && e.contains("out of range"),
        "{e}"
    );
    let h = json!({"model.norm.weight": {"dtype": "F32", "shape": [8], "data_offsets": [40, 8]}});
    let e = load_err(dir_with_file(&file_with_header(&h, 64)).path());
    assert!(e.contains("out of range"), "{e}");

    // Byte count disagreeing with the shape, and a shape that overflows.
    let h = json!({"model.norm.weight": {"dtype": "F32", "shape": [8], "data_offsets": [0, 16]}});
    let e = load_err(dir_with_file(&file_with_header(&h, 16)).path());
    assert!(
        e.contains("model.norm.weight") && e.contains("expected 32"),
        "{e}"
    );
    let h = json!({"x": {"dtype": "F32", "shape": [u64::MAX, 4], "data_offsets": [0, 16]}});
    let e = load_err(dir_with_file(&file_with_header(&h, 16)).path());
    assert!(e.contains("overflows"), "{e}");

    // Unsupported dtype.
    let h = json!({"model.ids": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}});
    let err = load(dir_with_file(&file_with_header(&h, 16)).path())
        .err()
        .unwrap();
    assert!(matches!(err, ModelError::UnsupportedType { .. }), "{err}");
    let e = err.to_string();
    assert!(e.contains("model.ids") && e.contains("I64"), "{e}");

    // Malformed entries.
    for h in [
        json!({"x": 3}),
        json!({"x": {"shape": [1], "data_offsets": [0, 4]}}),
        json!({"x": {"dtype": "F32", "data_offsets": [0, 4]}}),
        json!({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}),
        json!({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}),
        json!({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, -4]}}),
        json!([1, 2]),
    ] {
        let e = load_err(dir_with_file(&file_with_header(&h, 4)).path());
        assert!(e.contains("model.safetensors"), "{h}: {e}");
    }
}

#[test]
fn corrupted_files_never_panic() {
    // Flip bytes all over a valid file (header and data) and truncate it at many points:
    // each load is Ok or Err, never a panic.
    let good = good_file();
    let d = dir_with_file(&good);
    let mut state = 0x2545f4914f6cdd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..300 {
        let mut b = good.clone();
        if i % 3 == 0 {
            b.truncate((next() as usize) % good.len());
        } else {
            for _ in 0..1 + i % 4 {
                // Mostly the header (first ~2 KB), sometimes anywhere.
                let span = if next() % 4 == 0 {
                    b.len()
                } else {
                    b.len().min(2048)
                };
                let pos = (next() as usize) % span;
                b[pos] = next() as u8;
            }
        }
        d.write("model.safetensors", &b);
        let _ = load(d.path());
    }
}
