//! Python's text forms of template values: `json.dumps` (what transformers' `tojson` filter
//! calls) and `str()` (what Jinja2 prints for `{{ value }}`), so rendered prompts match
//! transformers byte for byte.

use minijinja::value::ValueKind;
use minijinja::{Error, ErrorKind, Value};
use std::fmt::Write;

/// Options of Python's `json.dumps` that transformers' `tojson` exposes.
pub struct JsonOptions {
    pub ensure_ascii: bool,
    /// `None`: one line. `Some(s)`: newline and `s` repeated per nesting level.
    pub indent: Option<String>,
    pub item_sep: String,
    pub key_sep: String,
    pub sort_keys: bool,
}

impl JsonOptions {
    /// `json.dumps` defaults for the given indent (separators `", "`/`": "` on one line,
    /// `","`/`": "` when indenting).
    pub fn new(indent: Option<String>) -> JsonOptions {
        let item_sep = if indent.is_some() { "," } else { ", " };
        JsonOptions {
            ensure_ascii: false,
            indent,
            item_sep: item_sep.to_string(),
            key_sep: ": ".to_string(),
            sort_keys: false,
        }
    }
}

fn type_error(what: &str) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("tojson: object of type {what} is not JSON serializable"),
    )
}

/// `json.dumps(value, ...)` with Python's exact spacing, escapes and number forms.
pub fn dumps(value: &Value, opts: &JsonOptions) -> Result<String, Error> {
    let mut out = String::new();
    write_json(&mut out, value, opts, 0)?;
    Ok(out)
}

fn newline(out: &mut String, opts: &JsonOptions, level: usize) {
    if let Some(indent) = &opts.indent {
        out.push('\n');
        for _ in 0..level {
            out.push_str(indent);
        }
    }
}

fn write_json(out: &mut String, v: &Value, opts: &JsonOptions, level: usize) -> Result<(), Error> {
    match v.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&py_number(v, true)),
        ValueKind::String => write_json_str(out, v.as_str().unwrap_or_default(), opts.ensure_ascii),
        ValueKind::Seq => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline(out, opts, level + 1);
                write_json(out, item, opts, level + 1)?;
            }
            newline(out, opts, level);
            out.push(']');
        }
        ValueKind::Map => {
            let mut pairs = Vec::new();
            for key in v.try_iter()? {
                let item = v.get_item(&key)?;
                pairs.push((json_key(&key)?, item));
            }
            if pairs.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            if opts.sort_keys {
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
            }
            out.push('{');
            for (i, (key, item)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline(out, opts, level + 1);
                write_json_str(out, key, opts.ensure_ascii);
                out.push_str(&opts.key_sep);
                write_json(out, item, opts, level + 1)?;
            }
            newline(out, opts, level);
            out.push('}');
        }
        // Jinja2's map/select/reject return generators, which json.dumps refuses.
        ValueKind::Iterable => return Err(type_error("generator")),
        ValueKind::Undefined => return Err(type_error("Undefined")),
        other => return Err(type_error(&other.to_string())),
    }
    Ok(())
}

/// JSON object keys as Python converts them: strings as they are, numbers, booleans and None
/// as their JSON text.
fn json_key(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_string()),
        ValueKind::Number => Ok(py_number(key, true)),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.to_string()),
        ValueKind::None => Ok("null".to_string()),
        other => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("tojson: keys must be str, int, float, bool or None, not {other}"),
        )),
    }
}

fn write_json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && !c.is_ascii() => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A number as Python writes it: integers plainly, floats as `repr(float)` (`1.0`, `1e+16`,
/// `1.5e-05`); non-finite floats as `NaN`/`Infinity` for JSON, `nan`/`inf` for `str()`.
fn py_number(v: &Value, json: bool) -> String {
    if v.is_integer() {
        return v.to_string();
    }
    match f64::try_from(v.clone()) {
        Ok(f) => py_float(f, json),
        Err(_) => v.to_string(),
    }
}

fn py_float(f: f64, json: bool) -> String {
    if f.is_nan() {
        return if json { "NaN" } else { "nan" }.to_string();
    }
    if f.is_infinite() {
        let s = match (json, f > 0.0) {
            (true, true) => "Infinity",
            (true, false) => "-Infinity",
            (false, true) => "inf",
            (false, false) => "-inf",
        };
        return s.to_string();
    }
    // Shortest round-trip digits, then Python's layout: fixed for 1e-4 <= |f| < 1e16.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if (point as usize) >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            let (a, b) = digits.split_at(point as usize);
            format!("{a}.{b}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let mant = if rest.is_empty() {
            first.to_string()
        } else {
            format!("{first}.{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mant}e{esign}{:02}", exp.abs())
    }
}

/// Python's `str(value)`, which Jinja2 prints for `{{ value }}`: `None`, `True`/`False`,
/// `repr` of floats, and Python's list/dict repr (`['a', 1]`, `{'k': None}`).
pub fn py_str(v: &Value) -> Option<String> {
    match v.kind() {
        ValueKind::String | ValueKind::Undefined => None,
        ValueKind::None | ValueKind::Bool | ValueKind::Number | ValueKind::Seq | ValueKind::Map => {
            let mut out = String::new();
            py_repr(&mut out, v, 0).ok()?;
            Some(out)
        }
        _ => None,
    }
}

const MAX_REPR_DEPTH: usize = 64;

fn py_repr(out: &mut String, v: &Value, depth: usize) -> Result<(), Error> {
    if depth > MAX_REPR_DEPTH {
        return Err(Error::from(ErrorKind::InvalidOperation));
    }
    match v.kind() {
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::Number => out.push_str(&py_number(v, false)),
        ValueKind::String => py_repr_str(out, v.as_str().unwrap_or_default()),
        ValueKind::Seq => {
            out.push('[');
            for (i, item) in v.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(out, &item, depth + 1)?;
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in v.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let item = v.get_item(&key)?;
                py_repr(out, &key, depth + 1)?;
                out.push_str(": ");
                py_repr(out, &item, depth + 1)?;
            }
            out.push('}');
        }
        _ => out.push_str(&v.to_string()),
    }
    Ok(())
}

/// `repr(str)`: single quotes unless the text holds a `'` and no `"`.
fn py_repr_str(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_python_repr() {
        let cases = [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (-2.25, "-2.25"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (123456789.0, "123456789.0"),
            (1.2345e20, "1.2345e+20"),
            (0.1, "0.1"),
        ];
        for (f, want) in cases {
            assert_eq!(py_float(f, true), want, "{f}");
        }
    }

    #[test]
    fn json_spacing_and_escapes() {
        let v = Value::from_pairs([
            ("b", Value::from(vec![Value::from(1), Value::from(2.0)])),
            ("a", Value::from("é\"\n\u{1}")),
            ("c", Value::from(())),
        ]);
        assert_eq!(
            dumps(&v, &JsonOptions::new(None)).unwrap(),
            "{\"b\": [1, 2.0], \"a\": \"é\\\"\\n\\u0001\", \"c\": null}"
        );
        let mut opts = JsonOptions::new(Some("  ".into()));
        opts.sort_keys = true;
        opts.ensure_ascii = true;
        assert_eq!(
            dumps(&v, &opts).unwrap(),
            "{\n  \"a\": \"\\u00e9\\\"\\n\\u0001\",\n  \"b\": [\n    1,\n    2.0\n  ],\n  \"c\": null\n}"
        );
    }

    #[test]
    fn python_str_forms() {
        let v = Value::from(vec![
            Value::from(()),
            Value::from(true),
            Value::from("it's"),
            Value::from(1.0),
        ]);
        assert_eq!(py_str(&v).unwrap(), "[None, True, \"it's\", 1.0]");
    }
}
