//! OpenAPI enforcement: an app's `openapi` document (OpenAPI 3.0, read strictly from its JSON)
//! compiled once into path matchers and schema checks, and the check of one request against it
//! (an `apiViolation`). Pure.
//!
//! Enforced: the path (templates, under a server URL's path), the method (HEAD where GET is
//! declared), required parameters (path, query, header, cookie) and their schemas, the request
//! body's presence, content type and, for JSON, its schema. Of a schema: `type`, `nullable`,
//! `enum`, `minimum`/`maximum` (and exclusive), `minLength`/`maxLength`, `pattern`, `properties`,
//! `required`, `additionalProperties: false`, `items`, `minItems`/`maxItems`, `allOf`, and
//! `anyOf`/`oneOf` (both as "at least one"). Not enforced: `format`, `multipleOf`,
//! `uniqueItems`, `not`, `discriminator`, object- or content-encoded parameters.

use std::collections::HashMap;

use regex::bytes::{Regex, RegexBuilder};
use serde_json::{Map, Number, Value};

use super::decode::{label, percent_lenient};
use super::inspect::{Finding, Request};
use super::policy::Attack;

/// A compiled OpenAPI document.
#[derive(Debug, Clone)]
pub struct Api {
    /// The path prefixes of the servers (`""` when none is declared).
    bases: Vec<String>,
    /// Concrete paths before templated ones, as OpenAPI requires.
    paths: Vec<PathSpec>,
    schemas: Vec<Schema>,
}

/// Why a request is outside the API: the field (as in audits) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
struct PathSpec {
    template: String,
    matcher: Regex,
    /// The template's parameters in the order of the matcher's groups.
    names: Vec<String>,
    operations: Vec<(&'static str, OperationSpec)>,
}

#[derive(Debug, Clone)]
struct OperationSpec {
    parameters: Vec<ParamSpec>,
    body: Option<BodySpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    Path,
    Query,
    Header,
    Cookie,
}

#[derive(Debug, Clone)]
struct ParamSpec {
    name: String,
    location: Location,
    required: bool,
    schema: Option<usize>,
}

#[derive(Debug, Clone)]
struct BodySpec {
    required: bool,
    /// Declared media types (lowercase, maybe with `*`), and the schema of each.
    content: Vec<(String, Option<usize>)>,
}

/// One schema of the arena; references are indexes, so recursive schemas are fine.
#[derive(Debug, Clone, Default)]
struct Schema {
    nullable: bool,
    kind: Option<Kind>,
    enumeration: Vec<Value>,
    minimum: Option<(f64, bool)>,
    maximum: Option<(f64, bool)>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    pattern: Option<Regex>,
    properties: Vec<(String, usize)>,
    required: Vec<String>,
    closed: bool,
    additional: Option<usize>,
    items: Option<usize>,
    min_items: Option<usize>,
    max_items: Option<usize>,
    all_of: Vec<usize>,
    any_of: Vec<usize>,
    /// A `$ref`: everything is the target's.
    target: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Number,
    Integer,
    Boolean,
    Object,
    Array,
}

/// References between parameters or request bodies followed at most this often (a loop of
/// references is an error, not a hang).
const MAX_REFERENCE_HOPS: usize = 8;

/// Schema checks one value may take: `anyOf` alternatives nested in a recursive schema would
/// otherwise cost exponential time on a deep enough request. Past it the value is refused.
const CHECK_BUDGET: usize = 100_000;

impl Api {
    /// Compiles an OpenAPI 3.0 document; an error names where in the document it is
    /// (`paths./orders.get.parameters[0]: ...`).
    ///
    /// The document is read straight from its JSON, only for what is enforced, but strictly: a
    /// field OpenAPI requires must be there, every field read must have its type, and a schema
    /// may only use the keywords of OpenAPI 3.0 (a misspelt `maxLenght` would otherwise leave a
    /// check out unseen).
    pub fn compile(document: &Value) -> Result<Api, String> {
        let root = object(document, "the OpenAPI document")?;
        let version = required(root, "openapi", "", text)?;
        if !version.starts_with("3.") {
            return Err(format!("openapi: version {version:?} is not OpenAPI 3"));
        }
        let info = required(root, "info", "", object)?;
        required(info, "title", "info", text)?;
        required(info, "version", "info", text)?;
        let components = member(root, "components", "", object)?;
        let section = |key: &str| -> Result<Option<&Map<String, Value>>, String> {
            components.map_or(Ok(None), |c| member(c, key, "components", object))
        };
        let mut compiler = Compiler {
            parameters: section("parameters")?,
            request_bodies: section("requestBodies")?,
            ..Compiler::default()
        };
        let schemas = section("schemas")?;
        // Every component schema gets its index first, so references can point ahead.
        for (index, name) in schemas.into_iter().flat_map(Map::keys).enumerate() {
            compiler
                .named
                .insert(format!("#/components/schemas/{name}"), index);
            compiler.arena.push(Schema::default());
        }
        for (index, (name, schema)) in schemas.into_iter().flatten().enumerate() {
            let compiled = compiler.schema(schema, &format!("components.schemas.{name}"))?;
            compiler.arena[index] = compiler.arena[compiled].clone();
        }
        let servers = member(root, "servers", "", array)?.unwrap_or_default();
        let bases = if servers.is_empty() {
            vec![String::new()]
        } else {
            let mut bases = Vec::new();
            for (i, server) in servers.iter().enumerate() {
                let at = format!("servers[{i}]");
                bases.push(server_path(required(
                    object(server, &at)?,
                    "url",
                    &at,
                    text,
                )?));
            }
            bases
        };
        let mut paths = Vec::new();
        for (template, item) in required(root, "paths", "", object)? {
            let at = format!("paths.{template}");
            let item = object(item, &at)?;
            if item.contains_key("$ref") {
                return Err(format!("{at}: a path item reference is not supported"));
            }
            let (matcher, names) = path_matcher(template).map_err(|e| format!("{at}: {e}"))?;
            let shared = compiler.parameters(item, &at)?;
            let mut operations = Vec::new();
            for method in [
                "GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE",
            ] {
                let key = method.to_ascii_lowercase();
                if let Some(operation) = item.get(&key) {
                    let at = join(&at, &key);
                    let spec = compiler.operation(object(operation, &at)?, &shared, &at)?;
                    operations.push((method, spec));
                }
            }
            paths.push(PathSpec {
                template: template.clone(),
                matcher,
                names,
                operations,
            });
        }
        paths.sort_by_key(|p| !p.names.is_empty());
        refuse_loops(&compiler.arena)?;
        Ok(Api {
            bases,
            paths,
            schemas: compiler.arena,
        })
    }

    /// The first way `request` is outside the API, as an `apiViolation` finding.
    pub fn check(&self, request: &Request<'_>) -> Option<Finding> {
        self.violation(request).map(|v| Finding {
            attack: Attack::ApiViolation,
            field: v.field,
        })
    }

    /// The first way `request` is outside the API, with the reason.
    pub fn violation(&self, request: &Request<'_>) -> Option<Violation> {
        let violation = |field: &str, reason: String| {
            Some(Violation {
                field: field.to_owned(),
                reason,
            })
        };
        let (raw_path, query) = match request.target.split_once('?') {
            Some((path, query)) => (path, query),
            None => (request.target, ""),
        };
        let path =
            String::from_utf8_lossy(&percent_lenient(raw_path.as_bytes(), false)).into_owned();
        let found = self.bases.iter().find_map(|base| {
            let rest = path.strip_prefix(base.as_str())?;
            let rest = if rest.is_empty() { "/" } else { rest };
            self.paths
                .iter()
                .find_map(|p| p.matcher.captures(rest.as_bytes()).map(|c| (p, c)))
        });
        let Some((spec, captures)) = found else {
            return violation("path", format!("path {path} is not declared"));
        };
        let method = request.method.to_ascii_uppercase();
        let operation = spec
            .operations
            .iter()
            .find(|(m, _)| *m == method)
            .or_else(|| {
                (method == "HEAD")
                    .then(|| spec.operations.iter().find(|(m, _)| *m == "GET"))
                    .flatten()
            });
        let Some((_, operation)) = operation else {
            return violation(
                "method",
                format!("method {method} is not declared for {}", spec.template),
            );
        };
        let path_values: HashMap<&str, String> = spec
            .names
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                let value = captures.get(i + 1)?.as_bytes();
                Some((name.as_str(), String::from_utf8_lossy(value).into_owned()))
            })
            .collect();
        let query_values = pairs(query);
        let cookie_header = header(request, "cookie").unwrap_or_default();
        for param in &operation.parameters {
            let (field, values): (String, Vec<String>) = match param.location {
                Location::Path => (
                    format!("path:{}", param.name),
                    path_values
                        .get(param.name.as_str())
                        .cloned()
                        .into_iter()
                        .collect(),
                ),
                Location::Query => (
                    format!("query:{}", param.name),
                    query_values
                        .iter()
                        .filter(|(n, _)| *n == param.name)
                        .map(|(_, v)| v.clone())
                        .collect(),
                ),
                Location::Header => (
                    format!("header:{}", param.name),
                    header(request, &param.name).into_iter().collect(),
                ),
                Location::Cookie => (
                    format!("cookie:{}", param.name),
                    cookie_header
                        .split(';')
                        .filter_map(|c| c.trim().split_once('='))
                        .filter(|(n, _)| *n == param.name)
                        .map(|(_, v)| v.to_owned())
                        .collect(),
                ),
            };
            if values.is_empty() {
                if param.required {
                    return violation(&field, format!("required parameter {field} is missing"));
                }
                continue;
            }
            if let Some(schema) = param.schema {
                let value = self.coerce(schema, &values);
                if let Err(reason) = self.validate(schema, &value, &field) {
                    return violation(&field, reason);
                }
            }
        }
        self.check_body(request, operation.body.as_ref())
            .map(|(field, reason)| Violation { field, reason })
    }

    fn check_body(
        &self,
        request: &Request<'_>,
        body: Option<&BodySpec>,
    ) -> Option<(String, String)> {
        let field = "body".to_owned();
        let Some(spec) = body else {
            return (!request.body.is_empty()).then(|| {
                (
                    field,
                    "a request body is not declared for this operation".to_owned(),
                )
            });
        };
        if request.body.is_empty() {
            return spec
                .required
                .then(|| (field, "the required request body is missing".to_owned()));
        }
        let media = header(request, "content-type")
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let Some((_, schema)) = spec
            .content
            .iter()
            .find(|(declared, _)| media_matches(declared, &media))
        else {
            return Some((field, format!("content type {media:?} is not declared")));
        };
        let is_json = media == "application/json" || media.ends_with("+json");
        match (schema, is_json) {
            (Some(schema), true) => match serde_json::from_slice::<Value>(request.body) {
                Err(e) => Some((field, format!("the body is not JSON: {e}"))),
                Ok(value) => self
                    .validate(*schema, &value, "body")
                    .err()
                    .map(|reason| (reason_field(&reason), reason)),
            },
            _ => None,
        }
    }

    /// A parameter's text as its schema's type (what cannot be converted stays a string, and the
    /// type check then names it); an array from repeated or comma-separated values.
    fn coerce(&self, schema: usize, values: &[String]) -> Value {
        let index = self.resolve_index(schema);
        let schema = &self.schemas[index];
        if schema.kind == Some(Kind::Array) {
            let items: Vec<&str> = if values.len() == 1 {
                values[0].split(',').collect()
            } else {
                values.iter().map(String::as_str).collect()
            };
            return Value::Array(
                items
                    .into_iter()
                    .map(|item| match schema.items {
                        Some(i) => self.scalar(i, item),
                        None => Value::String(item.to_owned()),
                    })
                    .collect(),
            );
        }
        self.scalar(index, &values[0])
    }

    fn scalar(&self, schema: usize, text: &str) -> Value {
        let fallback = || Value::String(text.to_owned());
        match self.resolve(schema).kind {
            Some(Kind::Integer) => text
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| fallback()),
            Some(Kind::Number) => text
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .unwrap_or_else(fallback),
            Some(Kind::Boolean) => match text {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => fallback(),
            },
            _ => fallback(),
        }
    }

    fn resolve(&self, index: usize) -> &Schema {
        &self.schemas[self.resolve_index(index)]
    }

    fn resolve_index(&self, mut index: usize) -> usize {
        // Compilation refused reference loops, so this ends.
        while let Some(target) = self.schemas[index].target {
            index = target;
        }
        index
    }

    /// Whether `value` satisfies the schema; the error names where (`body:items[2].qty`).
    fn validate(&self, schema: usize, value: &Value, at: &str) -> Result<(), String> {
        let mut budget = CHECK_BUDGET;
        self.validate_within(schema, value, at, &mut budget)
    }

    fn validate_within(
        &self,
        schema: usize,
        value: &Value,
        at: &str,
        budget: &mut usize,
    ) -> Result<(), String> {
        *budget = budget
            .checked_sub(1)
            .ok_or_else(|| format!("{at}: too costly to check against its schema"))?;
        let s = self.resolve(schema);
        if value.is_null() && (s.nullable || s.kind.is_none()) {
            return Ok(());
        }
        if let Some(kind) = s.kind {
            let fits = match kind {
                Kind::String => value.is_string(),
                Kind::Number => value.is_number(),
                Kind::Integer => value.as_i64().is_some() || value.as_u64().is_some(),
                Kind::Boolean => value.is_boolean(),
                Kind::Object => value.is_object(),
                Kind::Array => value.is_array(),
            };
            if !fits {
                return Err(format!("{at}: {} is not of type {kind:?}", short(value)));
            }
        }
        if !s.enumeration.is_empty() && !s.enumeration.contains(value) {
            return Err(format!(
                "{at}: {} is not one of the allowed values",
                short(value)
            ));
        }
        if let Some(n) = value.as_f64() {
            if let Some((min, exclusive)) = s.minimum
                && (n < min || (exclusive && n == min))
            {
                return Err(format!("{at}: {n} is below the minimum {min}"));
            }
            if let Some((max, exclusive)) = s.maximum
                && (n > max || (exclusive && n == max))
            {
                return Err(format!("{at}: {n} is above the maximum {max}"));
            }
        }
        if let Some(text) = value.as_str() {
            let length = text.chars().count();
            if s.min_length.is_some_and(|min| length < min) {
                return Err(format!(
                    "{at}: shorter than minLength {}",
                    s.min_length.unwrap_or(0)
                ));
            }
            if s.max_length.is_some_and(|max| length > max) {
                return Err(format!(
                    "{at}: longer than maxLength {}",
                    s.max_length.unwrap_or(0)
                ));
            }
            if let Some(pattern) = &s.pattern
                && !pattern.is_match(text.as_bytes())
            {
                return Err(format!(
                    "{at}: does not match the pattern {}",
                    pattern.as_str()
                ));
            }
        }
        if let Some(object) = value.as_object() {
            if let Some(missing) = s.required.iter().find(|r| !object.contains_key(*r)) {
                return Err(format!("{at}.{missing}: required property missing"));
            }
            for (key, item) in object {
                let at = format!("{at}.{}", label(key.as_bytes()));
                match s.properties.iter().find(|(name, _)| name == key) {
                    Some((_, property)) => self.validate_within(*property, item, &at, budget)?,
                    None if s.closed => return Err(format!("{at}: property not declared")),
                    None => {
                        if let Some(additional) = s.additional {
                            self.validate_within(additional, item, &at, budget)?;
                        }
                    }
                }
            }
        }
        if let Some(array) = value.as_array() {
            if s.min_items.is_some_and(|min| array.len() < min) {
                return Err(format!("{at}: fewer items than minItems"));
            }
            if s.max_items.is_some_and(|max| array.len() > max) {
                return Err(format!("{at}: more items than maxItems"));
            }
            if let Some(items) = s.items {
                for (i, item) in array.iter().enumerate() {
                    self.validate_within(items, item, &format!("{at}[{i}]"), budget)?;
                }
            }
        }
        for part in &s.all_of {
            self.validate_within(*part, value, at, budget)?;
        }
        if !s.any_of.is_empty()
            && !s
                .any_of
                .iter()
                .any(|p| self.validate_within(*p, value, at, budget).is_ok())
        {
            return Err(format!("{at}: matches none of the allowed schemas"));
        }
        Ok(())
    }
}

/// The audit field of a validation error `body.a.b: ...`: `body:a.b`.
fn reason_field(reason: &str) -> String {
    let at = reason.split(": ").next().unwrap_or("body");
    match at.strip_prefix("body.") {
        Some(rest) => format!("body:{rest}"),
        None => match at.strip_prefix("body[") {
            Some(rest) => format!("body:[{rest}"),
            None => "body".to_owned(),
        },
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

fn header(request: &Request<'_>, name: &str) -> Option<String> {
    request
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

fn pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                String::from_utf8_lossy(&percent_lenient(s.as_bytes(), true)).into_owned()
            };
            (decode(name), decode(value))
        })
        .collect()
}

fn media_matches(declared: &str, media: &str) -> bool {
    match declared.split_once('/') {
        _ if declared == "*/*" => true,
        Some((kind, "*")) => media.split('/').next() == Some(kind),
        _ => declared == media,
    }
}

/// The path part of a server URL (`https://h/api/v1/` → `/api/v1`; variables are not expanded).
fn server_path(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = if url.contains("://") {
        after_scheme.find('/').map_or("", |at| &after_scheme[at..])
    } else {
        after_scheme
    };
    path.trim_end_matches('/').to_owned()
}

/// `/orders/{id}/items` as `^/orders/([^/]+)/items$` and its parameter names.
fn path_matcher(template: &str) -> Result<(Regex, Vec<String>), String> {
    let mut pattern = String::from("^");
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        pattern.push_str(&regex::escape(&rest[..open]));
        let close = rest[open..]
            .find('}')
            .ok_or("a `{` without its `}` in the path template")?;
        names.push(rest[open + 1..open + close].to_owned());
        pattern.push_str("([^/]+)");
        rest = &rest[open + close + 1..];
    }
    pattern.push_str(&regex::escape(rest));
    pattern.push('$');
    RegexBuilder::new(&pattern)
        .unicode(false)
        .build()
        .map(|r| (r, names))
        .map_err(|e| e.to_string())
}

/// The keywords a Schema Object of OpenAPI 3.0 may have (besides `x-` extensions), enforced or not.
const SCHEMA_KEYWORDS: [&str; 36] = [
    "$ref",
    "title",
    "description",
    "type",
    "format",
    "nullable",
    "enum",
    "default",
    "example",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "allOf",
    "oneOf",
    "anyOf",
    "not",
    "discriminator",
    "readOnly",
    "writeOnly",
    "xml",
    "externalDocs",
    "deprecated",
];

/// `at.key`, or `key` at the document's root.
fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

/// The member `key` of the object at `at`, read by `read` (given the member's place), if present.
fn member<'a, T>(
    map: &'a Map<String, Value>,
    key: &str,
    at: &str,
    read: impl FnOnce(&'a Value, &str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    map.get(key).map(|v| read(v, &join(at, key))).transpose()
}

/// The member `key` that OpenAPI requires of the object at `at`.
fn required<'a, T>(
    map: &'a Map<String, Value>,
    key: &str,
    at: &str,
    read: impl FnOnce(&'a Value, &str) -> Result<T, String>,
) -> Result<T, String> {
    member(map, key, at, read)?.ok_or_else(|| format!("{}: required but missing", join(at, key)))
}

/// `found`, the value at `at` read as `what`, or an error naming the place and the value.
fn expect<T>(found: Option<T>, value: &Value, at: &str, what: &str) -> Result<T, String> {
    found.ok_or_else(|| format!("{at}: expected {what}, not {}", short(value)))
}

fn object<'a>(value: &'a Value, at: &str) -> Result<&'a Map<String, Value>, String> {
    expect(value.as_object(), value, at, "an object")
}

fn array<'a>(value: &'a Value, at: &str) -> Result<&'a [Value], String> {
    expect(value.as_array().map(Vec::as_slice), value, at, "an array")
}

fn text<'a>(value: &'a Value, at: &str) -> Result<&'a str, String> {
    expect(value.as_str(), value, at, "a string")
}

fn flag(value: &Value, at: &str) -> Result<bool, String> {
    expect(value.as_bool(), value, at, "true or false")
}

fn number(value: &Value, at: &str) -> Result<f64, String> {
    expect(value.as_f64(), value, at, "a number")
}

fn count(value: &Value, at: &str) -> Result<usize, String> {
    let count = value.as_u64().and_then(|n| usize::try_from(n).ok());
    expect(count, value, at, "an integer of 0 or more")
}

#[derive(Default)]
struct Compiler<'a> {
    arena: Vec<Schema>,
    named: HashMap<String, usize>,
    /// `components.parameters` and `components.requestBodies`, where references lead.
    parameters: Option<&'a Map<String, Value>>,
    request_bodies: Option<&'a Map<String, Value>>,
}

impl<'a> Compiler<'a> {
    /// The `parameters` of a path item or an operation (`owner`, at `at`).
    fn parameters(
        &mut self,
        owner: &'a Map<String, Value>,
        at: &str,
    ) -> Result<Vec<ParamSpec>, String> {
        let mut out = Vec::new();
        let list = member(owner, "parameters", at, array)?.unwrap_or_default();
        for (i, parameter) in list.iter().enumerate() {
            let at = format!("{at}.parameters[{i}]");
            let parameter = follow(parameter, self.parameters, "parameters", &at)?;
            let name = required(parameter, "name", &at, text)?;
            let location = match required(parameter, "in", &at, text)? {
                "query" => Location::Query,
                "header" => Location::Header,
                "path" => Location::Path,
                "cookie" => Location::Cookie,
                other => {
                    return Err(format!(
                        "{at}.in: {other:?} is not query, header, path or cookie"
                    ));
                }
            };
            let schema = match (parameter.get("schema"), parameter.get("content")) {
                (Some(schema), _) => Some(self.schema(schema, &at)?),
                (None, Some(content)) => {
                    object(content, &join(&at, "content"))?;
                    None
                }
                (None, None) => return Err(format!("{at}: neither schema nor content")),
            };
            out.push(ParamSpec {
                name: name.to_owned(),
                location,
                required: member(parameter, "required", &at, flag)?.unwrap_or(false)
                    || location == Location::Path,
                schema,
            });
        }
        Ok(out)
    }

    fn operation(
        &mut self,
        operation: &'a Map<String, Value>,
        shared: &[ParamSpec],
        at: &str,
    ) -> Result<OperationSpec, String> {
        required(operation, "responses", at, object)?;
        let own = self.parameters(operation, at)?;
        // An operation's parameter replaces the path item's of the same name and location.
        let mut parameters: Vec<ParamSpec> = shared
            .iter()
            .filter(|s| {
                !own.iter()
                    .any(|o| o.name == s.name && o.location == s.location)
            })
            .cloned()
            .collect();
        parameters.extend(own);
        let body = match operation.get("requestBody") {
            None => None,
            Some(body) => {
                let at = join(at, "requestBody");
                let body = follow(body, self.request_bodies, "requestBodies", &at)?;
                let mut content = Vec::new();
                for (media, spec) in member(body, "content", &at, object)?.into_iter().flatten() {
                    let at = format!("{at}.content.{media}");
                    let schema = object(spec, &at)?
                        .get("schema")
                        .map(|schema| self.schema(schema, &at))
                        .transpose()?;
                    content.push((media.to_ascii_lowercase(), schema));
                }
                Some(BodySpec {
                    required: member(body, "required", &at, flag)?.unwrap_or(false),
                    content,
                })
            }
        };
        Ok(OperationSpec { parameters, body })
    }

    /// Compiles a schema (or follows its reference) into the arena; returns its index.
    fn schema(&mut self, value: &'a Value, at: &str) -> Result<usize, String> {
        let map = object(value, at)?;
        if let Some(reference) = member(map, "$ref", at, text)? {
            let target = *self.named.get(reference).ok_or_else(|| {
                format!("{at}: reference {reference} does not name a schema of components.schemas")
            })?;
            self.arena.push(Schema {
                target: Some(target),
                ..Schema::default()
            });
            return Ok(self.arena.len() - 1);
        }
        if let Some(key) = map
            .keys()
            .find(|k| !SCHEMA_KEYWORDS.contains(&k.as_str()) && !k.starts_with("x-"))
        {
            return Err(format!(
                "{}: not a keyword of an OpenAPI 3.0 schema",
                join(at, key)
            ));
        }
        let bound = |key: &str, exclusive: &str| -> Result<Option<(f64, bool)>, String> {
            let Some(bound) = member(map, key, at, number)? else {
                return Ok(None);
            };
            Ok(Some((
                bound,
                member(map, exclusive, at, flag)?.unwrap_or(false),
            )))
        };
        let mut out = Schema {
            nullable: member(map, "nullable", at, flag)?.unwrap_or(false),
            kind: member(map, "type", at, |value, at| match text(value, at)? {
                "string" => Ok(Kind::String),
                "number" => Ok(Kind::Number),
                "integer" => Ok(Kind::Integer),
                "boolean" => Ok(Kind::Boolean),
                "object" => Ok(Kind::Object),
                "array" => Ok(Kind::Array),
                other => Err(format!("{at}: unknown type {other:?}")),
            })?,
            enumeration: member(map, "enum", at, array)?
                .map(<[Value]>::to_vec)
                .unwrap_or_default(),
            minimum: bound("minimum", "exclusiveMinimum")?,
            maximum: bound("maximum", "exclusiveMaximum")?,
            min_length: member(map, "minLength", at, count)?,
            max_length: member(map, "maxLength", at, count)?,
            pattern: member(map, "pattern", at, |value, at| {
                RegexBuilder::new(text(value, at)?)
                    .unicode(false)
                    .build()
                    .map_err(|e| format!("{at}: {e}"))
            })?,
            min_items: member(map, "minItems", at, count)?,
            max_items: member(map, "maxItems", at, count)?,
            ..Schema::default()
        };
        for (name, property) in member(map, "properties", at, object)?.into_iter().flatten() {
            let index = self.schema(property, &format!("{at}.properties.{name}"))?;
            out.properties.push((name.clone(), index));
        }
        for (i, name) in member(map, "required", at, array)?
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            out.required
                .push(text(name, &format!("{at}.required[{i}]"))?.to_owned());
        }
        match map.get("additionalProperties") {
            None | Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => out.closed = true,
            Some(schema) => {
                out.additional = Some(self.schema(schema, &join(at, "additionalProperties"))?);
            }
        }
        out.items = map
            .get("items")
            .map(|items| self.schema(items, &join(at, "items")))
            .transpose()?;
        out.all_of = self.list(map, "allOf", at)?;
        out.any_of = self.list(map, "anyOf", at)?;
        out.any_of.extend(self.list(map, "oneOf", at)?);
        // Not enforced, but read as strictly as the rest.
        if let Some(not) = map.get("not") {
            self.schema(not, &join(at, "not"))?;
        }
        self.arena.push(out);
        Ok(self.arena.len() - 1)
    }

    /// The schemas of `allOf`, `anyOf` or `oneOf` (`key`).
    fn list(
        &mut self,
        map: &'a Map<String, Value>,
        key: &str,
        at: &str,
    ) -> Result<Vec<usize>, String> {
        let list = member(map, key, at, array)?.unwrap_or_default();
        let at = join(at, key);
        list.iter()
            .enumerate()
            .map(|(i, s)| self.schema(s, &format!("{at}[{i}]")))
            .collect()
    }
}

/// Refuses schemas that reach themselves without going down into a property or an item
/// (`A: {allOf: [A]}`, `A: {$ref: A}`): checking them would never end.
fn refuse_loops(arena: &[Schema]) -> Result<(), String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(arena: &[Schema], marks: &mut [Mark], at: usize) -> Result<(), String> {
        match marks[at] {
            Mark::Done => return Ok(()),
            Mark::Open => {
                return Err("components.schemas: a schema refers to itself through $ref, allOf, anyOf or oneOf alone".to_owned());
            }
            Mark::New => {}
        }
        marks[at] = Mark::Open;
        let s = &arena[at];
        for next in s.target.iter().chain(&s.all_of).chain(&s.any_of) {
            visit(arena, marks, *next)?;
        }
        marks[at] = Mark::Done;
        Ok(())
    }
    let mut marks = vec![Mark::New; arena.len()];
    (0..arena.len()).try_for_each(|at| visit(arena, &mut marks, at))
}

/// A parameter or request body, through its `#/components/{kind}/Name` reference if it is one.
fn follow<'a>(
    mut item: &'a Value,
    named: Option<&'a Map<String, Value>>,
    kind: &str,
    at: &str,
) -> Result<&'a Map<String, Value>, String> {
    for _ in 0..MAX_REFERENCE_HOPS {
        let found = object(item, at)?;
        let Some(reference) = member(found, "$ref", at, text)? else {
            return Ok(found);
        };
        item = reference
            .strip_prefix(&format!("#/components/{kind}/"))
            .and_then(|name| named?.get(name))
            .ok_or_else(|| {
                format!("{at}: reference {reference} does not name one of components.{kind}")
            })?;
    }
    Err(format!(
        "{at}: references loop (more than {MAX_REFERENCE_HOPS} in a row)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn api() -> Api {
        Api::compile(&json!({
            "openapi": "3.0.3",
            "info": { "title": "orders", "version": "1" },
            "servers": [{ "url": "https://shop.example/api/v1/" }],
            "paths": {
                "/orders": {
                    "get": {
                        "parameters": [
                            { "name": "limit", "in": "query",
                              "schema": { "type": "integer", "minimum": 1, "maximum": 100 } },
                            { "name": "status", "in": "query", "required": true,
                              "schema": { "type": "string", "enum": ["open", "shipped"] } }
                        ],
                        "responses": {}
                    },
                    "post": {
                        "requestBody": { "required": true, "content": { "application/json": {
                            "schema": { "$ref": "#/components/schemas/Order" } } } },
                        "responses": {}
                    }
                },
                "/orders/{id}": {
                    "parameters": [{ "name": "id", "in": "path", "required": true,
                                     "schema": { "type": "string", "pattern": "^[0-9]+$" } }],
                    "get": { "responses": {} }
                },
                "/orders/latest": { "get": { "responses": {} } }
            },
            "components": { "schemas": {
                "Order": { "type": "object", "required": ["sku", "qty"],
                           "additionalProperties": false,
                           "properties": {
                               "sku": { "type": "string", "minLength": 3, "maxLength": 8 },
                               "qty": { "type": "integer", "minimum": 1 },
                               "note": { "type": "string", "nullable": true },
                               "tags": { "type": "array", "maxItems": 2,
                                         "items": { "$ref": "#/components/schemas/Tag" } } } },
                "Tag": { "type": "string", "enum": ["gift", "rush"] }
            } }
        }))
        .unwrap()
    }

    fn check(method: &str, target: &str, body: &str) -> Option<(String, String)> {
        let headers: Vec<(&str, &[u8])> = vec![("Content-Type", b"application/json")];
        let request = Request {
            method,
            target,
            headers,
            body: body.as_bytes(),
        };
        let violation = api().violation(&request).map(|v| (v.field, v.reason));
        assert_eq!(
            api().check(&request).map(|f| (f.attack, f.field)),
            violation
                .clone()
                .map(|(field, _)| (Attack::ApiViolation, field))
        );
        violation
    }

    #[test]
    fn requests_inside_the_api_pass() {
        let order = r#"{"sku":"abc","qty":2,"note":null,"tags":["gift"]}"#;
        for (method, target, body) in [
            ("GET", "/api/v1/orders?status=open&limit=10", ""),
            ("get", "/api/v1/orders?status=shipped", ""),
            ("HEAD", "/api/v1/orders?status=open", ""),
            ("POST", "/api/v1/orders", order),
            ("GET", "/api/v1/orders/42", ""),
            ("GET", "/api/v1/orders/latest", ""),
        ] {
            assert_eq!(
                check(method, target, body),
                None,
                "{method} {target} {body}"
            );
        }
    }

    #[test]
    fn violations_name_field_and_reason() {
        let table: &[(&str, &str, &str, &str, &str)] = &[
            (
                "GET",
                "/api/v2/orders",
                "",
                "path",
                "path /api/v2/orders is not declared",
            ),
            (
                "GET",
                "/api/v1/admin",
                "",
                "path",
                "path /api/v1/admin is not declared",
            ),
            (
                "DELETE",
                "/api/v1/orders",
                "",
                "method",
                "method DELETE is not declared for /orders",
            ),
            (
                "GET",
                "/api/v1/orders",
                "",
                "query:status",
                "required parameter query:status is missing",
            ),
            (
                "GET",
                "/api/v1/orders?status=lost",
                "",
                "query:status",
                "query:status: \"lost\" is not one of the allowed values",
            ),
            (
                "GET",
                "/api/v1/orders?status=open&limit=500",
                "",
                "query:limit",
                "query:limit: 500 is above the maximum 100",
            ),
            (
                "GET",
                "/api/v1/orders?status=open&limit=ten",
                "",
                "query:limit",
                "query:limit: \"ten\" is not of type Integer",
            ),
            (
                "GET",
                "/api/v1/orders/4x2",
                "",
                "path:id",
                "path:id: does not match the pattern ^[0-9]+$",
            ),
            (
                "POST",
                "/api/v1/orders",
                "",
                "body",
                "the required request body is missing",
            ),
            (
                "POST",
                "/api/v1/orders",
                "{",
                "body",
                "the body is not JSON: EOF while parsing an object at line 1 column 1",
            ),
            (
                "POST",
                "/api/v1/orders",
                r#"{"sku":"abc"}"#,
                "body:qty",
                "body.qty: required property missing",
            ),
            (
                "POST",
                "/api/v1/orders",
                r#"{"sku":"ab","qty":1}"#,
                "body:sku",
                "body.sku: shorter than minLength 3",
            ),
            (
                "POST",
                "/api/v1/orders",
                r#"{"sku":"abc","qty":0}"#,
                "body:qty",
                "body.qty: 0 is below the minimum 1",
            ),
            (
                "POST",
                "/api/v1/orders",
                r#"{"sku":"abc","qty":1,"x":1}"#,
                "body:x",
                "body.x: property not declared",
            ),
            (
                "POST",
                "/api/v1/orders",
                r#"{"sku":"abc","qty":1,"tags":["gift","bad"]}"#,
                "body:tags[1]",
                "body.tags[1]: \"bad\" is not one of the allowed values",
            ),
            (
                "POST",
                "/api/v1/orders",
                r#"{"sku":"abc","qty":1,"tags":["gift","rush","gift"]}"#,
                "body:tags",
                "body.tags: more items than maxItems",
            ),
            (
                "GET",
                "/api/v1/orders/1",
                "{}",
                "body",
                "a request body is not declared for this operation",
            ),
        ];
        for (method, target, body, field, reason) in table {
            assert_eq!(
                check(method, target, body),
                Some((field.to_string(), reason.to_string())),
                "{method} {target} {body}"
            );
        }
    }

    #[test]
    fn exponential_schemas_are_cut_short() {
        // Two alternatives at every level of a recursive schema: 2^depth checks without a budget.
        let api = Api::compile(&json!({
            "openapi": "3.0.0", "info": { "title": "t", "version": "1" },
            "paths": { "/n": { "post": { "responses": {}, "requestBody": { "content": {
                "application/json": { "schema": { "$ref": "#/components/schemas/N" } } } } } } },
            "components": { "schemas": { "N": { "anyOf": [
                { "type": "object", "properties": { "c": { "$ref": "#/components/schemas/N" } } },
                { "type": "object", "properties": { "c": { "$ref": "#/components/schemas/N" } },
                  "required": ["never"] } ] } } }
        }))
        .unwrap();
        let deep = format!("{}1{}", r#"{"c":"#.repeat(60), "}".repeat(60));
        let request = Request {
            method: "POST",
            target: "/n",
            headers: vec![("Content-Type", b"application/json")],
            body: deep.as_bytes(),
        };
        let violation = api.violation(&request).unwrap();
        assert_eq!(violation.field, "body");
        assert!(violation.reason.contains("matches none"), "{violation:?}");
    }

    /// What OpenAPI requires, and the type of every field read, as the `openapiv3` crate used
    /// to check them; and the keywords of a schema, which it ignored when unknown.
    #[test]
    fn malformed_documents_are_refused_with_the_place() {
        let with_path = |item: Value| {
            json!({ "openapi": "3.0.0", "info": { "title": "t", "version": "1" },
                    "paths": { "/a": item } })
        };
        let with_parameter = |parameter: Value| {
            with_path(json!({ "get": { "responses": {}, "parameters": [parameter] } }))
        };
        let with_schema =
            |schema: Value| with_parameter(json!({ "name": "x", "in": "query", "schema": schema }));
        let table = [
            (json!([]), "the OpenAPI document: expected an object"),
            (json!({ "info": {} }), "openapi: required but missing"),
            (
                json!({ "openapi": 3, "info": {}, "paths": {} }),
                "openapi: expected a string, not 3",
            ),
            (
                json!({ "openapi": "3.0.0", "info": { "version": "1" }, "paths": {} }),
                "info.title: required but missing",
            ),
            (
                json!({ "openapi": "3.0.0", "info": { "title": "t", "version": 1 }, "paths": {} }),
                "info.version: expected a string",
            ),
            (
                json!({ "openapi": "3.0.0", "info": { "title": "t", "version": "1" } }),
                "paths: required but missing",
            ),
            (
                json!({ "openapi": "3.0.0", "info": { "title": "t", "version": "1" },
                        "paths": {}, "servers": [{ "description": "no url" }] }),
                "servers[0].url: required but missing",
            ),
            (
                json!({ "openapi": "3.0.0", "info": { "title": "t", "version": "1" },
                        "paths": {}, "components": { "schemas": [] } }),
                "components.schemas: expected an object",
            ),
            (with_path(json!([])), "paths./a: expected an object"),
            (
                with_path(json!({ "$ref": "#/paths/~1b" })),
                "paths./a: a path item reference is not supported",
            ),
            (
                with_path(json!({ "get": {} })),
                "paths./a.get.responses: required but missing",
            ),
            (
                with_path(
                    json!({ "post": { "responses": {}, "requestBody": { "required": "yes" } } }),
                ),
                "paths./a.post.requestBody.required: expected true or false",
            ),
            (
                with_path(
                    json!({ "post": { "responses": {}, "requestBody": { "$ref": "#/components/requestBodies/B" } } }),
                ),
                "paths./a.post.requestBody: reference #/components/requestBodies/B does not name one of components.requestBodies",
            ),
            (
                with_path(json!({ "get": { "responses": {}, "parameters": {} } })),
                "paths./a.get.parameters: expected an array",
            ),
            (
                with_parameter(json!({ "in": "query", "schema": {} })),
                "paths./a.get.parameters[0].name: required but missing",
            ),
            (
                with_parameter(json!({ "name": "x", "in": "body", "schema": {} })),
                "paths./a.get.parameters[0].in: \"body\" is not query, header, path or cookie",
            ),
            (
                with_parameter(json!({ "name": "x", "in": "query" })),
                "paths./a.get.parameters[0]: neither schema nor content",
            ),
            (
                with_schema(json!({ "type": ["string", "null"] })),
                "paths./a.get.parameters[0].type: expected a string",
            ),
            (
                with_schema(json!({ "type": "text" })),
                "paths./a.get.parameters[0].type: unknown type \"text\"",
            ),
            (
                with_schema(json!({ "type": "string", "minLength": -1 })),
                "paths./a.get.parameters[0].minLength: expected an integer of 0 or more, not -1",
            ),
            (
                with_schema(json!({ "type": "integer", "maximum": "9" })),
                "paths./a.get.parameters[0].maximum: expected a number",
            ),
            (
                with_schema(json!({ "type": "object", "required": ["a", 1] })),
                "paths./a.get.parameters[0].required[1]: expected a string",
            ),
            (
                with_schema(json!({ "type": "object", "additionalProperties": "no" })),
                "paths./a.get.parameters[0].additionalProperties: expected an object",
            ),
            (
                with_schema(json!({ "anyOf": {} })),
                "paths./a.get.parameters[0].anyOf: expected an array",
            ),
            (
                with_schema(
                    json!({ "type": "array", "items": { "type": "string", "maxLenght": 3 } }),
                ),
                "paths./a.get.parameters[0].items.maxLenght: not a keyword of an OpenAPI 3.0 schema",
            ),
        ];
        for (document, want) in table {
            let error = Api::compile(&document).unwrap_err();
            assert!(
                error.starts_with(want),
                "{error:?} should start with {want:?}"
            );
        }
        // Extensions, keywords not enforced and parameters by content are accepted.
        let lenient = with_parameter(json!({ "name": "x", "in": "query", "x-owner": "shop",
            "content": { "application/json": {} } }));
        assert!(Api::compile(&lenient).is_ok());
        let documented = with_schema(json!({ "type": "string", "format": "uuid",
            "description": "an id", "example": "1", "x-kind": 1, "not": { "enum": ["0"] } }));
        assert!(Api::compile(&documented).is_ok());
    }

    /// A schema with a `type` and `allOf` is checked against both (the crate read only the type).
    #[test]
    fn type_and_all_of_are_both_checked() {
        let api = Api::compile(&json!({
            "openapi": "3.0.0", "info": { "title": "t", "version": "1" },
            "paths": { "/a": { "get": { "responses": {}, "parameters": [{
                "name": "x", "in": "query", "required": true,
                "schema": { "type": "string", "allOf": [{ "maxLength": 3 }] } }] } } }
        }))
        .unwrap();
        let request = |target| Request {
            method: "GET",
            target,
            headers: Vec::new(),
            body: b"",
        };
        assert_eq!(api.violation(&request("/a?x=abc")), None);
        assert_eq!(
            api.violation(&request("/a?x=abcd")),
            Some(Violation {
                field: "query:x".to_owned(),
                reason: "query:x: longer than maxLength 3".to_owned()
            })
        );
    }

    #[test]
    fn compile_errors_name_where() {
        let base = |paths: Value, schemas: Value| {
            json!({ "openapi": "3.0.0", "info": { "title": "t", "version": "1" },
                    "paths": paths, "components": { "schemas": schemas } })
        };
        let table = [
            (json!({ "openapi": "3.0.0" }), "info"),
            (
                json!({ "openapi": "2.0", "info": { "title": "t", "version": "1" }, "paths": {} }),
                "openapi: version \"2.0\" is not OpenAPI 3",
            ),
            (
                base(
                    json!({ "/a": { "get": { "responses": {}, "parameters": [{ "name": "x", "in": "query", "schema": { "$ref": "#/components/schemas/Nope" } }] } } }),
                    json!({}),
                ),
                "paths./a.get.parameters[0]: reference #/components/schemas/Nope does not name a schema of components.schemas",
            ),
            (
                base(
                    json!({}),
                    json!({ "S": { "type": "string", "pattern": "(" } }),
                ),
                "components.schemas.S.pattern: regex parse error",
            ),
            (
                base(
                    json!({}),
                    json!({ "A": { "allOf": [{ "$ref": "#/components/schemas/A" }] } }),
                ),
                "a schema refers to itself",
            ),
            (
                base(json!({ "/a/{x": {} }), json!({})),
                "paths./a/{x: a `{` without its `}`",
            ),
        ];
        for (document, want) in table {
            let error = Api::compile(&document).unwrap_err();
            assert!(error.contains(want), "{error:?} should contain {want:?}");
        }
        // A recursive schema through a property is fine.
        let tree = base(
            json!({}),
            json!({ "Node": { "type": "object", "properties": {
            "children": { "type": "array", "items": { "$ref": "#/components/schemas/Node" } } } } }),
        );
        assert!(Api::compile(&tree).is_ok());
    }
}
