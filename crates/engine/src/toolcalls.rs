//! Tool calls in generated text: find the calls a model wrote in its own template's format and
//! turn them into OpenAI `tool_calls` (name + arguments as JSON text), leaving the rest as
//! content.
//!
//! Formats:
//! - [`ToolCallFormat::DeepseekV3`], from the DeepSeek-V3 / R1 chat templates:
//!   `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>`
//!   (calls optionally separated by `\n`) then `<｜tool▁calls▁end｜>`; V3.1's templates drop the
//!   type and the fence: `<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜>`. Both
//!   are read.
//! - [`ToolCallFormat::Hermes`] (Qwen2.5, Qwen3, QwQ, Hermes): `<tool_call>\n{"name": NAME,
//!   "arguments": ARGS}\n</tool_call>`, one block per call.
//!
//! A call that was started but not ended (generation cut by a token limit) is not reported;
//! [`Parsed::complete`] says so. [`content_safe_len`] tells a streaming server how much of the
//! text so far can be sent as content without sending part of a tool-call marker.

use crate::constrain::json::Json;

pub const DS_CALLS_BEGIN: &str = "<｜tool▁calls▁begin｜>";
pub const DS_CALLS_END: &str = "<｜tool▁calls▁end｜>";
pub const DS_CALL_BEGIN: &str = "<｜tool▁call▁begin｜>";
pub const DS_CALL_END: &str = "<｜tool▁call▁end｜>";
pub const DS_SEP: &str = "<｜tool▁sep｜>";
pub const HERMES_BEGIN: &str = "<tool_call>";
pub const HERMES_END: &str = "</tool_call>";

/// How a model writes tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolCallFormat {
    /// DeepSeek-V3 / R1 / V3.1 (`<｜tool▁calls▁begin｜>` ...).
    DeepseekV3,
    /// `<tool_call>{"name": ..., "arguments": ...}</tool_call>` (Qwen, Hermes).
    Hermes,
    /// No tool-call parsing.
    None,
}

/// One finished tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub name: String,
    /// The arguments as JSON text (OpenAI's `function.arguments`).
    pub arguments: String,
}

/// Generated text split into content and tool calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The text outside tool-call blocks.
    pub content: String,
    /// Finished calls, in order.
    pub calls: Vec<ToolCall>,
    /// False when a call (or a tool-call section with no call yet) was started and not
    /// finished: the text was cut.
    pub complete: bool,
}

impl ToolCallFormat {
    /// The format a chat template renders assistant tool calls in (from its source text).
    pub fn detect(template_source: &str) -> ToolCallFormat {
        if template_source.contains(DS_CALL_BEGIN) || template_source.contains(DS_CALLS_BEGIN) {
            ToolCallFormat::DeepseekV3
        } else if template_source.contains(HERMES_BEGIN) {
            ToolCallFormat::Hermes
        } else {
            ToolCallFormat::None
        }
    }

    /// Texts that open a tool call in this format.
    pub fn begin_markers(&self) -> &'static [&'static str] {
        match self {
            ToolCallFormat::DeepseekV3 => &[DS_CALLS_BEGIN, DS_CALL_BEGIN],
            ToolCallFormat::Hermes => &[HERMES_BEGIN],
            ToolCallFormat::None => &[],
        }
    }
}

/// Split `text` into content and tool calls.
pub fn parse(format: ToolCallFormat, text: &str) -> Parsed {
    match format {
        ToolCallFormat::None => Parsed {
            content: text.to_string(),
            calls: Vec::new(),
            complete: true,
        },
        ToolCallFormat::DeepseekV3 => parse_deepseek(text),
        ToolCallFormat::Hermes => parse_hermes(text),
    }
}

/// How many bytes at the start of `text` are content for sure: everything before the first
/// tool-call marker, minus a tail that could be the start of one. Always a char boundary.
pub fn content_safe_len(format: ToolCallFormat, text: &str) -> usize {
    let markers = format.begin_markers();
    let mut end = text.len();
    for m in markers {
        if let Some(i) = text.find(m) {
            end = end.min(i);
        }
    }
    if end < text.len() {
        return end;
    }
    // Hold back a suffix that is a proper prefix of a marker.
    let mut hold = 0;
    for m in markers {
        for (k, _) in m.char_indices().skip(1) {
            if k > hold && text.ends_with(&m[..k]) {
                hold = k;
            }
        }
    }
    text.len() - hold
}

/// First position of any of `markers` in `text` at or after `from`: (start, marker).
fn find_any<'m>(text: &str, from: usize, markers: &[&'m str]) -> Option<(usize, &'m str)> {
    let rest = text.get(from..)?;
    markers
        .iter()
        .filter_map(|m| rest.find(m).map(|i| (from + i, *m)))
        .min_by_key(|(i, _)| *i)
}

/// Arguments as OpenAI expects them: JSON text. A JSON string holding JSON (what templates
/// that apply `tojson` to string arguments render) is unwrapped.
fn normalize_args(raw: &str) -> String {
    let raw = raw.trim();
    if let Ok(serde_json::Value::String(inner)) = serde_json::from_str::<serde_json::Value>(raw) {
        if serde_json::from_str::<serde_json::Value>(&inner).is_ok() {
            return inner;
        }
    }
    raw.to_string()
}

fn parse_deepseek(text: &str) -> Parsed {
    let mut content = String::new();
    let mut calls = Vec::new();
    let mut complete = true;
    let mut pos = 0;
    loop {
        let Some((start, marker)) = find_any(text, pos, &[DS_CALLS_BEGIN, DS_CALL_BEGIN]) else {
            content.push_str(&text[pos..]);
            break;
        };
        content.push_str(&text[pos..start]);
        let mut cur = start;
        if marker == DS_CALLS_BEGIN {
            cur += DS_CALLS_BEGIN.len();
        }
        // Calls until the section ends (or the text does).
        let mut any = false;
        loop {
            let rest = &text[cur..];
            let trimmed = rest.trim_start();
            let skip = rest.len() - trimmed.len();
            if let Some(after) = trimmed.strip_prefix(DS_CALLS_END) {
                cur = text.len() - after.len();
                break;
            }
            if let Some(body_and_rest) = trimmed.strip_prefix(DS_CALL_BEGIN) {
                let body_start = cur + skip + DS_CALL_BEGIN.len();
                let Some(end_rel) = body_and_rest.find(DS_CALL_END) else {
                    complete = false;
                    cur = text.len();
                    break;
                };
                let body = &text[body_start..body_start + end_rel];
                match deepseek_call(body) {
                    Some(call) => calls.push(call),
                    None => content
                        .push_str(&text[cur + skip..body_start + end_rel + DS_CALL_END.len()]),
                }
                any = true;
                cur = body_start + end_rel + DS_CALL_END.len();
                continue;
            }
            if trimmed.is_empty() {
                // The text ends inside the section: fine after a finished call.
                if !any {
                    complete = false;
                }
                cur = text.len();
                break;
            }
            if DS_CALLS_END.starts_with(trimmed) || DS_CALL_BEGIN.starts_with(trimmed) {
                // A marker cut in the middle.
                complete = false;
                cur = text.len();
                break;
            }
            // Something else inside the section: the section is over.
            break;
        }
        pos = cur;
        if pos >= text.len() {
            break;
        }
    }
    Parsed {
        content,
        calls,
        complete,
    }
}

/// The body between `<｜tool▁call▁begin｜>` and `<｜tool▁call▁end｜>`.
fn deepseek_call(body: &str) -> Option<ToolCall> {
    let (left, right) = body.split_once(DS_SEP)?;
    if right.contains("```") {
        // V3 / R1: TYPE<sep>NAME\n```json\nARGS\n```
        let (name, fenced) = right.split_once('\n')?;
        let fenced = fenced.trim();
        let inner = fenced
            .strip_prefix("```json")
            .or_else(|| fenced.strip_prefix("```"))?;
        let inner = inner.strip_suffix("```")?;
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        Some(ToolCall {
            name: name.to_string(),
            arguments: normalize_args(inner),
        })
    } else {
        // V3.1: NAME<sep>ARGS
        let name = left.trim();
        if name.is_empty() {
            return None;
        }
        Some(ToolCall {
            name: name.to_string(),
            arguments: normalize_args(right),
        })
    }
}

fn parse_hermes(text: &str) -> Parsed {
    let mut content = String::new();
    let mut calls = Vec::new();
    let mut complete = true;
    let mut pos = 0;
    while let Some(i) = text[pos..].find(HERMES_BEGIN) {
        let start = pos + i;
        content.push_str(&text[pos..start]);
        let body_start = start + HERMES_BEGIN.len();
        let Some(j) = text[body_start..].find(HERMES_END) else {
            complete = false;
            pos = text.len();
            break;
        };
        let body = &text[body_start..body_start + j];
        let end = body_start + j + HERMES_END.len();
        match hermes_call(body) {
            Some(call) => {
                calls.push(call);
                // Whitespace between consecutive calls is not content.
                let rest = &text[end..];
                let trimmed = rest.trim_start();
                pos = if trimmed.starts_with(HERMES_BEGIN) || trimmed.is_empty() {
                    text.len() - trimmed.len()
                } else {
                    end
                };
            }
            None => {
                content.push_str(&text[start..end]);
                pos = end;
            }
        }
    }
    if pos < text.len() {
        content.push_str(&text[pos..]);
    }
    Parsed {
        content,
        calls,
        complete,
    }
}

fn hermes_call(body: &str) -> Option<ToolCall> {
    let v: Json = serde_json::from_str(body.trim()).ok()?;
    let Some(Json::String(name)) = v.get("name") else {
        return None;
    };
    let arguments = match v.get("arguments").or_else(|| v.get("parameters")) {
        None => "{}".to_string(),
        Some(Json::String(s)) => s.clone(),
        Some(other) => other.to_compact(),
    };
    Some(ToolCall {
        name: name.clone(),
        arguments,
    })
}
