//! Chat templates: a model's own Jinja template turns a conversation into the prompt text the
//! model was trained on.
//!
//! Templates come from GGUF metadata (`tokenizer.chat_template`, [`ChatTemplate::from_gguf_metadata`])
//! or a Hugging Face directory (`tokenizer_config.json`'s `chat_template`, or
//! `chat_template.jinja`, [`ChatTemplate::from_hf_dir`]). They are rendered with `minijinja`
//! set up to behave like transformers' `apply_chat_template(..., tokenize=False)`:
//!
//! - Jinja2 with `trim_blocks` and `lstrip_blocks`, loop controls (`break`, `continue`),
//!   `namespace`, and transformers' `{% generation %}` tag (rendered as its body);
//! - globals `raise_exception(msg)` (rendering fails with `msg`) and `strftime_now(fmt)` (UTC;
//!   transformers uses local time, so they differ on machines not set to UTC);
//! - `tojson` as transformers defines it: Python's `json.dumps` with `ensure_ascii=False`,
//!   the same separators, `indent`, `separators`, `sort_keys`;
//! - Python string and dict methods (`strip`, `split`, `startswith`, `replace`, `items`, ...,
//!   from `minijinja-contrib`'s pycompat, plus `rsplit`, `removeprefix`, `removesuffix`);
//! - printed values as Python's `str()` (`None`, `True`, `['a']`);
//! - the variables transformers passes: `messages`, `add_generation_prompt`, `bos_token`,
//!   `eos_token`, `tools` and `documents` (both `None` unless given), plus anything in `extra`
//!   (e.g. `{"enable_thinking": false}` or `{"tools": [...]}`).
//!
//! Messages are passed as transformers passes them: fields that are `None` are left out, and a
//! message's `reasoning_content` is also visible as `thinking` (transformers' alias).
//!
//! Known differences from transformers (none affects the templates under test):
//! `{% for x in none %}` renders nothing where Python raises (tool-use templates called without
//! tools); `'text'|safe + value` does not HTML-escape `value` as Jinja2's `Markup` does
//! (functionary v3.1); templates that mutate lists in place (`list.append`) are not supported;
//! maps inside `extra` / `tool_calls` reach the template in `serde_json`'s key order (sorted),
//! which `tojson` keeps.
//!
//! Tests: `crates/model/tests/chat_template.rs` checks every case of
//! `tests/fixtures/chat_templates/*.json` (made by `tools/make_template_fixtures.py` with
//! transformers) byte for byte.

mod env;
mod pyjson;
mod strftime;

use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;
use minijinja::Value;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    pub content: String,
    /// The assistant's thinking, for templates that render it (left out when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// OpenAI-style tool calls of an assistant message (left out when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<serde_json::Value>,
}

impl Message {
    /// A message with just a role and content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
            reasoning_content: None,
            tool_calls: None,
        }
    }
}

/// The template used when a model ships none: ChatML, as SmolLM2 and Qwen use it.
/// Each message renders as `<|im_start|>{role}\n{content}<|im_end|>\n`, and the generation
/// prompt is `<|im_start|>assistant\n`. No system prompt is added and no BOS token is written.
pub const FALLBACK_TEMPLATE: &str = "{%- for message in messages -%}\
{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}\
{%- endfor -%}\
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}";

/// A compiled chat template with the model's BOS and EOS token strings.
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
    now: Option<i64>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

impl ChatTemplate {
    /// Compile `source`. A syntax error is reported with its template line.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate> {
        let env = env::build(source, None).map_err(|e| template_error(&e, source))?;
        Ok(ChatTemplate {
            env,
            source: source.to_string(),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            now: None,
        })
    }

    /// The fallback for models without a template: ChatML (see [`FALLBACK_TEMPLATE`]):
    /// `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then `<|im_start|>assistant\n`
    /// when a generation prompt is asked for.
    pub fn fallback() -> ChatTemplate {
        // The fallback is a fixed, tested template; compiling it cannot fail.
        match ChatTemplate::new(FALLBACK_TEMPLATE, "", "") {
            Ok(t) => t,
            Err(e) => unreachable!("the fallback chat template does not compile: {e}"),
        }
    }

    /// Pin `strftime_now` to `unix_secs` (UTC) instead of the clock, for reproducible prompts.
    pub fn with_fixed_time(mut self, unix_secs: i64) -> Result<ChatTemplate> {
        self.env = env::build(&self.source, Some(unix_secs))
            .map_err(|e| template_error(&e, &self.source))?;
        self.now = Some(unix_secs);
        Ok(self)
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    /// The time `strftime_now` is pinned to, if any.
    pub fn fixed_time(&self) -> Option<i64> {
        self.now
    }

    /// Render `messages` into prompt text. `add_generation_prompt` appends the header that
    /// starts the assistant's reply. `extra` must be a JSON object (or `None`); its keys become
    /// template variables (`enable_thinking`, `tools`, `date_string`, ...) and may override
    /// `bos_token`, `eos_token`, `tools` and `documents`.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        extra: Option<serde_json::Value>,
    ) -> Result<String> {
        let mut ctx: Vec<(String, Value)> = vec![
            (
                "messages".into(),
                Value::from(messages.iter().map(message_value).collect::<Vec<_>>()),
            ),
            (
                "add_generation_prompt".into(),
                Value::from(add_generation_prompt),
            ),
            ("bos_token".into(), Value::from(self.bos_token.as_str())),
            ("eos_token".into(), Value::from(self.eos_token.as_str())),
            ("tools".into(), Value::from(())),
            ("documents".into(), Value::from(())),
        ];
        match extra {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(map)) => {
                for (key, value) in map {
                    if key == "messages" || key == "add_generation_prompt" {
                        return Err(ModelError::Invalid(format!(
                            "chat template: `{key}` cannot be passed in extra variables"
                        )));
                    }
                    let value = json_value(&value);
                    match ctx.iter_mut().find(|(k, _)| *k == key) {
                        Some(slot) => slot.1 = value,
                        None => ctx.push((key, value)),
                    }
                }
            }
            Some(other) => {
                return Err(ModelError::Invalid(format!(
                    "chat template: extra variables must be a JSON object, got {other}"
                )))
            }
        }
        let template = self
            .env
            .get_template(env::TEMPLATE_NAME)
            .map_err(|e| template_error(&e, &self.source))?;
        template
            .render(Value::from_pairs(ctx))
            .map_err(|e| template_error(&e, &self.source))
    }

    /// The template stored in a GGUF file's `tokenizer.chat_template`, with BOS/EOS strings
    /// from `tokenizer.ggml.tokens` at `tokenizer.ggml.bos_token_id` / `eos_token_id` (empty
    /// when absent). `Ok(None)` when the file has no template (use [`ChatTemplate::fallback`]).
    pub fn from_gguf_metadata(file: &GgufFile) -> Result<Option<ChatTemplate>> {
        let key = "tokenizer.chat_template";
        let Some(value) = file.get(key) else {
            return Ok(None);
        };
        let source = value.as_str().ok_or_else(|| ModelError::BadKey {
            key: key.into(),
            msg: format!("expected a string, found {}", value.type_name()),
        })?;
        let token = |id_key: &str| -> Result<String> {
            let Some(id) = file.get(id_key) else {
                return Ok(String::new());
            };
            let id = id.as_u64().ok_or_else(|| ModelError::BadKey {
                key: id_key.into(),
                msg: format!("expected an integer, found {}", id.type_name()),
            })?;
            let tokens = file
                .get("tokenizer.ggml.tokens")
                .and_then(|v| v.as_array())
                .ok_or_else(|| ModelError::MissingKey("tokenizer.ggml.tokens".into()))?;
            let token = usize::try_from(id)
                .ok()
                .and_then(|i| tokens.get(i))
                .ok_or_else(|| ModelError::BadKey {
                    key: id_key.into(),
                    msg: format!("token id {id} is outside the vocabulary ({})", tokens.len()),
                })?;
            token
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| ModelError::BadKey {
                    key: "tokenizer.ggml.tokens".into(),
                    msg: format!("token {id} is not a string"),
                })
        };
        let bos = token("tokenizer.ggml.bos_token_id")?;
        let eos = token("tokenizer.ggml.eos_token_id")?;
        ChatTemplate::new(source, &bos, &eos)
            .map(Some)
            .map_err(|e| ModelError::Invalid(format!("{}: {e}", file.path.display())))
    }

    /// The template of a Hugging Face model directory: `tokenizer_config.json`'s
    /// `chat_template` (a string, or a list of `{"name", "template"}` of which `default` is
    /// used), else a `chat_template.jinja` file. BOS/EOS strings come from
    /// `tokenizer_config.json`'s `bos_token`/`eos_token` (strings or `{"content": ...}`; empty
    /// when absent or null). `Ok(None)` when the directory has no template.
    pub fn from_hf_dir(dir: &Path) -> Result<Option<ChatTemplate>> {
        let config_path = dir.join("tokenizer_config.json");
        let config: Option<serde_json::Value> = if config_path.exists() {
            let text = read(&config_path)?;
            Some(serde_json::from_str(&text).map_err(|e| ModelError::Hf {
                path: config_path.clone(),
                msg: format!("not valid JSON: {e}"),
            })?)
        } else {
            None
        };
        let hf_err = |msg: String| ModelError::Hf {
            path: config_path.clone(),
            msg,
        };
        let special = |key: &str| -> Result<String> {
            match config.as_ref().and_then(|c| c.get(key)) {
                None | Some(serde_json::Value::Null) => Ok(String::new()),
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(serde_json::Value::Object(o)) => match o.get("content") {
                    Some(serde_json::Value::String(s)) => Ok(s.clone()),
                    _ => Err(hf_err(format!("`{key}` has no string `content`"))),
                },
                Some(other) => Err(hf_err(format!(
                    "`{key}` must be a string or an object with `content`, got {other}"
                ))),
            }
        };
        let bos = special("bos_token")?;
        let eos = special("eos_token")?;

        let from_config = match config.as_ref().and_then(|c| c.get("chat_template")) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Array(list)) => {
                let default = list
                    .iter()
                    .find(|entry| entry.get("name").and_then(|n| n.as_str()) == Some("default"));
                let entry = default.ok_or_else(|| {
                    hf_err("`chat_template` is a list without a `default` entry".into())
                })?;
                let template = entry
                    .get("template")
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| {
                        hf_err("`chat_template` entry `default` has no string `template`".into())
                    })?;
                Some(template.to_string())
            }
            Some(other) => {
                return Err(hf_err(format!(
                    "`chat_template` must be a string or a list of {{name, template}}, got {}",
                    json_kind(other)
                )))
            }
        };
        let (source, origin) = match from_config {
            Some(s) => (s, config_path.clone()),
            None => {
                let jinja = dir.join("chat_template.jinja");
                if !jinja.exists() {
                    return Ok(None);
                }
                (read(&jinja)?, jinja)
            }
        };
        ChatTemplate::new(&source, &bos, &eos)
            .map(Some)
            .map_err(|e| ModelError::Invalid(format!("{}: {e}", origin.display())))
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A message as transformers hands it to the template: `thinking` (alias of the reasoning,
/// when present) first, then role, content, reasoning_content, tool_calls; `None` fields left
/// out.
fn message_value(m: &Message) -> Value {
    let mut pairs: Vec<(&str, Value)> = Vec::with_capacity(5);
    if let Some(r) = &m.reasoning_content {
        pairs.push(("thinking", Value::from(r.as_str())));
    }
    pairs.push(("role", Value::from(m.role.as_str())));
    pairs.push(("content", Value::from(m.content.as_str())));
    if let Some(r) = &m.reasoning_content {
        pairs.push(("reasoning_content", Value::from(r.as_str())));
    }
    if let Some(t) = &m.tool_calls {
        if !t.is_null() {
            pairs.push(("tool_calls", json_value(t)));
        }
    }
    Value::from_pairs(pairs)
}

/// A JSON value as a template value (objects keep `serde_json`'s key order).
fn json_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::from(a.iter().map(json_value).collect::<Vec<_>>()),
        serde_json::Value::Object(o) => {
            Value::from_pairs(o.iter().map(|(k, v)| (k.as_str(), json_value(v))))
        }
    }
}

/// A template failure as a typed error naming the template line (and its text).
fn template_error(e: &minijinja::Error, source: &str) -> ModelError {
    let what = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    let msg = match e.line() {
        Some(line) => {
            let text = source
                .lines()
                .nth(line.saturating_sub(1))
                .map(str::trim)
                .unwrap_or("");
            let text: String = text.chars().take(120).collect();
            format!("chat template error at line {line}: {what} (line {line}: `{text}`)")
        }
        None => format!("chat template error: {what}"),
    };
    ModelError::Invalid(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_is_chatml() {
        let t = ChatTemplate::fallback();
        let msgs = [
            Message::new("system", "Be brief."),
            Message::new("user", "Hi"),
        ];
        assert_eq!(
            t.render(&msgs, true, None).unwrap(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            t.render(&msgs[1..], false, None).unwrap(),
            "<|im_start|>user\nHi<|im_end|>\n"
        );
    }

    #[test]
    fn errors_name_the_line() {
        let err = ChatTemplate::new("ok\n{% if %}", "", "").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let t = ChatTemplate::new("a\nb\n{{ raise_exception('bad turn') }}", "", "").unwrap();
        let err = t.render(&[], false, None).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("bad turn"), "{err}");
        assert!(t.render(&[], false, Some(serde_json::json!([1]))).is_err());
    }
}
