//! JSON Schema (a documented subset) compiled into a small grammar of nodes for the matcher.
//!
//! Supported, everything else is an error (a keyword that would constrain the value is never
//! ignored):
//! - `true` / `{}`: any JSON value;
//! - `type`: one name or a list (`["string", "null"]`), and OpenAPI's `nullable: true`;
//! - objects: `properties` (generated in the schema's order), `required`,
//!   `additionalProperties` `false` or absent (only the listed properties are generated; an
//!   object schema without `properties` accepts any object, or a map of one value schema when
//!   `additionalProperties` is a schema); at most 64 properties per object;
//! - arrays: `items`, `minItems`, `maxItems`;
//! - strings: `minLength`, `maxLength` (in code points);
//! - `number`, `integer` (no `minimum` / `maximum` / `multipleOf`), `boolean`, `null`;
//! - `enum`, `const` (any JSON values, written in compact form), alone or with `type`;
//! - `anyOf` (and `allOf` with a single member); `$ref` to `#`, `#/$defs/NAME` or
//!   `#/definitions/NAME` (recursion allowed, nesting is capped by the matcher);
//! - annotations are ignored: `title`, `description`, `default`, `examples`, `$schema`, `$id`,
//!   `$comment`, `deprecated`, `readOnly`, `writeOnly`, `$defs`, `definitions`.
//!
//! What is generated is a subset of what the schema accepts: canonical JSON without spaces
//! inside literals, integers without a fraction or exponent, numbers of bounded length,
//! properties in schema order, no `\u` escapes of surrogates.

use super::json::{quote, Json};
use super::ConstrainError;

/// Node ids fixed in every grammar.
pub(crate) const ANY: u32 = 0;
pub(crate) const ANY_OBJECT: u32 = 1;
pub(crate) const ANY_ARRAY: u32 = 2;
pub(crate) const ANY_LITERALS: u32 = 3;

/// Lengths are u32; this means "no limit".
pub(crate) const UNBOUNDED: u32 = u32::MAX;

/// Most properties one object schema may list (candidate keys are a 64-bit mask).
pub const MAX_PROPERTIES: usize = 64;

#[derive(Debug, Clone)]
pub(crate) struct Prop {
    /// The key as a JSON string literal, quotes included.
    pub key: Vec<u8>,
    pub node: u32,
    pub required: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// Any JSON value.
    Any,
    /// An object: listed properties in order, or (no properties) any keys with values of
    /// `map_value`.
    Object {
        props: Vec<Prop>,
        map_value: Option<u32>,
    },
    Array {
        items: u32,
        min: u32,
        max: u32,
    },
    String {
        min: u32,
        max: u32,
    },
    Number {
        integer: bool,
    },
    /// One of these exact texts (at most 64).
    Literals(Vec<Vec<u8>>),
    Union(Vec<u32>),
    /// A `$ref` being compiled (never left in a finished grammar).
    Pending,
}

/// A compiled schema.
#[derive(Debug, Clone)]
pub struct Grammar {
    pub(crate) nodes: Vec<Node>,
    pub(crate) root: u32,
}

impl Grammar {
    /// Any JSON value of the root schema `schema`.
    pub fn compile(schema: &Json) -> Result<Grammar, ConstrainError> {
        let mut c = Compiler {
            nodes: base_nodes(),
            root: schema,
            refs: Vec::new(),
            depth: 0,
        };
        let root = c.compile(schema, "#")?;
        Ok(Grammar {
            nodes: c.nodes,
            root,
        })
    }

    /// Any JSON object (`response_format: json_object`).
    pub fn any_object() -> Grammar {
        Grammar {
            nodes: base_nodes(),
            root: ANY_OBJECT,
        }
    }

    pub(crate) fn node(&self, id: u32) -> &Node {
        // Ids come from this grammar; an out-of-range id would be a bug, answered by `Any`'s
        // sibling `Union([])` (nothing matches) rather than a panic.
        self.nodes.get(id as usize).unwrap_or(&Node::Pending)
    }
}

fn base_nodes() -> Vec<Node> {
    vec![
        Node::Any,
        Node::Object {
            props: Vec::new(),
            map_value: Some(ANY),
        },
        Node::Array {
            items: ANY,
            min: 0,
            max: UNBOUNDED,
        },
        Node::Literals(vec![b"true".to_vec(), b"false".to_vec(), b"null".to_vec()]),
    ]
}

const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$id",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$defs",
    "definitions",
];

const KNOWN: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "enum",
    "const",
    "anyOf",
    "allOf",
    "$ref",
    "nullable",
];

const OBJECT_KEYS: &[&str] = &["properties", "required", "additionalProperties"];
const ARRAY_KEYS: &[&str] = &["items", "minItems", "maxItems"];
const STRING_KEYS: &[&str] = &["minLength", "maxLength"];

struct Compiler<'a> {
    nodes: Vec<Node>,
    root: &'a Json,
    /// `$ref` targets compiled so far (or being compiled), by reference text.
    refs: Vec<(String, u32)>,
    /// Schemas being compiled, nested (bounds recursion through `$ref` chains).
    depth: usize,
}

/// Deepest nesting of schemas (through subschemas and `$ref`s) compiled.
pub const MAX_SCHEMA_DEPTH: usize = 64;

fn unsupported(path: &str, what: impl Into<String>) -> ConstrainError {
    ConstrainError::Unsupported {
        path: path.to_string(),
        what: what.into(),
    }
}

fn invalid(path: &str, what: impl Into<String>) -> ConstrainError {
    ConstrainError::InvalidSchema {
        path: path.to_string(),
        what: what.into(),
    }
}

fn count(v: &Json, path: &str, key: &str) -> Result<u32, ConstrainError> {
    match v {
        Json::Number(n) => {
            let n = n
                .as_u64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                        .map(|f| f as u64)
                })
                .ok_or_else(|| invalid(path, format!("`{key}` must be a non-negative integer")))?;
            Ok(u32::try_from(n).unwrap_or(UNBOUNDED - 1))
        }
        _ => Err(invalid(
            path,
            format!("`{key}` must be a non-negative integer"),
        )),
    }
}

impl<'a> Compiler<'a> {
    fn push(&mut self, node: Node) -> u32 {
        self.nodes.push(node);
        (self.nodes.len() - 1) as u32
    }

    fn compile(&mut self, schema: &'a Json, path: &str) -> Result<u32, ConstrainError> {
        if self.depth >= MAX_SCHEMA_DEPTH {
            return Err(unsupported(
                path,
                format!("schemas nested deeper than {MAX_SCHEMA_DEPTH}"),
            ));
        }
        self.depth += 1;
        let result = self.compile_inner(schema, path);
        self.depth -= 1;
        result
    }

    fn compile_inner(&mut self, schema: &'a Json, path: &str) -> Result<u32, ConstrainError> {
        let members = match schema {
            Json::Bool(true) => return Ok(ANY),
            Json::Bool(false) => return Err(invalid(path, "schema `false` matches nothing")),
            Json::Object(m) => m,
            other => {
                return Err(invalid(
                    path,
                    format!(
                        "a schema must be an object or a boolean, got {}",
                        other.type_name()
                    ),
                ))
            }
        };
        for (k, _) in members {
            if !KNOWN.contains(&k.as_str()) && !ANNOTATIONS.contains(&k.as_str()) {
                return Err(unsupported(path, format!("keyword `{k}`")));
            }
        }
        let has = |k: &str| schema.get(k).is_some();
        let constraining: Vec<&str> = members
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| KNOWN.contains(k))
            .collect();
        let only = |allowed: &[&str]| constraining.iter().all(|k| allowed.contains(k));

        if let Some(r) = schema.get("$ref") {
            if !only(&["$ref"]) {
                return Err(unsupported(
                    path,
                    "`$ref` next to other constraining keywords",
                ));
            }
            let Json::String(r) = r else {
                return Err(invalid(path, "`$ref` must be a string"));
            };
            return self.reference(r, path);
        }

        let nullable = match schema.get("nullable") {
            None | Some(Json::Bool(false)) => false,
            Some(Json::Bool(true)) => true,
            Some(_) => return Err(invalid(path, "`nullable` must be a boolean")),
        };
        let with_null = |c: &mut Compiler, id: u32| -> u32 {
            if nullable {
                let null = c.push(Node::Literals(vec![b"null".to_vec()]));
                c.push(Node::Union(vec![id, null]))
            } else {
                id
            }
        };

        if let Some(any_of) = schema.get("anyOf") {
            if !only(&["anyOf", "nullable"]) {
                return Err(unsupported(
                    path,
                    "`anyOf` next to other constraining keywords",
                ));
            }
            let Json::Array(alts) = any_of else {
                return Err(invalid(path, "`anyOf` must be an array"));
            };
            if alts.is_empty() {
                return Err(invalid(path, "`anyOf` must not be empty"));
            }
            let mut ids = Vec::with_capacity(alts.len());
            for (i, alt) in alts.iter().enumerate() {
                ids.push(self.compile(alt, &format!("{path}/anyOf/{i}"))?);
            }
            let id = self.push(Node::Union(ids));
            return Ok(with_null(self, id));
        }
        if let Some(all_of) = schema.get("allOf") {
            match all_of {
                Json::Array(items) if items.len() == 1 && only(&["allOf", "nullable"]) => {
                    let id = self.compile(&items[0], &format!("{path}/allOf/0"))?;
                    return Ok(with_null(self, id));
                }
                _ => {
                    return Err(unsupported(
                        path,
                        "`allOf` (only a single-member allOf alone is supported)",
                    ))
                }
            }
        }

        // Types asked for.
        let mut types: Vec<String> = match schema.get("type") {
            None => Vec::new(),
            Some(Json::String(t)) => vec![t.clone()],
            Some(Json::Array(ts)) => {
                let mut out = Vec::new();
                for t in ts {
                    match t {
                        Json::String(t) => out.push(t.clone()),
                        _ => return Err(invalid(path, "`type` entries must be strings")),
                    }
                }
                if out.is_empty() {
                    return Err(invalid(path, "`type` must not be an empty list"));
                }
                out
            }
            Some(_) => {
                return Err(invalid(
                    path,
                    "`type` must be a string or a list of strings",
                ))
            }
        };
        for t in &types {
            if ![
                "object", "array", "string", "number", "integer", "boolean", "null",
            ]
            .contains(&t.as_str())
            {
                return Err(invalid(path, format!("unknown type `{t}`")));
            }
        }
        if nullable && !types.is_empty() && !types.iter().any(|t| t == "null") {
            types.push("null".into());
        }

        // enum / const: exactly these values (of the asked types).
        if has("enum") || has("const") {
            if !only(&["enum", "const", "type", "nullable"]) || (has("enum") && has("const")) {
                return Err(unsupported(
                    path,
                    "`enum`/`const` next to constraining keywords other than `type`",
                ));
            }
            let values: Vec<&Json> = match (schema.get("enum"), schema.get("const")) {
                (Some(Json::Array(vs)), _) => vs.iter().collect(),
                (Some(_), _) => return Err(invalid(path, "`enum` must be an array")),
                (None, Some(c)) => vec![c],
                (None, None) => Vec::new(),
            };
            let mut lits: Vec<Vec<u8>> = Vec::new();
            for v in values {
                let t = v.type_name();
                let type_ok = types.is_empty()
                    || types
                        .iter()
                        .any(|want| want == t || (want == "number" && t == "integer"));
                if type_ok {
                    let text = v.to_compact().into_bytes();
                    if !lits.contains(&text) {
                        lits.push(text);
                    }
                }
            }
            if nullable && !types.is_empty() && !lits.iter().any(|l| l == b"null") {
                lits.push(b"null".to_vec());
            }
            if lits.is_empty() {
                return Err(invalid(
                    path,
                    "no value of `enum`/`const` has an allowed type",
                ));
            }
            return Ok(self.literals(lits));
        }

        if types.is_empty() {
            // Infer the type from the keywords present.
            let fam = [
                ("object", OBJECT_KEYS),
                ("array", ARRAY_KEYS),
                ("string", STRING_KEYS),
            ];
            for (t, keys) in fam {
                if keys.iter().any(|k| has(k)) {
                    types.push(t.into());
                }
            }
            if types.len() > 1 {
                return Err(unsupported(
                    path,
                    "keywords of several types without `type`",
                ));
            }
            if types.is_empty() {
                return Ok(with_null(self, ANY));
            }
            if nullable {
                types.push("null".into());
            }
        }

        let mut ids = Vec::with_capacity(types.len());
        for t in &types {
            let id = match t.as_str() {
                "object" => self.object(schema, path)?,
                "array" => self.array(schema, path)?,
                "string" => {
                    let min = match schema.get("minLength") {
                        Some(v) => count(v, path, "minLength")?,
                        None => 0,
                    };
                    let max = match schema.get("maxLength") {
                        Some(v) => count(v, path, "maxLength")?,
                        None => UNBOUNDED,
                    };
                    if min > max {
                        return Err(invalid(path, "minLength is greater than maxLength"));
                    }
                    self.push(Node::String { min, max })
                }
                "number" => self.push(Node::Number { integer: false }),
                "integer" => self.push(Node::Number { integer: true }),
                "boolean" => self.push(Node::Literals(vec![b"true".to_vec(), b"false".to_vec()])),
                _ => self.push(Node::Literals(vec![b"null".to_vec()])),
            };
            ids.push(id);
        }
        Ok(if ids.len() == 1 {
            ids[0]
        } else {
            self.push(Node::Union(ids))
        })
    }

    fn literals(&mut self, lits: Vec<Vec<u8>>) -> u32 {
        if lits.len() <= 64 {
            return self.push(Node::Literals(lits));
        }
        let chunks: Vec<Vec<Vec<u8>>> = lits.chunks(64).map(|c| c.to_vec()).collect();
        let ids = chunks
            .into_iter()
            .map(|c| self.push(Node::Literals(c)))
            .collect();
        self.push(Node::Union(ids))
    }

    fn object(&mut self, schema: &'a Json, path: &str) -> Result<u32, ConstrainError> {
        let props: &'a [(String, Json)] = match schema.get("properties") {
            None => &[],
            Some(Json::Object(m)) => m,
            Some(_) => return Err(invalid(path, "`properties` must be an object")),
        };
        let required: Vec<&str> = match schema.get("required") {
            None => Vec::new(),
            Some(Json::Array(r)) => {
                let mut out = Vec::new();
                for name in r {
                    match name {
                        Json::String(s) => out.push(s.as_str()),
                        _ => return Err(invalid(path, "`required` entries must be strings")),
                    }
                }
                out
            }
            Some(_) => return Err(invalid(path, "`required` must be an array")),
        };
        for name in &required {
            if !props.iter().any(|(k, _)| k == name) {
                return Err(unsupported(
                    path,
                    format!("required property `{name}` missing from `properties`"),
                ));
            }
        }
        for (i, (k, _)) in props.iter().enumerate() {
            if props[..i].iter().any(|(k2, _)| k2 == k) {
                return Err(invalid(path, format!("property `{k}` listed twice")));
            }
        }
        if props.len() > MAX_PROPERTIES {
            return Err(unsupported(
                path,
                format!("more than {MAX_PROPERTIES} properties in one object"),
            ));
        }
        let additional = schema.get("additionalProperties");
        if props.is_empty() {
            let map_value = match additional {
                None | Some(Json::Bool(true)) => Some(ANY),
                Some(Json::Bool(false)) => None,
                Some(s) => Some(self.compile(s, &format!("{path}/additionalProperties"))?),
            };
            return Ok(self.push(Node::Object {
                props: Vec::new(),
                map_value,
            }));
        }
        match additional {
            None | Some(Json::Bool(false)) => {}
            Some(_) => {
                return Err(unsupported(
                    path,
                    "`additionalProperties` other than false next to `properties`",
                ))
            }
        }
        let mut out = Vec::with_capacity(props.len());
        for (name, sub) in props {
            let node = self.compile(sub, &format!("{path}/properties/{name}"))?;
            out.push(Prop {
                key: quote(name).into_bytes(),
                node,
                required: required.contains(&name.as_str()),
            });
        }
        Ok(self.push(Node::Object {
            props: out,
            map_value: None,
        }))
    }

    fn array(&mut self, schema: &'a Json, path: &str) -> Result<u32, ConstrainError> {
        let items = match schema.get("items") {
            None => ANY,
            Some(Json::Array(_)) => {
                return Err(unsupported(path, "`items` as a list (tuple validation)"))
            }
            Some(s) => self.compile(s, &format!("{path}/items"))?,
        };
        let min = match schema.get("minItems") {
            Some(v) => count(v, path, "minItems")?,
            None => 0,
        };
        let max = match schema.get("maxItems") {
            Some(v) => count(v, path, "maxItems")?,
            None => UNBOUNDED,
        };
        if min > max {
            return Err(invalid(path, "minItems is greater than maxItems"));
        }
        Ok(self.push(Node::Array { items, min, max }))
    }

    fn reference(&mut self, r: &str, path: &str) -> Result<u32, ConstrainError> {
        if let Some((_, id)) = self.refs.iter().find(|(k, _)| k == r) {
            return Ok(*id);
        }
        let target: &'a Json = if r == "#" {
            self.root
        } else {
            let (section, name) = if let Some(n) = r.strip_prefix("#/$defs/") {
                ("$defs", n)
            } else if let Some(n) = r.strip_prefix("#/definitions/") {
                ("definitions", n)
            } else {
                return Err(unsupported(
                    path,
                    format!("`$ref` {r} (only #, #/$defs/NAME and #/definitions/NAME)"),
                ));
            };
            let name = name.replace("~1", "/").replace("~0", "~");
            self.root
                .get(section)
                .and_then(|defs| defs.get(&name))
                .ok_or_else(|| invalid(path, format!("`$ref` {r} points to nothing")))?
        };
        // Reserve the id first so that recursive references resolve to it.
        let id = self.push(Node::Pending);
        self.refs.push((r.to_string(), id));
        let body = self.compile(target, r)?;
        let node = match self.nodes.get(body as usize) {
            Some(Node::Pending) | None => {
                return Err(invalid(path, format!("`$ref` {r} refers only to itself")))
            }
            Some(_) => Node::Union(vec![body]),
        };
        if let Some(slot) = self.nodes.get_mut(id as usize) {
            *slot = node;
        }
        Ok(id)
    }
}
