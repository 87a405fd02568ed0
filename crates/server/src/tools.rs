//! Tool calls in the model's output, turned into OpenAI `tool_calls`.

use serde_json::{json, Value};

/// What the model's answer held.
#[derive(Debug, Clone, Default)]
pub struct ParsedAnswer {
    pub content: String,
    /// `(name, arguments JSON text)` of each complete call.
    pub calls: Vec<(String, String)>,
    /// The output ended inside a call (cut by `max_tokens`).
    pub incomplete: bool,
}

/// The tool-call syntax a template uses (detected from its source).
/// TEMPORARY: until `mixture_engine::toolcalls` lands, no format is known and answers are
/// returned as plain content.
#[derive(Debug, Clone)]
pub struct Format(());

impl Format {
    pub fn detect(_template_source: &str) -> Format {
        Format(())
    }

    pub fn parse(&self, text: &str) -> ParsedAnswer {
        ParsedAnswer {
            content: text.to_string(),
            ..ParsedAnswer::default()
        }
    }
}

/// OpenAI's `tool_calls` array (ids `call_<n>`; `with_index` for stream deltas).
pub fn tool_calls_json(calls: &[(String, String)], with_index: bool) -> Value {
    Value::Array(
        calls
            .iter()
            .enumerate()
            .map(|(i, (name, args))| {
                let mut v = json!({
                    "id": format!("call_{i}"),
                    "type": "function",
                    "function": { "name": name, "arguments": args },
                });
                if with_index {
                    v["index"] = json!(i);
                }
                v
            })
            .collect(),
    )
}
