//! `response_format`: `text` (nothing to do), `json_object` and `json_schema` (constrained
//! decoding through the engine's `TokenConstraint`).

use crate::error::ApiError;
use crate::sched::TokenConstraint;
use crate::AppState;
use mixture_engine::constrain::{JsonConstraint, ResponseFormat, TokenBytes};
use serde_json::Value;
use std::sync::Arc;

/// The constraint for one choice, or `None` for free text.
pub fn constraint(
    state: &AppState,
    format: Option<&Value>,
) -> Result<Option<Box<dyn TokenConstraint>>, ApiError> {
    let Some(format) = format else {
        return Ok(None);
    };
    if format.is_null() {
        return Ok(None);
    }
    let kind = format.get("type").and_then(Value::as_str).ok_or_else(|| {
        ApiError::param(
            "response_format.type",
            "`response_format` needs a `type`: text, json_object or json_schema",
        )
    })?;
    if !matches!(kind, "text" | "json_object" | "json_schema") {
        return Err(ApiError::param(
            "response_format.type",
            format!(
                "unknown response_format type {kind:?}; expected text, json_object or json_schema"
            ),
        )
        .with_code("invalid_value"));
    }
    let parsed: ResponseFormat = serde_json::from_value(format.clone())
        .map_err(|e| ApiError::param("response_format", format!("invalid response_format: {e}")))?;
    if parsed == ResponseFormat::Text {
        return Ok(None);
    }
    let bytes = state.token_bytes()?;
    let c = JsonConstraint::new(&parsed, bytes, &state.model.stop_ids)
        .map_err(|e| ApiError::param("response_format", e.to_string()))?;
    Ok(Some(Box::new(c)))
}

impl AppState {
    /// The vocabulary's byte trie, built on first use.
    fn token_bytes(&self) -> Result<Arc<TokenBytes>, ApiError> {
        self.token_bytes
            .get_or_init(|| {
                TokenBytes::from_tokenizer(&self.model.tokenizer)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| ApiError::internal(format!("preparing constrained decoding: {e}")))
    }
}
