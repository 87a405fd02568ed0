//! Request bodies of `/v1/chat/completions` and `/v1/completions`, parsed the way the OpenAI
//! API does: unknown fields are ignored, a known field of the wrong type is a 400 naming it
//! (`param`), and values out of range are a 400 too.
//!
//! The body is parsed to a JSON value once, then each part (the shared sampling fields, the
//! endpoint's own fields) is read from that value with `serde_path_to_error`, which gives the
//! path of a wrongly typed field (`messages.0.role`, `stop`, ...).

use crate::error::ApiError;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

/// Most choices one request may ask for (`n`).
pub const MAX_N: u32 = 16;
/// Most stop strings one request may give.
pub const MAX_STOP: usize = 16;
/// Most alternatives `top_logprobs` may ask for.
pub const MAX_TOP_LOGPROBS: u32 = 20;

/// Parse a request body into a JSON object.
pub fn parse_body(bytes: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::invalid(format!(
            "We could not parse the JSON body of your request: {e}"
        ))
        .with_code("invalid_json")
    })?;
    if !v.is_object() {
        return Err(ApiError::invalid("the request body must be a JSON object"));
    }
    Ok(v)
}

/// Read `T` out of the body; a wrongly typed field becomes a 400 naming it.
pub fn read<T: DeserializeOwned>(body: &Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let param = (path != ".").then_some(path);
        let msg = match &param {
            Some(p) => format!("Invalid value for `{p}`: {inner}"),
            None => format!("Invalid request: {inner}"),
        };
        let err = ApiError::invalid(msg).with_code("invalid_type");
        match param {
            Some(p) => err.with_param(p),
            None => err,
        }
    })
}

/// `stop`: a string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// Fields both endpoints share.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Common {
    pub model: Option<String>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u64>,
    pub min_p: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<StringOrList>,
    pub n: Option<u32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
}

/// One part of a message's content given as a list.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct InMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default)]
    pub reasoning_content: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// The chat endpoint's own fields.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChatFields {
    pub messages: Option<Vec<InMessage>>,
    pub max_completion_tokens: Option<u64>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u32>,
    pub response_format: Option<Value>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    /// Cap on thinking tokens (mixture's own field).
    pub max_thinking_tokens: Option<u64>,
    /// `none`/`minimal`: no thinking, `low`: 1024 tokens, `medium`: 4096, `high`: no cap.
    pub reasoning_effort: Option<String>,
    /// Extra variables for the chat template (e.g. `{"enable_thinking": false}`).
    pub chat_template_kwargs: Option<serde_json::Map<String, Value>>,
}

/// `prompt` of the completions endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Ids(Vec<u32>),
    IdLists(Vec<Vec<u32>>),
}

/// The completions endpoint's own fields.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CompletionFields {
    pub prompt: Option<Prompt>,
    /// Legacy logprobs: the number of alternatives per token (0..=5).
    pub logprobs: Option<u32>,
    pub echo: Option<bool>,
    pub suffix: Option<String>,
    pub best_of: Option<u32>,
}

/// Checked generation settings common to both endpoints.
#[derive(Debug, Clone)]
pub struct Checked {
    pub max_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub min_p: f32,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub n: usize,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub stream: bool,
    pub include_usage: bool,
}

fn check_range(name: &str, v: Option<f32>, lo: f32, hi: f32) -> Result<(), ApiError> {
    match v {
        Some(x) if !(x.is_finite() && x >= lo && x <= hi) => Err(ApiError::param(
            name,
            format!("`{name}` must be between {lo} and {hi}, got {x}"),
        )
        .with_code("invalid_value")),
        _ => Ok(()),
    }
}

impl Common {
    /// Check ranges; `max_tokens` may come from the chat endpoint's `max_completion_tokens`.
    pub fn check(self, max_completion_tokens: Option<u64>) -> Result<Checked, ApiError> {
        check_range("temperature", self.temperature, 0.0, 2.0)?;
        check_range("top_p", self.top_p, 0.0, 1.0)?;
        if self.top_p == Some(0.0) {
            return Err(ApiError::param("top_p", "`top_p` must be greater than 0")
                .with_code("invalid_value"));
        }
        check_range("min_p", self.min_p, 0.0, 1.0)?;
        check_range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        check_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        let n = self.n.unwrap_or(1);
        if !(1..=MAX_N).contains(&n) {
            return Err(ApiError::param(
                "n",
                format!("`n` must be between 1 and {MAX_N}, got {n}"),
            )
            .with_code("invalid_value"));
        }
        let (max_name, max) = match (max_completion_tokens, self.max_tokens) {
            (Some(m), _) => ("max_completion_tokens", Some(m)),
            (None, m) => ("max_tokens", m),
        };
        if max == Some(0) {
            return Err(
                ApiError::param(max_name, format!("`{max_name}` must be at least 1"))
                    .with_code("invalid_value"),
            );
        }
        let stop: Vec<String> = self
            .stop
            .map(StringOrList::into_vec)
            .unwrap_or_default()
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        if stop.len() > MAX_STOP {
            return Err(ApiError::param(
                "stop",
                format!("at most {MAX_STOP} stop sequences are allowed"),
            ));
        }
        let stream = self.stream.unwrap_or(false);
        let include_usage = self
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        Ok(Checked {
            max_tokens: max.map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k.map(|k| usize::try_from(k).unwrap_or(usize::MAX)),
            min_p: self.min_p.unwrap_or(0.0),
            // OpenAI accepts negative seeds: keep the bits.
            seed: self.seed.map(|s| s as u64),
            stop,
            n: n as usize,
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            stream,
            include_usage,
        })
    }
}

/// Thinking cap from `max_thinking_tokens` or `reasoning_effort`.
pub fn thinking_cap(f: &ChatFields) -> Result<Option<usize>, ApiError> {
    if let Some(m) = f.max_thinking_tokens {
        return Ok(Some(usize::try_from(m).unwrap_or(usize::MAX)));
    }
    match f.reasoning_effort.as_deref() {
        None | Some("high") => Ok(None),
        Some("none") | Some("minimal") => Ok(Some(0)),
        Some("low") => Ok(Some(1024)),
        Some("medium") => Ok(Some(4096)),
        Some(other) => Err(ApiError::param(
            "reasoning_effort",
            format!(
                "`reasoning_effort` must be one of none, minimal, low, medium, high; got {other:?}"
            ),
        )
        .with_code("invalid_value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_types_name_the_field() {
        let body = parse_body(br#"{"model": "m", "temperature": "hot"}"#).unwrap();
        let e = read::<Common>(&body).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        let body = parse_body(br#"{"messages": [{"role": 3}]}"#).unwrap();
        let e = read::<ChatFields>(&body).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
    }

    #[test]
    fn unknown_fields_are_ignored_and_ranges_checked() {
        let body = parse_body(br#"{"model": "m", "whatever": [1, 2], "n": 2}"#).unwrap();
        let c = read::<Common>(&body).unwrap().check(None).unwrap();
        assert_eq!(c.n, 2);
        let body = parse_body(br#"{"temperature": -1}"#).unwrap();
        let e = read::<Common>(&body).unwrap().check(None).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        assert!(parse_body(b"{nope").is_err());
        assert!(parse_body(b"[1]").is_err());
    }
}
