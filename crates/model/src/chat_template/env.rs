//! The Jinja environment chat templates run in, set up to behave like transformers' own
//! (`transformers.utils.chat_template_utils`): `trim_blocks` and `lstrip_blocks` on, loop
//! controls, `raise_exception`, `strftime_now`, a `tojson` that spaces like Python's
//! `json.dumps`, Python's `str()` for printed values (`None`, `True`), Python string and dict
//! methods, and Jinja2's lazy `map`/`select`/`reject` results.

use super::pyjson::{self, JsonOptions};
use super::strftime::DateTime;
use minijinja::value::{from_args, Kwargs, Rest, ValueKind, ValueOrKwargs};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior, Value};
use std::borrow::Cow;

/// Name the template is stored under (it appears in minijinja's own messages).
pub const TEMPLATE_NAME: &str = "chat_template";

/// An environment with the chat template compiled into it. `now` pins `strftime_now` to a
/// Unix time (UTC); `None` uses the clock.
pub fn build(source: &str, now: Option<i64>) -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(false)
            .build()?,
    );
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    // Recursion guard for hostile templates (macros calling themselves).
    env.set_recursion_limit(200);

    env.add_function(
        "raise_exception",
        |msg: Cow<'_, str>| -> Result<Value, Error> {
            Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("raise_exception: {msg}"),
            ))
        },
    );
    env.add_function("strftime_now", move |format: Cow<'_, str>| {
        let time = match now {
            Some(secs) => DateTime::from_unix(secs),
            None => DateTime::now_utc(),
        };
        time.strftime(&format)
    });
    env.add_filter("tojson", tojson);
    // Python's `iter(x)` fails on None, booleans and numbers (minijinja iterates None as empty);
    // Jinja2's Undefined iterates as empty.
    env.add_test("iterable", |v: &Value| match v.kind() {
        ValueKind::None | ValueKind::Bool | ValueKind::Number | ValueKind::Invalid => false,
        ValueKind::Plain => v.try_iter().is_ok(),
        _ => true,
    });
    env.add_filter(
        "map",
        |state: &mut State, v: Value, args: Rest<ValueOrKwargs>| {
            minijinja::filters::map(state, v, args).map(lazy)
        },
    );
    env.add_filter(
        "select",
        |state: &mut State, v: Value, test: Option<Cow<'_, str>>, args: Rest<ValueOrKwargs>| {
            minijinja::filters::select(state, v, test, args).map(lazy)
        },
    );
    env.add_filter(
        "reject",
        |state: &mut State, v: Value, test: Option<Cow<'_, str>>, args: Rest<ValueOrKwargs>| {
            minijinja::filters::reject(state, v, test, args).map(lazy)
        },
    );
    env.add_filter(
        "selectattr",
        |state: &mut State,
         v: Value,
         attr: Cow<'_, str>,
         test: Option<Cow<'_, str>>,
         args: Rest<ValueOrKwargs>| {
            minijinja::filters::selectattr(state, v, attr, test, args).map(lazy)
        },
    );
    env.add_filter(
        "rejectattr",
        |state: &mut State,
         v: Value,
         attr: Cow<'_, str>,
         test: Option<Cow<'_, str>>,
         args: Rest<ValueOrKwargs>| {
            minijinja::filters::rejectattr(state, v, attr, test, args).map(lazy)
        },
    );
    env.set_unknown_method_callback(|state, value, method, args| {
        match extra_method(value, method, args) {
            Some(result) => result,
            None => {
                minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
            }
        }
    });
    env.set_formatter(|out, state, value| match pyjson::py_str(value) {
        Some(text) => out.write_str(&text).map_err(Error::from),
        None => minijinja::escape_formatter(out, state, value),
    });
    env.add_template_owned(TEMPLATE_NAME, translate_tags(source))?;
    Ok(env)
}

/// Jinja2's `map`, `select`, `reject`, `selectattr` and `rejectattr` return generators: they
/// iterate once, and `tojson` refuses them (as transformers does). minijinja returns lists.
fn lazy(items: Vec<Value>) -> Value {
    Value::make_one_shot_iterator(items.into_iter())
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`
/// = `json.dumps` with those arguments.
fn tojson(value: &Value, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match indent {
        Some(v) => Some(v),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.kind() {
            ValueKind::Number => {
                let n = v.as_i64().ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: indent must be an integer",
                    )
                })?;
                Some(" ".repeat(n.clamp(0, 64) as usize))
            }
            ValueKind::String => Some(v.as_str().unwrap_or_default().to_string()),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an integer or a string",
                ))
            }
        },
    };
    let mut opts = JsonOptions::new(indent);
    if let Some(seps) = kwargs.get::<Option<Value>>("separators")? {
        if !seps.is_none() {
            let parts: Vec<Value> = seps.try_iter()?.collect();
            match parts.as_slice() {
                [a, b] => {
                    opts.item_sep = a.as_str().unwrap_or_default().to_string();
                    opts.key_sep = b.as_str().unwrap_or_default().to_string();
                }
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be a pair of strings",
                    ))
                }
            }
        }
    }
    if let Some(b) = kwargs.get::<Option<bool>>("ensure_ascii")? {
        opts.ensure_ascii = b;
    }
    if let Some(b) = kwargs.get::<Option<bool>>("sort_keys")? {
        opts.sort_keys = b;
    }
    kwargs.assert_all_used()?;
    pyjson::dumps(value, &opts).map(Value::from)
}

/// Python methods minijinja-contrib's pycompat lacks. `None` hands the call on to pycompat.
fn extra_method(value: &Value, method: &str, args: &[Value]) -> Option<Result<Value, Error>> {
    let s = value.as_str()?;
    let result = match method {
        "removeprefix" => {
            from_args::<(&str,)>(args).map(|(p,)| Value::from(s.strip_prefix(p).unwrap_or(s)))
        }
        "removesuffix" => {
            from_args::<(&str,)>(args).map(|(p,)| Value::from(s.strip_suffix(p).unwrap_or(s)))
        }
        "rsplit" => from_args::<(Option<&str>, Option<i64>)>(args).map(|(sep, max)| {
            let max = max.filter(|m| *m >= 0).map(|m| m as usize);
            let mut parts: Vec<String> = match (sep, max) {
                (Some(sep), Some(m)) if !sep.is_empty() => {
                    s.rsplitn(m + 1, sep).map(String::from).collect()
                }
                (Some(sep), None) if !sep.is_empty() => s.rsplit(sep).map(String::from).collect(),
                (Some(_), _) => return Value::from(()), // Python raises; handled below
                (None, _) => rsplit_whitespace(s, max),
            };
            parts.reverse();
            Value::from(parts)
        }),
        _ => return None,
    };
    Some(result.and_then(|v| {
        if v.is_none() {
            Err(Error::new(ErrorKind::InvalidOperation, "empty separator"))
        } else {
            Ok(v)
        }
    }))
}

/// Python's `s.rsplit(None, max)`, last part first: words split on runs of whitespace from
/// the right; after `max` splits the rest (leading whitespace kept) is the last element.
fn rsplit_whitespace(s: &str, max: Option<usize>) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = s.trim_end();
    while !rest.is_empty() && max.is_none_or(|m| parts.len() < m) {
        match rest.char_indices().rev().find(|(_, c)| c.is_whitespace()) {
            Some((i, c)) => {
                parts.push(rest[i + c.len_utf8()..].to_string());
                rest = rest[..i].trim_end();
            }
            None => {
                parts.push(rest.to_string());
                rest = "";
            }
        }
    }
    if !rest.is_empty() {
        parts.push(rest.to_string());
    }
    parts
}

/// transformers' `{% generation %}…{% endgeneration %}` marks assistant text for its token mask
/// and renders the body unchanged; minijinja has no such tag, so it becomes an always-true
/// `if` block with the same whitespace control.
fn translate_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        let Some(end) = tag[2..].find("%}").map(|i| i + 2) else {
            out.push_str(tag);
            return out;
        };
        let inner = &tag[2..end];
        let (lead, body) = split_modifier_start(inner);
        let (body, trail) = split_modifier_end(body);
        let replacement = match body.trim() {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(r) => {
                out.push_str("{%");
                out.push_str(lead);
                out.push(' ');
                out.push_str(r);
                out.push(' ');
                out.push_str(trail);
                out.push_str("%}");
            }
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

fn split_modifier_start(s: &str) -> (&str, &str) {
    match s.chars().next() {
        Some(c @ ('-' | '+')) => s.split_at(c.len_utf8()),
        _ => ("", s),
    }
}

fn split_modifier_end(s: &str) -> (&str, &str) {
    match s.chars().last() {
        Some(c @ ('-' | '+')) => s.split_at(s.len() - c.len_utf8()),
        _ => (s, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, ctx: Value) -> Result<String, Error> {
        let env = build(src, Some(0))?;
        env.get_template(TEMPLATE_NAME)?.render(ctx)
    }

    #[test]
    fn python_methods_and_forms() {
        let out = render(
            "{{ 'a b  c'.rsplit(None, 1) }}|{{ 'x,y,z'.rsplit(',', 1) }}|{{ 'pre-x'.removeprefix('pre-') }}|{{ none }}|{{ true }}|{{ [1, 'a'] }}",
            Value::from(()),
        )
        .unwrap();
        assert_eq!(out, "['a b', 'c']|['x,y', 'z']|x|None|True|[1, 'a']");
    }

    #[test]
    fn generation_tag_and_generators() {
        let out = render(
            "{%- generation -%} a {%- endgeneration %}{{ [1,2] | map('string') | join(',') }}",
            Value::from(()),
        )
        .unwrap();
        assert_eq!(out, "a1,2");
        assert!(render("{{ [1] | map('string') | tojson }}", Value::from(())).is_err());
    }

    #[test]
    fn malformed_tags_are_errors_not_panics() {
        for src in [
            "{%}",
            "{%",
            "{%-%}",
            "{% generation",
            "{%+ endgeneration +%}",
        ] {
            assert!(build(src, None).is_err(), "{src}");
        }
    }

    #[test]
    fn raise_exception_errors() {
        let err = render("{{ raise_exception('no') }}", Value::from(())).unwrap_err();
        assert!(err.to_string().contains("no"), "{err}");
    }
}
