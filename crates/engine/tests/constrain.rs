//! JSON constrained decoding: random walks through the mask always give JSON that parses and
//! validates (checked by an independent validator over `serde_json::Value` below), the mask
//! agrees with token-by-token acceptance, hand-written valid documents are accepted and invalid
//! ones rejected, unsupported keywords are errors. On SmolLM2's real vocabulary too when the
//! model is in the cache (the mask time per step is printed: run with `--nocapture`).

use mixture_engine::constrain::{ConstrainError, JsonConstraint, ResponseFormat, TokenBytes};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// An independent validator for the schema subset (over parsed values, no grammar).

/// The token ids the constraint allows now.
fn allowed_ids(c: &mut JsonConstraint) -> Vec<u32> {
    c.allowed()
        .iter()
        .enumerate()
        .filter(|(_, a)| **a)
        .map(|(i, _)| i as u32)
        .collect()
}

fn resolve<'a>(root: &'a Value, r: &str) -> &'a Value {
    if r == "#" {
        return root;
    }
    let (sec, name) = r
        .strip_prefix("#/$defs/")
        .map(|n| ("$defs", n))
        .or_else(|| r.strip_prefix("#/definitions/").map(|n| ("definitions", n)))
        .expect("ref form");
    &root[sec][name]
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        other => panic!("type {other}"),
    }
}

fn valid(root: &Value, s: &Value, v: &Value) -> bool {
    let s = match s {
        Value::Bool(b) => return *b,
        Value::Object(m) => m,
        _ => panic!("schema"),
    };
    if let Some(r) = s.get("$ref") {
        return valid(root, resolve(root, r.as_str().unwrap()), v);
    }
    let nullable = s.get("nullable") == Some(&Value::Bool(true));
    if nullable && v.is_null() {
        return true;
    }
    if let Some(alts) = s.get("anyOf") {
        return alts.as_array().unwrap().iter().any(|a| valid(root, a, v));
    }
    if let Some(all) = s.get("allOf") {
        return all.as_array().unwrap().iter().all(|a| valid(root, a, v));
    }
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(t) => type_ok(t, v),
            Value::Array(ts) => ts.iter().any(|t| type_ok(t.as_str().unwrap(), v)),
            _ => panic!("type"),
        };
        if !ok {
            return false;
        }
    }
    if let Some(e) = s.get("enum") {
        if !e.as_array().unwrap().contains(v) {
            return false;
        }
    }
    if let Some(c) = s.get("const") {
        if c != v {
            return false;
        }
    }
    if let Value::Object(obj) = v {
        let props = s.get("properties").and_then(Value::as_object);
        if let Some(req) = s.get("required") {
            for k in req.as_array().unwrap() {
                if !obj.contains_key(k.as_str().unwrap()) {
                    return false;
                }
            }
        }
        for (k, val) in obj {
            let sub = props
                .and_then(|p| p.get(k))
                .or_else(|| s.get("additionalProperties"));
            if let Some(sub) = sub {
                if !valid(root, sub, val) {
                    return false;
                }
            }
        }
    }
    if let Value::Array(items) = v {
        if let Some(is) = s.get("items") {
            if !items.iter().all(|x| valid(root, is, x)) {
                return false;
            }
        }
        if let Some(n) = s.get("minItems") {
            if (items.len() as u64) < n.as_u64().unwrap() {
                return false;
            }
        }
        if let Some(n) = s.get("maxItems") {
            if (items.len() as u64) > n.as_u64().unwrap() {
                return false;
            }
        }
    }
    if let Value::String(text) = v {
        let n = text.chars().count() as u64;
        if let Some(m) = s.get("minLength") {
            if n < m.as_u64().unwrap() {
                return false;
            }
        }
        if let Some(m) = s.get("maxLength") {
            if n > m.as_u64().unwrap() {
                return false;
            }
        }
    }
    true
}

// ---------------------------------------------------------------------------------------
// Schemas under test.

fn big_enum() -> String {
    let vals: Vec<String> = (0..100).map(|i| format!("\"v{i}\"")).collect();
    format!("{{\"enum\": [{}]}}", vals.join(","))
}

fn schemas() -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> = vec![
        ("person", r#"{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},"email":{"type":"string","maxLength":20}},"required":["name","age"],"additionalProperties":false}"#.into()),
        ("numbers", r#"{"type":"array","items":{"type":"number"},"minItems":1,"maxItems":4}"#.into()),
        ("status", r#"{"type":"object","properties":{"status":{"enum":["ok","error","pending"]},"code":{"type":["integer","null"]},"tags":{"type":"array","items":{"type":"string","minLength":1,"maxLength":5},"maxItems":3}},"required":["status","code","tags"]}"#.into()),
        ("any_of", r#"{"anyOf":[{"type":"object","properties":{"a":{"type":"boolean"}},"required":["a"]},{"type":"object","properties":{"ab":{"type":"null"}},"required":["ab"]},{"type":"string","maxLength":8}]}"#.into()),
        ("refs", r##"{"$defs":{"point":{"type":"object","properties":{"x":{"type":"number"},"y":{"type":"number"}},"required":["x","y"],"additionalProperties":false}},"type":"object","properties":{"from":{"$ref":"#/$defs/point"},"to":{"$ref":"#/$defs/point"},"label":{"const":"line"}},"required":["from","to"]}"##.into()),
        ("any", "{}".into()),
        ("integer", r#"{"type":"integer"}"#.into()),
        ("mixed_enum", r#"{"enum":[1,12,123,"x",null,true,{"k":[1,2]}]}"#.into()),
        ("tree", r##"{"type":"object","properties":{"value":{"type":"integer"},"children":{"type":"array","items":{"$ref":"#"},"maxItems":2}},"required":["value"]}"##.into()),
        ("map", r#"{"type":"object","additionalProperties":{"type":"boolean"}}"#.into()),
        ("optional", r#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"number"},"c":{"type":"boolean"}}}"#.into()),
        ("nullable", r#"{"type":"string","nullable":true}"#.into()),
        ("empty_object", r#"{"type":"object","additionalProperties":false}"#.into()),
        ("pydantic", r##"{"$defs":{"Color":{"enum":["red","green"],"title":"Color","type":"string"}},"properties":{"color":{"$ref":"#/$defs/Color"},"note":{"anyOf":[{"type":"string"},{"type":"null"}],"default":null,"title":"Note"},"sizes":{"items":{"type":"integer"},"title":"Sizes","type":"array"}},"required":["color","note","sizes"],"title":"Item","type":"object","additionalProperties":false}"##.into()),
    ];
    v.push(("big_enum", big_enum()));
    v.push(("twins", r#"{"anyOf":[{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"]},{"type":"object","properties":{"name":{"type":"string","maxLength":10},"color":{"type":"string"}},"required":["name","color"]}]}"#.into()));
    v
}

fn format_of(schema: &str) -> ResponseFormat {
    let body = format!(
        r#"{{"type":"json_schema","json_schema":{{"name":"t","schema":{schema},"strict":true}}}}"#
    );
    serde_json::from_str(&body).expect("response_format parses")
}

// ---------------------------------------------------------------------------------------
// Vocabularies.

const EOS: u32 = 0;

fn synthetic_vocab() -> Arc<TokenBytes> {
    let mut toks: Vec<Option<Vec<u8>>> = vec![None, None]; // 0: stop, 1: another special
    for b in [b'\t', b'\n', b'\r'] {
        toks.push(Some(vec![b]));
    }
    for b in (0x20u8..=0x7e).chain(0x80..=0xFF) {
        toks.push(Some(vec![b]));
    }
    let multi: &[&[u8]] = &[
        b"{\"",
        b"\":",
        b"\",",
        b"\"}",
        b"\",\"",
        b"\": \"",
        b"true",
        b"false",
        b"null",
        b"12",
        b"0.",
        b"e+",
        b"  ",
        b"\n  ",
        "é".as_bytes(),
        "日".as_bytes(),
        &[0x97, 0xA5],
        "😀".as_bytes(),
        b"\\u00e9",
        b"\\ud83d",
        b"\\n",
        b"name",
        b"\"name\"",
        b"age",
        b"status",
        b"ok\"",
        b"\"}]",
        b"]}",
        b"},{\"",
        b"\"v1",
        b"\"v",
        b"9\"",
        b"-0",
        b"1e",
        b"\":[",
        b"\":{",
        b"ab\":",
        b"\"x\"",
        b"{\"k\":[1,2]}",
    ];
    for m in multi {
        toks.push(Some(m.to_vec()));
    }
    toks.push(Some(Vec::new())); // an empty token is never allowed
    Arc::new(TokenBytes::from_tokens(toks))
}

fn model_path() -> PathBuf {
    let cache = std::env::var_os("MIXTURE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/mixture")))
        .unwrap_or_else(|| PathBuf::from(".cache/mixture"));
    cache.join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn real_tokenizer() -> Option<mixture_model::tokenizer::Tokenizer> {
    let path = model_path();
    if !path.exists() {
        eprintln!(
            "skipping real-vocabulary checks: {} not found",
            path.display()
        );
        return None;
    }
    Some(mixture_model::tokenizer::Tokenizer::load(&path).expect("tokenizer loads"))
}

// ---------------------------------------------------------------------------------------
// Random walks.

struct WalkStats {
    done: usize,
    total: usize,
    steps: usize,
    mask_time: Duration,
    max_mask: Duration,
    worst_at: String,
}

/// Walk `walks` times, sampling uniformly among allowed tokens. Every finished output must
/// parse and validate. `check` tokens per step are compared against `accept` on a copy.
#[allow(clippy::too_many_arguments)]
fn random_walks(
    name: &str,
    format: &ResponseFormat,
    schema: &Value,
    vocab: &Arc<TokenBytes>,
    stops: &[u32],
    walks: usize,
    max_steps: usize,
    check: usize,
    seed: u64,
) -> WalkStats {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut st = WalkStats {
        done: 0,
        total: walks,
        steps: 0,
        mask_time: Duration::ZERO,
        max_mask: Duration::ZERO,
        worst_at: String::new(),
    };
    for _ in 0..walks {
        let mut c = JsonConstraint::new(format, vocab.clone(), stops).expect("constraint");
        let mut out: Vec<u8> = Vec::new();
        let mut finished = false;
        for _ in 0..max_steps {
            let t0 = Instant::now();
            let allowed = allowed_ids(&mut c);
            let dt = t0.elapsed();
            st.mask_time += dt;
            if dt > st.max_mask {
                let tail = out.len().saturating_sub(40);
                st.worst_at = String::from_utf8_lossy(&out[tail..]).into_owned();
            }
            st.max_mask = st.max_mask.max(dt);
            st.steps += 1;
            assert!(
                !allowed.is_empty(),
                "{name}: no token allowed after {:?}",
                String::from_utf8_lossy(&out)
            );
            // The mask agrees with acceptance one token at a time.
            let n = vocab.len() as u32;
            let probes: Vec<u32> = if check >= vocab.len() {
                (0..n).collect()
            } else {
                (0..check).map(|_| rng.random_range(0..n)).collect()
            };
            let allowed_set = c.allowed().to_vec();
            for t in probes {
                let ok = c.clone().accept(t).is_ok();
                assert_eq!(
                    allowed_set[t as usize],
                    ok,
                    "{name}: mask and accept disagree on token {t} ({:?}) after {:?}",
                    vocab.get(t).map(String::from_utf8_lossy),
                    String::from_utf8_lossy(&out)
                );
            }
            let t = allowed[rng.random_range(0..allowed.len())];
            c.accept(t).expect("an allowed token is accepted");
            if stops.contains(&t) {
                finished = true;
                break;
            }
            out.extend_from_slice(vocab.get(t).expect("allowed tokens have bytes"));
            if c.is_complete() {
                finished = true;
                break;
            }
        }
        if !finished {
            continue;
        }
        assert!(c.is_complete(), "{name}: finished but not complete");
        let text = String::from_utf8(out.clone())
            .unwrap_or_else(|_| panic!("{name}: output is not UTF-8: {out:?}"));
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{name}: output does not parse ({e}): {text}"));
        assert!(
            valid(schema, schema, &v),
            "{name}: output does not validate: {text}"
        );
        st.done += 1;
    }
    st
}

#[test]
fn random_walks_synthetic_vocab_always_validate() {
    let vocab = synthetic_vocab();
    for (i, (name, schema)) in schemas().iter().enumerate() {
        let format = format_of(schema);
        let sv: Value = serde_json::from_str(schema).unwrap();
        let st = random_walks(
            name,
            &format,
            &sv,
            &vocab,
            &[EOS],
            40,
            3000,
            usize::MAX,
            i as u64,
        );
        eprintln!("{name}: {}/{} walks finished", st.done, st.total);
        assert!(
            st.done * 2 >= st.total,
            "{name}: too few walks finished ({}/{})",
            st.done,
            st.total
        );
    }
}

#[test]
fn random_walks_json_object() {
    let vocab = synthetic_vocab();
    let format: ResponseFormat = serde_json::from_str(r#"{"type":"json_object"}"#).unwrap();
    let schema: Value = serde_json::from_str(r#"{"type":"object"}"#).unwrap();
    let st = random_walks(
        "json_object",
        &format,
        &schema,
        &vocab,
        &[EOS],
        40,
        3000,
        usize::MAX,
        7,
    );
    assert!(
        st.done * 2 >= st.total,
        "json_object: {}/{}",
        st.done,
        st.total
    );
}

#[test]
fn random_walks_real_vocab_and_mask_time() {
    let Some(tok) = real_tokenizer() else { return };
    let t0 = Instant::now();
    let vocab = Arc::new(TokenBytes::from_tokenizer(&tok).unwrap());
    eprintln!(
        "TokenBytes for {} tokens built in {:?}",
        vocab.len(),
        t0.elapsed()
    );
    let stops = tok.eos_ids().to_vec();
    assert!(!stops.is_empty());
    let mut all_steps = 0;
    let mut all_time = Duration::ZERO;
    let mut worst = Duration::ZERO;
    for (i, (name, schema)) in schemas().iter().enumerate() {
        let format = format_of(schema);
        let sv: Value = serde_json::from_str(schema).unwrap();
        let st = random_walks(
            name,
            &format,
            &sv,
            &vocab,
            &stops,
            6,
            400,
            200,
            100 + i as u64,
        );
        eprintln!(
            "{name}: {}/{} walks finished; mask {:.3} ms/step mean over {} steps, max {:.3} ms after {:?}",
            st.done,
            st.total,
            st.mask_time.as_secs_f64() * 1e3 / st.steps.max(1) as f64,
            st.steps,
            st.max_mask.as_secs_f64() * 1e3,
            st.worst_at
        );
        all_steps += st.steps;
        all_time += st.mask_time;
        worst = worst.max(st.max_mask);
    }
    eprintln!(
        "real vocab: mask {:.3} ms/step mean over {all_steps} steps, worst {:.3} ms",
        all_time.as_secs_f64() * 1e3 / all_steps.max(1) as f64,
        worst.as_secs_f64() * 1e3
    );
}

// ---------------------------------------------------------------------------------------
// Hand-written documents.

/// (schema name, document, valid?)
fn documents() -> Vec<(&'static str, &'static str, bool)> {
    vec![
        ("person", r#"{"name":"Ann","age":31}"#, true),
        (
            "person",
            r#"{"name": "Ann", "age": 31, "email": "a@b.c"}"#,
            true,
        ),
        (
            "person",
            "{\n  \"name\": \"Jürgen \\\"J\\\" 日本\",\n  \"age\": -7\n}",
            true,
        ),
        ("person", r#"{"name":"Ann"}"#, false),
        ("person", r#"{"name":"Ann","age":31.5}"#, false),
        ("person", r#"{"name":"Ann","age":31,"extra":1}"#, false),
        (
            "person",
            r#"{"name":"Ann","age":31,"email":"this-is-longer-than-twenty@x.y"}"#,
            false,
        ),
        ("person", r#"{"name":"Ann","age":031}"#, false),
        ("person", r#"{"name":"Ann","age":31,}"#, false),
        ("person", r#"["Ann",31]"#, false),
        ("numbers", "[1, -2.5, 3e10, 0.25E-3]", true),
        ("numbers", "[]", false),
        ("numbers", "[1,2,3,4,5]", false),
        ("numbers", "[1,\"2\"]", false),
        ("numbers", "[.5]", false),
        (
            "status",
            r#"{"status":"pending","code":null,"tags":["a","bcde"]}"#,
            true,
        ),
        ("status", r#"{"status":"ok","code":200,"tags":[]}"#, true),
        ("status", r#"{"status":"fine","code":200,"tags":[]}"#, false),
        ("status", r#"{"status":"ok","code":200,"tags":[""]}"#, false),
        (
            "status",
            r#"{"status":"ok","code":200,"tags":["abcdef"]}"#,
            false,
        ),
        ("any_of", r#"{"a":true}"#, true),
        ("any_of", r#"{"ab":null}"#, true),
        ("any_of", r#""short""#, true),
        ("any_of", r#"{"a":null}"#, false),
        ("any_of", r#""much too long""#, false),
        (
            "refs",
            r#"{"from":{"x":0,"y":1.5},"to":{"x":-1,"y":2},"label":"line"}"#,
            true,
        ),
        (
            "refs",
            r#"{"from":{"x":0,"y":1.5},"to":{"x":-1,"y":2},"label":"curve"}"#,
            false,
        ),
        ("refs", r#"{"from":{"x":0},"to":{"x":-1,"y":2}}"#, false),
        ("any", r#"[{"a":[1,2,{"b":null}]},"s",-0.5,true]"#, true),
        ("any", r#"{"a":1"#, false),
        ("integer", "42", true),
        ("integer", "-42", true),
        ("integer", "4.2", false),
        ("mixed_enum", "12", true),
        ("mixed_enum", r#"{"k":[1,2]}"#, true),
        ("mixed_enum", "2", false),
        (
            "tree",
            r#"{"value":1,"children":[{"value":2},{"value":3,"children":[]}]}"#,
            true,
        ),
        (
            "tree",
            r#"{"value":1,"children":[{"value":2},{"value":3},{"value":4}]}"#,
            false,
        ),
        ("map", r#"{"x":true,"y":false}"#, true),
        ("map", r#"{"x":1}"#, false),
        ("optional", r#"{"c":false}"#, true),
        ("optional", "{}", true),
        ("optional", r#"{"a":"x","c":true}"#, true),
        ("nullable", "null", true),
        ("nullable", r#""x""#, true),
        ("nullable", "1", false),
        ("empty_object", "{ }", true),
        ("empty_object", r#"{"a":1}"#, false),
        (
            "pydantic",
            r#"{"color":"red","note":null,"sizes":[1,2]}"#,
            true,
        ),
        (
            "pydantic",
            r#"{"color":"blue","note":null,"sizes":[1,2]}"#,
            false,
        ),
        ("big_enum", r#""v99""#, true),
        ("twins", r#"{"name":"a long name here","age":3}"#, true),
        ("twins", r#"{"name":"short","color":"red"}"#, true),
        (
            "twins",
            r#"{"name":"a long name here","color":"red"}"#,
            false,
        ),
        ("big_enum", r#""v100""#, false),
    ]
}

/// Feed `tokens`; true when all are accepted and the value is complete (after a stop token
/// if it could still go on).
fn accepts(c: &mut JsonConstraint, tokens: &[u32], stop: u32) -> bool {
    for &t in tokens {
        if c.accept(t).is_err() {
            return false;
        }
    }
    c.is_complete() || (c.can_stop() && c.accept(stop).is_ok())
}

#[test]
fn documents_byte_tokens() {
    let vocab = synthetic_vocab();
    let byte_ids: Vec<Option<u32>> = (0..=255u8)
        .map(|b| (0..vocab.len() as u32).find(|&i| vocab.get(i) == Some(&[b][..])))
        .collect();
    let schemas = schemas();
    for (name, doc, want) in documents() {
        let schema = &schemas.iter().find(|(n, _)| *n == name).unwrap().1;
        let sv: Value = serde_json::from_str(schema).unwrap();
        // The reference agrees with the expectation (the list itself is right).
        let parsed: Option<Value> = serde_json::from_str(doc).ok();
        let reference = parsed.as_ref().is_some_and(|v| valid(&sv, &sv, v));
        assert_eq!(
            reference, want,
            "{name}: the validator disagrees with the list on {doc}"
        );
        let tokens: Vec<u32> = doc
            .bytes()
            .map(|b| byte_ids[b as usize].expect("a token per byte"))
            .collect();
        let mut c = JsonConstraint::new(&format_of(schema), vocab.clone(), &[EOS]).unwrap();
        assert_eq!(accepts(&mut c, &tokens, EOS), want, "{name}: {doc}");
    }
}

#[test]
fn documents_real_tokenizer() {
    let Some(tok) = real_tokenizer() else { return };
    let vocab = Arc::new(TokenBytes::from_tokenizer(&tok).unwrap());
    let stops = tok.eos_ids().to_vec();
    let schemas = schemas();
    for (name, doc, want) in documents() {
        let schema = &schemas.iter().find(|(n, _)| *n == name).unwrap().1;
        let tokens = tok.encode(doc, false, false).unwrap();
        let mut c = JsonConstraint::new(&format_of(schema), vocab.clone(), &stops).unwrap();
        assert_eq!(
            accepts(&mut c, &tokens, stops[0]),
            want,
            "{name}: {doc} as {tokens:?}"
        );
    }
}

#[test]
fn properties_keep_schema_order() {
    let vocab = synthetic_vocab();
    let schema = r#"{"type":"object","properties":{"z":{"type":"integer"},"a":{"type":"integer"}},"required":["z","a"]}"#;
    let fmt = format_of(schema);
    let ids = |s: &str| -> Vec<u32> {
        s.bytes()
            .map(|b| {
                (0..vocab.len() as u32)
                    .find(|&i| vocab.get(i) == Some(&[b][..]))
                    .unwrap()
            })
            .collect()
    };
    let mut c = JsonConstraint::new(&fmt, vocab.clone(), &[EOS]).unwrap();
    assert!(accepts(&mut c, &ids(r#"{"z":1,"a":2}"#), EOS));
    let mut c = JsonConstraint::new(&fmt, vocab.clone(), &[EOS]).unwrap();
    assert!(!accepts(&mut c, &ids(r#"{"a":2,"z":1}"#), EOS));
    // After the first key's quote, only `z` may follow.
    let mut c = JsonConstraint::new(&fmt, vocab.clone(), &[EOS]).unwrap();
    for t in ids("{\"") {
        c.accept(t).unwrap();
    }
    let allowed: Vec<String> = c
        .allowed()
        .iter()
        .enumerate()
        .filter(|(_, a)| **a)
        .map(|(i, _)| String::from_utf8_lossy(vocab.get(i as u32).unwrap()).into_owned())
        .collect();
    assert_eq!(allowed, vec!["z".to_string()]);
}

#[test]
fn whitespace_runs_are_bounded() {
    let vocab = synthetic_vocab();
    let space = (0..vocab.len() as u32)
        .find(|&i| vocab.get(i) == Some(b" "))
        .unwrap();
    let mut c = JsonConstraint::new(&format_of(r#"{"type":"object"}"#), vocab, &[EOS]).unwrap();
    let mut n = 0;
    while c.allowed()[space as usize] {
        c.accept(space).unwrap();
        n += 1;
        assert!(n < 1000, "spaces never stop");
    }
    assert!(n > 0 && n <= 64, "{n} spaces allowed before the value");
}

#[test]
fn complete_value_allows_only_stop_tokens() {
    let vocab = synthetic_vocab();
    let mut c =
        JsonConstraint::new(&format_of(r#"{"type":"boolean"}"#), vocab.clone(), &[EOS]).unwrap();
    let t = (0..vocab.len() as u32)
        .find(|&i| vocab.get(i) == Some(b"true"))
        .unwrap();
    c.accept(t).unwrap();
    assert!(c.is_complete());
    let allowed = allowed_ids(&mut c);
    assert_eq!(allowed, vec![EOS]);
    let mut logits = vec![1.0f32; vocab.len() + 3];
    c.mask(&mut logits);
    assert!(logits
        .iter()
        .enumerate()
        .all(|(i, &l)| (i as u32 == EOS) == (l == 1.0)));
    // A stop token too early is refused.
    let mut c = JsonConstraint::new(&format_of(r#"{"type":"boolean"}"#), vocab, &[EOS]).unwrap();
    assert!(c.accept(EOS).is_err());
}

// ---------------------------------------------------------------------------------------
// Errors.

#[test]
fn unsupported_keywords_are_errors() {
    let vocab = synthetic_vocab();
    let cases = [
        r#"{"type":"string","pattern":"^a+$"}"#,
        r#"{"type":"string","format":"date-time"}"#,
        r#"{"type":"integer","minimum":0}"#,
        r#"{"type":"number","multipleOf":2}"#,
        r#"{"oneOf":[{"type":"string"},{"type":"integer"}]}"#,
        r#"{"not":{"type":"string"}}"#,
        r#"{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":true}"#,
        r#"{"type":"array","prefixItems":[{"type":"string"}]}"#,
        r#"{"type":"array","items":{"type":"string"},"uniqueItems":true}"#,
        r#"{"type":"array","items":[{"type":"string"}]}"#,
        r#"{"$ref":"https://example.com/schema"}"#,
        r#"{"type":"object","properties":{"a":{"type":"string"}},"required":["b"]}"#,
        r#"{"allOf":[{"type":"string"},{"maxLength":3}]}"#,
        r#"{"type":"object","minProperties":1}"#,
        r#"{"type":"object","properties":{"a":{"type":"string","if":{}}}}"#,
    ];
    for schema in cases {
        match JsonConstraint::new(&format_of(schema), vocab.clone(), &[EOS]) {
            Err(ConstrainError::Unsupported { .. }) => {}
            other => panic!("{schema}: expected an unsupported error, got {other:?}"),
        }
    }
    // A chain of $refs deeper than the limit.
    let defs: Vec<String> = (0..200)
        .map(|i| format!("\"d{i}\": {{\"$ref\": \"#/$defs/d{}\"}}", i + 1))
        .chain(["\"d200\": {\"type\": \"string\"}".to_string()])
        .collect();
    let deep = format!(
        "{{\"$defs\": {{{}}}, \"$ref\": \"#/$defs/d0\"}}",
        defs.join(",")
    );
    match JsonConstraint::new(&format_of(&deep), vocab.clone(), &[EOS]) {
        Err(ConstrainError::Unsupported { .. }) => {}
        other => panic!("deep $ref chain: {other:?}"),
    }
    let invalid = [
        r#"{"type":"strin"}"#,
        r#"{"type":"array","minItems":3,"maxItems":2}"#,
        r##"{"$ref":"#/$defs/missing"}"##,
        r#"false"#,
        r#"{"enum":[]}"#,
        r#"{"type":"string","enum":[1,2]}"#,
    ];
    for schema in invalid {
        match JsonConstraint::new(&format_of(schema), vocab.clone(), &[EOS]) {
            Err(ConstrainError::InvalidSchema { .. }) => {}
            other => panic!("{schema}: expected an invalid-schema error, got {other:?}"),
        }
    }
}

#[test]
fn response_format_shapes() {
    let t: ResponseFormat = serde_json::from_str(r#"{"type":"text"}"#).unwrap();
    assert_eq!(t, ResponseFormat::Text);
    assert!(t.grammar().unwrap().is_none());
    let o: ResponseFormat = serde_json::from_str(r#"{"type":"json_object"}"#).unwrap();
    assert_eq!(o, ResponseFormat::JsonObject);
    let s: ResponseFormat = serde_json::from_str(
        r#"{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":{"b":{},"a":{}}}}}"#,
    )
    .unwrap();
    let ResponseFormat::JsonSchema { json_schema } = &s else {
        panic!()
    };
    let props = json_schema
        .schema
        .as_ref()
        .unwrap()
        .get("properties")
        .unwrap();
    let mixture_engine::constrain::Json::Object(members) = props else {
        panic!()
    };
    let names: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["b", "a"]);
    assert!(serde_json::from_str::<ResponseFormat>(r#"{"type":"xml"}"#).is_err());
    assert!(serde_json::from_str::<ResponseFormat>(
        r#"{"type":"json_schema","json_schema":{"schema":{"type":"integer"}}}"#
    )
    .is_ok());
    assert!(serde_json::from_str::<ResponseFormat>(
        r#"{"type":"json_schema","json_schema":{"name":"x","schema":{},"extra":1}}"#
    )
    .is_err());
    assert!(serde_json::from_str::<ResponseFormat>(r#"{"type":"json_schema"}"#).is_err());
    // No stop token: refused.
    let vocab = synthetic_vocab();
    assert!(JsonConstraint::new(&o, vocab.clone(), &[]).is_err());
    assert!(JsonConstraint::new(&t, vocab, &[EOS]).is_err());
}

/// Mask time per step on SmolLM2's vocabulary in typical states (median of 21 calls; run with
/// `--nocapture` to see the numbers).
#[test]
fn mask_time_real_vocab() {
    let Some(tok) = real_tokenizer() else { return };
    let vocab = Arc::new(TokenBytes::from_tokenizer(&tok).unwrap());
    let stops = tok.eos_ids().to_vec();
    let all = schemas();
    let schema = |n: &str| all.iter().find(|(k, _)| *k == n).unwrap().1.clone();
    let cases = [
        ("person", ""),
        ("person", "{"),
        ("person", "{\"name\":"),
        ("person", "{\"name\": \"Ann"),
        ("person", "{\"name\": \"Jür"),
        ("person", "{\"name\": \"Ann\", \"age\": 4"),
        ("person", "{\"name\": \"Ann\", \"age\": 4, \"email\": \"ab"),
        (
            "status",
            "{\"status\": \"pending\", \"code\": null, \"tags\": [\"ab",
        ),
        ("any", "[1, {\"a\": \"x"),
        ("any", "[1, {\"a\": "),
        ("any_of", ""),
        ("big_enum", "\"v"),
        ("twins", "{\"name\": \"Bo"),
    ];
    for (name, prefix) in cases {
        let mut c = JsonConstraint::new(&format_of(&schema(name)), vocab.clone(), &stops).unwrap();
        for t in tok.encode(prefix, false, false).unwrap() {
            c.accept(t).unwrap();
        }
        let mut times: Vec<Duration> = (0..21)
            .map(|_| {
                let t0 = Instant::now();
                let n = c.allowed().iter().filter(|a| **a).count();
                assert!(n > 0);
                t0.elapsed()
            })
            .collect();
        times.sort();
        let n = c.allowed().iter().filter(|a| **a).count();
        eprintln!(
            "mask {name:>9} after {prefix:?}: median {:.3} ms, max {:.3} ms, {n} tokens allowed",
            times[10].as_secs_f64() * 1e3,
            times[20].as_secs_f64() * 1e3
        );
    }
}

/// A schema whose values must nest forever hits the nesting cap: then only stop tokens are
/// allowed (generation ends) instead of no token at all.
#[test]
fn nesting_cap_never_leaves_an_empty_mask() {
    let vocab = synthetic_vocab();
    let schema = r##"{"type":"array","items":{"$ref":"#"},"minItems":1}"##;
    let mut c = JsonConstraint::new(&format_of(schema), vocab.clone(), &[EOS]).unwrap();
    let open = (0..vocab.len() as u32)
        .find(|&i| vocab.get(i) == Some(b"["))
        .unwrap();
    let mut depth = 0;
    loop {
        let allowed = allowed_ids(&mut c);
        assert!(!allowed.is_empty());
        if allowed.contains(&open) {
            c.accept(open).unwrap();
            depth += 1;
            assert!(depth < 1000);
            continue;
        }
        let ws_only = allowed.iter().all(|&t| {
            vocab
                .get(t)
                .is_some_and(|b| b.iter().all(|c| c.is_ascii_whitespace()))
        });
        assert!(ws_only || allowed == vec![EOS], "{allowed:?}");
        if allowed == vec![EOS] {
            break;
        }
        c.accept(allowed[0]).unwrap();
    }
    assert!(depth > 10, "depth {depth}");
    c.accept(EOS).unwrap();
    assert!(c.is_complete());
}
