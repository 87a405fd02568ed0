//! Chat templates rendered by us equal what transformers renders for the same template and
//! messages. Fixtures: tests/fixtures/chat_templates/*.json, made by
//! tools/make_template_fixtures.py from the real templates in the llama-cpp-python sdist and
//! SmolLM2's GGUF.

use mixture_model::chat_template::{ChatTemplate, Message};
use std::path::{Path, PathBuf};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/chat_templates")
}

#[derive(serde::Deserialize)]
struct Fixture {
    template: String,
    bos_token: String,
    eos_token: String,
    now_unix: i64,
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    messages: Vec<Message>,
    add_generation_prompt: bool,
    extra: Option<serde_json::Value>,
    expected: Option<String>,
    error: Option<String>,
}

fn first_difference(a: &str, b: &str) -> String {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let at = a
        .iter()
        .zip(&b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let ctx = |s: &[char]| {
        let window: String = s[at.saturating_sub(40)..(at + 40).min(s.len())]
            .iter()
            .collect();
        format!("{window:?}")
    };
    format!(
        "first difference at char {at}: ours {} vs expected {}",
        ctx(&a),
        ctx(&b)
    )
}

#[test]
fn renders_like_transformers() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .expect("tests/fixtures/chat_templates exists (tools/make_template_fixtures.py)")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 9,
        "expected the chat template fixtures, found {} files",
        files.len()
    );

    let (mut passed, mut total, mut errors_expected) = (0, 0, 0);
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(path).unwrap();
        let fx: Fixture = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!fx.cases.is_empty(), "{name}: no cases");
        let template = ChatTemplate::new(&fx.template, &fx.bos_token, &fx.eos_token)
            .and_then(|t| t.with_fixed_time(fx.now_unix))
            .unwrap_or_else(|e| panic!("{name}: template does not compile: {e}"));
        for case in &fx.cases {
            total += 1;
            let got = template.render(
                &case.messages,
                case.add_generation_prompt,
                case.extra.clone(),
            );
            match (&case.expected, &case.error, got) {
                (Some(want), None, Ok(got)) if *want == got => passed += 1,
                (Some(want), None, Ok(got)) => failures.push(format!(
                    "{name}/{}: {}",
                    case.name,
                    first_difference(&got, want)
                )),
                (Some(_), None, Err(e)) => {
                    failures.push(format!("{name}/{}: we failed: {e}", case.name))
                }
                (None, Some(_), Err(_)) => {
                    passed += 1;
                    errors_expected += 1;
                }
                (None, Some(err), Ok(got)) => failures.push(format!(
                    "{name}/{}: transformers fails ({err}) but we rendered {got:?}",
                    case.name
                )),
                _ => failures.push(format!("{name}/{}: malformed case", case.name)),
            }
        }
    }
    eprintln!(
        "{passed}/{total} cases pass over {} templates ({errors_expected} expected errors)",
        files.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The SmolLM2 GGUF's own template, read through `from_gguf_metadata`, equals the fixture's
/// (which gguf-py read from the same file). Skipped when the model is not downloaded.
#[test]
fn smollm2_template_from_gguf() {
    let cache = std::env::var_os("MIXTURE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/mixture")));
    let Some(path) = cache.map(|c| c.join("models/SmolLM2-135M-Instruct.Q4_1.gguf")) else {
        return;
    };
    if !path.exists() {
        eprintln!(
            "skipped: {} not present (tools/fetch_smollm2.sh)",
            path.display()
        );
        return;
    }
    let file = mixture_model::gguf::GgufFile::open(&path).unwrap();
    let t = ChatTemplate::from_gguf_metadata(&file)
        .unwrap()
        .expect("SmolLM2 has a template");
    let fx: Fixture = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir().join("smollm2-gguf.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(t.source(), fx.template);
    assert_eq!(
        (t.bos_token(), t.eos_token()),
        (fx.bos_token.as_str(), fx.eos_token.as_str())
    );
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mixture-chat-template-{tag}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn hf_dir_sources() {
    let msgs = [Message::new("user", "Hi")];

    // A plain string, special tokens as {"content": ...} objects.
    let dir = temp_dir("string");
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"chat_template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}",
            "bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>"}"#,
    )
    .unwrap();
    let t = ChatTemplate::from_hf_dir(&dir).unwrap().unwrap();
    assert_eq!(t.render(&msgs, false, None).unwrap(), "<s>Hi</s>");

    // A list of named templates: "default" is used.
    let dir = temp_dir("list");
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"chat_template": [{"name": "tool_use", "template": "T"},
                              {"name": "default", "template": "D{{ messages | length }}"}],
            "bos_token": null}"#,
    )
    .unwrap();
    let t = ChatTemplate::from_hf_dir(&dir).unwrap().unwrap();
    assert_eq!(t.render(&msgs, false, None).unwrap(), "D1");

    // chat_template.jinja beside a config without a template.
    let dir = temp_dir("jinja");
    std::fs::write(dir.join("tokenizer_config.json"), r#"{"eos_token": "<e>"}"#).unwrap();
    std::fs::write(dir.join("chat_template.jinja"), "J{{ eos_token }}\n").unwrap();
    let t = ChatTemplate::from_hf_dir(&dir).unwrap().unwrap();
    assert_eq!(t.render(&msgs, false, None).unwrap(), "J<e>");

    // No template at all: None, and the fallback is ChatML.
    let dir = temp_dir("none");
    std::fs::write(dir.join("tokenizer_config.json"), "{}").unwrap();
    assert!(ChatTemplate::from_hf_dir(&dir).unwrap().is_none());

    // Bad inputs are typed errors that say what is wrong.
    let dir = temp_dir("bad");
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"chat_template": [{"name": "other", "template": "x"}]}"#,
    )
    .unwrap();
    let err = ChatTemplate::from_hf_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("default"), "{err}");
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"chat_template": "line one\n{% for x in %}"}"#,
    )
    .unwrap();
    let err = ChatTemplate::from_hf_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("line 2"), "{err}");
    std::fs::write(dir.join("tokenizer_config.json"), "{not json").unwrap();
    assert!(ChatTemplate::from_hf_dir(&dir).is_err());
}

#[test]
fn fallback_template() {
    let t = ChatTemplate::fallback();
    let msgs = [
        Message::new("system", "S"),
        Message::new("user", "U"),
        Message::new("assistant", "A"),
    ];
    assert_eq!(
        t.render(&msgs, false, None).unwrap(),
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n"
    );
    assert!(t
        .render(&msgs, true, None)
        .unwrap()
        .ends_with("A<|im_end|>\n<|im_start|>assistant\n"));
}
