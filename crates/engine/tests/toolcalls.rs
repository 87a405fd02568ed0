//! Tool-call parsing against the real chat templates in tests/fixtures/chat_templates: a
//! conversation whose assistant message has tool calls is rendered by the model's own template
//! (crates/model's ChatTemplate) and parsed back into the same calls; cut calls are never
//! reported as finished; plain text and text before the calls stay content; the streaming
//! helper never lets part of a marker out as content.

use mixture_engine::toolcalls::{content_safe_len, parse, ToolCall, ToolCallFormat};
use mixture_model::chat_template::{ChatTemplate, Message};
use serde_json::{json, Value};
use std::path::PathBuf;

fn fixture(name: &str) -> (String, String, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/chat_templates")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap();
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    (s("template"), s("bos_token"), s("eos_token"))
}

const TEMPLATES: &[(&str, ToolCallFormat)] = &[
    ("deepseek-r1-distill-llama", ToolCallFormat::DeepseekV3),
    ("deepseek-r1-distill-qwen", ToolCallFormat::DeepseekV3),
    ("deepseek-v3.1", ToolCallFormat::DeepseekV3),
    ("llama-cpp-deepseek-r1", ToolCallFormat::DeepseekV3),
    ("qwen2.5-instruct", ToolCallFormat::Hermes),
    ("qwen3", ToolCallFormat::Hermes),
    ("qwq-32b", ToolCallFormat::Hermes),
    ("smollm2-gguf", ToolCallFormat::None),
    ("llama-3.1-instruct", ToolCallFormat::None),
    ("gpt-oss", ToolCallFormat::None),
];

/// Templates whose assistant tool calls `Message` can render. (DeepSeek-R1-Distill-Llama's
/// template renders calls only when `content` is None, which `Message` cannot express.)
fn round_trip_templates() -> impl Iterator<Item = &'static (&'static str, ToolCallFormat)> {
    TEMPLATES
        .iter()
        .filter(|(n, f)| *f != ToolCallFormat::None && *n != "deepseek-r1-distill-llama")
}

#[test]
fn detect_formats_from_templates() {
    for (name, want) in TEMPLATES {
        let (src, _, _) = fixture(name);
        assert_eq!(ToolCallFormat::detect(&src), *want, "{name}");
    }
}

fn calls_value() -> Value {
    json!([
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}},
        {"id": "call_2", "type": "function",
         "function": {"name": "search_web", "arguments": {"query": "日本 \"quoted\" {braces}", "n": 3, "opts": {"safe": true, "tags": ["a", "b"]}}}}
    ])
}

fn expected_calls() -> Vec<(String, Value)> {
    calls_value()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["function"]["name"].as_str().unwrap().to_string(),
                c["function"]["arguments"].clone(),
            )
        })
        .collect()
}

fn same_calls(got: &[ToolCall], want: &[(String, Value)]) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|(g, (name, args))| {
            &g.name == name
                && serde_json::from_str::<Value>(&g.arguments).ok().as_ref() == Some(args)
        })
}

/// Render a user turn then an assistant turn with tool calls (and `content`); returns the
/// text of the assistant turn as the model would generate it (after the generation prompt
/// when the full render starts with it, else the whole render).
fn render(name: &str, content: &str) -> (ToolCallFormat, String) {
    let (src, bos, eos) = fixture(name);
    let format = ToolCallFormat::detect(&src);
    let tpl = ChatTemplate::new(&src, &bos, &eos).unwrap();
    let user = Message::new("user", "What is the weather in Paris?");
    let mut asst = Message::new("assistant", content);
    asst.tool_calls = Some(calls_value());
    let full = tpl.render(&[user.clone(), asst], false, None).unwrap();
    let prompt = tpl.render(&[user], true, None).unwrap();
    let text = full
        .strip_prefix(prompt.as_str())
        .map(str::to_string)
        .unwrap_or(full);
    (format, text)
}

#[test]
fn round_trip_rendered_calls() {
    for (name, format) in round_trip_templates() {
        let (f, text) = render(name, "");
        assert_eq!(f, *format);
        let p = parse(f, &text);
        assert!(
            same_calls(&p.calls, &expected_calls()),
            "{name}: calls {:?} from {text:?}",
            p.calls
        );
        assert!(p.complete, "{name}: {text:?}");
        for m in [
            "<｜tool▁calls▁begin｜>",
            "<｜tool▁call▁begin｜>",
            "<｜tool▁sep｜>",
            "<tool_call>",
            "</tool_call>",
        ] {
            assert!(
                !p.content.contains(m),
                "{name}: marker {m} left in content {:?}",
                p.content
            );
        }
        eprintln!("{name}: {text:?} -> content {:?}", p.content);
    }
}

#[test]
fn round_trip_with_content_before_calls() {
    // Templates that render the assistant's content next to its calls.
    for name in ["deepseek-v3.1", "qwen2.5-instruct", "qwen3"] {
        let (f, text) = render(name, "Let me check.");
        let p = parse(f, &text);
        assert!(
            same_calls(&p.calls, &expected_calls()),
            "{name}: {:?}",
            p.calls
        );
        assert!(
            p.content.contains("Let me check."),
            "{name}: content {:?}",
            p.content
        );
        assert!(p.complete);
    }
}

#[test]
fn cut_calls_are_not_finished() {
    for (name, _) in round_trip_templates() {
        let (f, text) = render(name, "");
        let full = parse(f, &text);
        let want = expected_calls();
        // Cut anywhere after the first begin marker (a call was started).
        let after_marker = f
            .begin_markers()
            .iter()
            .filter_map(|m| text.find(m).map(|i| (i, i + m.len())))
            .min()
            .unwrap()
            .1;
        for (cut, _) in text.char_indices().filter(|(i, _)| *i >= after_marker) {
            let p = parse(f, &text[..cut]);
            // Only finished calls, and they are a prefix of the full list.
            assert!(p.calls.len() <= full.calls.len(), "{name} cut {cut}");
            assert!(
                same_calls(&p.calls, &want[..p.calls.len()]),
                "{name} cut at {cut}: {:?}",
                &text[..cut]
            );
            // A call that was started and not ended makes the parse incomplete; right after
            // a call's end marker it is complete.
            let (begin, end) = match f {
                ToolCallFormat::Hermes => ("<tool_call>", "</tool_call>"),
                _ => ("<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>"),
            };
            let prefix = &text[..cut];
            let (nb, ne) = (prefix.matches(begin).count(), prefix.matches(end).count());
            if nb != ne {
                assert!(
                    !p.complete,
                    "{name}: open call reported complete: {prefix:?}"
                );
            }
            if prefix.ends_with(end) {
                assert!(
                    p.complete,
                    "{name}: finished calls reported cut: {prefix:?}"
                );
                assert_eq!(p.calls.len(), ne, "{name}: {prefix:?}");
            }
        }
    }
}

#[test]
fn plain_text_and_none_format() {
    for f in [
        ToolCallFormat::DeepseekV3,
        ToolCallFormat::Hermes,
        ToolCallFormat::None,
    ] {
        let text = "Paris is sunny today. Use <b>tags</b> and ```code``` freely.";
        let p = parse(f, text);
        assert_eq!(p.content, text);
        assert!(p.calls.is_empty());
        assert!(p.complete);
    }
    let text = "<tool_call>{\"name\":\"x\",\"arguments\":{}}</tool_call>";
    let p = parse(ToolCallFormat::None, text);
    assert_eq!(p.content, text);
    assert!(p.calls.is_empty());
}

#[test]
fn hand_written_deepseek_forms() {
    let v3 = "I will look.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{\"a\": 1}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>g\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
    let p = parse(ToolCallFormat::DeepseekV3, v3);
    assert_eq!(p.content, "I will look.");
    assert_eq!(
        p.calls,
        vec![
            ToolCall {
                name: "f".into(),
                arguments: "{\"a\": 1}".into()
            },
            ToolCall {
                name: "g".into(),
                arguments: "{}".into()
            },
        ]
    );
    assert!(p.complete);
    let v31 = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{\"a\": [1, 2]}<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
    let p = parse(ToolCallFormat::DeepseekV3, v31);
    assert_eq!(
        p.calls,
        vec![ToolCall {
            name: "f".into(),
            arguments: "{\"a\": [1, 2]}".into()
        }]
    );
    assert_eq!(p.content, "");
    // Arguments rendered as a JSON string (templates applying tojson to string arguments).
    let quoted = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>\"{\\\"a\\\": 1}\"<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
    let p = parse(ToolCallFormat::DeepseekV3, quoted);
    assert_eq!(p.calls[0].arguments, "{\"a\": 1}");
    // Only the section was opened: incomplete, no call.
    let p = parse(ToolCallFormat::DeepseekV3, "ok<｜tool▁calls▁begin｜>");
    assert!(!p.complete && p.calls.is_empty());
    assert_eq!(p.content, "ok");
    // Cut inside the second call: the first is reported, the second not.
    let cut = &v3[..v3
        .find("<｜tool▁call▁begin｜>function<｜tool▁sep｜>g")
        .unwrap()
        + 30];
    let p = parse(ToolCallFormat::DeepseekV3, cut);
    assert_eq!(p.calls.len(), 1);
    assert!(!p.complete);
}

#[test]
fn hand_written_hermes_forms() {
    let t = "Sure.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"b\": 1, \"a\": 2}}\n</tool_call>\n<tool_call>\n{\"name\": \"g\", \"arguments\": \"{\\\"x\\\":1}\"}\n</tool_call>";
    let p = parse(ToolCallFormat::Hermes, t);
    assert_eq!(p.content, "Sure.\n");
    assert_eq!(
        p.calls,
        vec![
            ToolCall {
                name: "f".into(),
                arguments: "{\"b\":1,\"a\":2}".into()
            },
            ToolCall {
                name: "g".into(),
                arguments: "{\"x\":1}".into()
            },
        ]
    );
    assert!(p.complete);
    // Malformed block stays content.
    let bad = "<tool_call>not json</tool_call>";
    let p = parse(ToolCallFormat::Hermes, bad);
    assert!(p.calls.is_empty());
    assert_eq!(p.content, bad);
    let p = parse(
        ToolCallFormat::Hermes,
        "x<tool_call>{\"name\": \"f\", \"argu",
    );
    assert!(!p.complete && p.calls.is_empty());
    assert_eq!(p.content, "x");
}

#[test]
fn streaming_never_emits_a_marker() {
    for (name, _) in round_trip_templates() {
        let (f, calls_text) = render(name, "");
        let text = format!("Thinking done. Here: {calls_text}");
        let content_end = f
            .begin_markers()
            .iter()
            .filter_map(|m| text.find(m))
            .min()
            .unwrap();
        let mut last = 0;
        for (cut, _) in text.char_indices().chain([(text.len(), ' ')]) {
            let prefix = &text[..cut];
            let safe = content_safe_len(f, prefix);
            assert!(safe >= last, "{name}: safe length went back at {cut}");
            assert!(safe <= content_end, "{name}: marker text released at {cut}");
            assert!(prefix.is_char_boundary(safe));
            // What is held back could still become a marker.
            let held = &prefix[safe..];
            if cut <= content_end {
                assert!(
                    held.is_empty() || f.begin_markers().iter().any(|m| m.starts_with(held)),
                    "{name}: held back {held:?} needlessly"
                );
            }
            last = safe;
        }
        assert_eq!(last, content_end);
    }
    assert_eq!(content_safe_len(ToolCallFormat::Hermes, "abc <tool_c"), 4);
    assert_eq!(content_safe_len(ToolCallFormat::Hermes, "abc <b>"), 7);
    assert_eq!(content_safe_len(ToolCallFormat::None, "abc <tool_c"), 11);
}
