//! `response_format`: `text` (nothing to do), `json_object` and `json_schema` (constrained
//! decoding through the engine's `TokenConstraint`).

use crate::error::ApiError;
use crate::sched::TokenConstraint;
use crate::AppState;
use serde_json::Value;

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
    match kind {
        "text" => Ok(None),
        "json_object" | "json_schema" => {
            if kind == "json_schema" && !format.get("json_schema").is_some_and(Value::is_object) {
                return Err(ApiError::param(
                    "response_format.json_schema",
                    "`json_schema` must be an object with a `schema`",
                ));
            }
            let _ = state;
            Err(ApiError::param(
                "response_format",
                "constrained JSON output is not available in this build yet",
            ))
        }
        other => Err(ApiError::param(
            "response_format.type",
            format!(
                "unknown response_format type {other:?}; expected text, json_object or json_schema"
            ),
        )
        .with_code("invalid_value")),
    }
}
