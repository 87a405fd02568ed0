//! Tool calls in the model's output, turned into OpenAI `tool_calls`.

use mixture_engine::toolcalls::{self, ToolCallFormat};
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
#[derive(Debug, Clone, Copy)]
pub struct Format(ToolCallFormat);

impl Format {
    pub fn detect(template_source: &str) -> Format {
        Format(ToolCallFormat::detect(template_source))
    }

    /// Content and finished calls of a whole answer.
    pub fn parse(&self, text: &str) -> ParsedAnswer {
        let p = toolcalls::parse(self.0, text);
        ParsedAnswer {
            content: p.content,
            calls: p.calls.into_iter().map(|c| (c.name, c.arguments)).collect(),
            incomplete: !p.complete,
        }
    }

    /// How much of `text` is content for sure (no tool-call marker in it or starting at its
    /// end), so a stream can send it now.
    pub fn safe_len(&self, text: &str) -> usize {
        toolcalls::content_safe_len(self.0, text)
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
