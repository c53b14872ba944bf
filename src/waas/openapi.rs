//! OpenAPI enforcement: an app's `openapi` document (OpenAPI 3.0, read by the `openapiv3` crate)
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

use openapiv3::{
    AdditionalProperties, OpenAPI, Operation, Parameter, ParameterSchemaOrContent, ReferenceOr,
    RequestBody, SchemaKind, Type,
};
use regex::bytes::{Regex, RegexBuilder};
use serde_json::{Number, Value};

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
    pub fn compile(document: &Value) -> Result<Api, String> {
        let spec: OpenAPI = serde_path_to_error::deserialize(document)
            .map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
        if !spec.openapi.starts_with("3.") {
            return Err(format!(
                "openapi: version {:?} is not OpenAPI 3",
                spec.openapi
            ));
        }
        let mut compiler = Compiler::default();
        let components = spec.components.clone().unwrap_or_default();
        // Every component schema gets its index first, so references can point ahead.
        for (index, name) in components.schemas.keys().enumerate() {
            compiler
                .named
                .insert(format!("#/components/schemas/{name}"), index);
            compiler.arena.push(Schema::default());
        }
        for (index, (name, schema)) in components.schemas.iter().enumerate() {
            let compiled = compiler.schema(schema, &format!("components.schemas.{name}"))?;
            compiler.arena[index] = compiler.arena[compiled].clone();
        }
        let bases = if spec.servers.is_empty() {
            vec![String::new()]
        } else {
            spec.servers.iter().map(|s| server_path(&s.url)).collect()
        };
        let mut paths = Vec::new();
        for (template, item) in &spec.paths.paths {
            let at = format!("paths.{template}");
            let ReferenceOr::Item(item) = item else {
                return Err(format!("{at}: a path item reference is not supported"));
            };
            let (matcher, names) = path_matcher(template).map_err(|e| format!("{at}: {e}"))?;
            let shared = compiler.parameters(&item.parameters, &components, &at)?;
            let mut operations = Vec::new();
            for (method, operation) in [
                ("GET", &item.get),
                ("PUT", &item.put),
                ("POST", &item.post),
                ("DELETE", &item.delete),
                ("OPTIONS", &item.options),
                ("HEAD", &item.head),
                ("PATCH", &item.patch),
                ("TRACE", &item.trace),
            ] {
                if let Some(operation) = operation {
                    let at = format!("{at}.{}", method.to_ascii_lowercase());
                    let spec = compiler.operation(operation, &shared, &components, &at)?;
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

#[derive(Default)]
struct Compiler {
    arena: Vec<Schema>,
    named: HashMap<String, usize>,
}

impl Compiler {
    fn parameters(
        &mut self,
        list: &[ReferenceOr<Parameter>],
        components: &openapiv3::Components,
        at: &str,
    ) -> Result<Vec<ParamSpec>, String> {
        let mut out = Vec::new();
        for (i, parameter) in list.iter().enumerate() {
            let at = format!("{at}.parameters[{i}]");
            let parameter = follow(parameter, &components.parameters, "parameters", &at)?;
            let (data, location) = match parameter {
                Parameter::Query { parameter_data, .. } => (parameter_data, Location::Query),
                Parameter::Header { parameter_data, .. } => (parameter_data, Location::Header),
                Parameter::Path { parameter_data, .. } => (parameter_data, Location::Path),
                Parameter::Cookie { parameter_data, .. } => (parameter_data, Location::Cookie),
            };
            let schema = match &data.format {
                ParameterSchemaOrContent::Schema(schema) => Some(self.schema(schema, &at)?),
                ParameterSchemaOrContent::Content(_) => None,
            };
            out.push(ParamSpec {
                name: data.name.clone(),
                location,
                required: data.required || location == Location::Path,
                schema,
            });
        }
        Ok(out)
    }

    fn operation(
        &mut self,
        operation: &Operation,
        shared: &[ParamSpec],
        components: &openapiv3::Components,
        at: &str,
    ) -> Result<OperationSpec, String> {
        let own = self.parameters(&operation.parameters, components, at)?;
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
        let body = match &operation.request_body {
            None => None,
            Some(body) => {
                let at = format!("{at}.requestBody");
                let body: &RequestBody =
                    follow(body, &components.request_bodies, "requestBodies", &at)?;
                let mut content = Vec::new();
                for (media, spec) in &body.content {
                    let schema = match &spec.schema {
                        Some(schema) => {
                            Some(self.schema(schema, &format!("{at}.content.{media}"))?)
                        }
                        None => None,
                    };
                    content.push((media.to_ascii_lowercase(), schema));
                }
                Some(BodySpec {
                    required: body.required,
                    content,
                })
            }
        };
        Ok(OperationSpec { parameters, body })
    }

    /// Compiles a schema (or follows its reference) into the arena; returns its index.
    fn schema<S: std::borrow::Borrow<openapiv3::Schema>>(
        &mut self,
        schema: &ReferenceOr<S>,
        at: &str,
    ) -> Result<usize, String> {
        let schema = match schema {
            ReferenceOr::Reference { reference } => {
                let target = *self.named.get(reference).ok_or_else(|| {
                    format!(
                        "{at}: reference {reference} does not name a schema of components.schemas"
                    )
                })?;
                self.arena.push(Schema {
                    target: Some(target),
                    ..Schema::default()
                });
                return Ok(self.arena.len() - 1);
            }
            ReferenceOr::Item(schema) => schema.borrow(),
        };
        let mut out = Schema {
            nullable: schema.schema_data.nullable,
            ..Schema::default()
        };
        let pattern = |p: &Option<String>| -> Result<Option<Regex>, String> {
            p.as_deref()
                .map(|p| {
                    RegexBuilder::new(p)
                        .unicode(false)
                        .build()
                        .map_err(|e| format!("{at}.pattern: {e}"))
                })
                .transpose()
        };
        match &schema.schema_kind {
            SchemaKind::Type(Type::String(t)) => {
                out.kind = Some(Kind::String);
                out.enumeration = t
                    .enumeration
                    .iter()
                    .flatten()
                    .map(|s| Value::from(s.as_str()))
                    .collect();
                (out.min_length, out.max_length) = (t.min_length, t.max_length);
                out.pattern = pattern(&t.pattern)?;
            }
            SchemaKind::Type(Type::Number(t)) => {
                out.kind = Some(Kind::Number);
                out.enumeration = t
                    .enumeration
                    .iter()
                    .flatten()
                    .map(|n| Value::from(*n))
                    .collect();
                out.minimum = t.minimum.map(|m| (m, t.exclusive_minimum));
                out.maximum = t.maximum.map(|m| (m, t.exclusive_maximum));
            }
            SchemaKind::Type(Type::Integer(t)) => {
                out.kind = Some(Kind::Integer);
                out.enumeration = t
                    .enumeration
                    .iter()
                    .flatten()
                    .map(|n| Value::from(*n))
                    .collect();
                out.minimum = t.minimum.map(|m| (m as f64, t.exclusive_minimum));
                out.maximum = t.maximum.map(|m| (m as f64, t.exclusive_maximum));
            }
            SchemaKind::Type(Type::Boolean(t)) => {
                out.kind = Some(Kind::Boolean);
                out.enumeration = t
                    .enumeration
                    .iter()
                    .flatten()
                    .map(|b| Value::from(*b))
                    .collect();
            }
            SchemaKind::Type(Type::Object(t)) => {
                out.kind = Some(Kind::Object);
                self.object(
                    &mut out,
                    &t.properties,
                    &t.required,
                    t.additional_properties.as_ref(),
                    at,
                )?;
            }
            SchemaKind::Type(Type::Array(t)) => {
                out.kind = Some(Kind::Array);
                (out.min_items, out.max_items) = (t.min_items, t.max_items);
                out.items = t
                    .items
                    .as_ref()
                    .map(|i| self.schema(i, &format!("{at}.items")))
                    .transpose()?;
            }
            SchemaKind::OneOf { one_of: list } | SchemaKind::AnyOf { any_of: list } => {
                out.any_of = self.list(list, at)?;
            }
            SchemaKind::AllOf { all_of } => out.all_of = self.list(all_of, at)?,
            SchemaKind::Not { .. } => {}
            SchemaKind::Any(any) => {
                out.kind = match any.typ.as_deref() {
                    None => None,
                    Some("string") => Some(Kind::String),
                    Some("number") => Some(Kind::Number),
                    Some("integer") => Some(Kind::Integer),
                    Some("boolean") => Some(Kind::Boolean),
                    Some("object") => Some(Kind::Object),
                    Some("array") => Some(Kind::Array),
                    Some(other) => return Err(format!("{at}.type: unknown type {other:?}")),
                };
                out.enumeration = any.enumeration.clone();
                out.minimum = any
                    .minimum
                    .map(|m| (m, any.exclusive_minimum.unwrap_or(false)));
                out.maximum = any
                    .maximum
                    .map(|m| (m, any.exclusive_maximum.unwrap_or(false)));
                (out.min_length, out.max_length) = (any.min_length, any.max_length);
                (out.min_items, out.max_items) = (any.min_items, any.max_items);
                out.pattern = pattern(&any.pattern)?;
                self.object(
                    &mut out,
                    &any.properties,
                    &any.required,
                    any.additional_properties.as_ref(),
                    at,
                )?;
                out.items = any
                    .items
                    .as_ref()
                    .map(|i| self.schema(i, &format!("{at}.items")))
                    .transpose()?;
                out.all_of = self.list(&any.all_of, at)?;
                out.any_of = self.list(&any.any_of, at)?;
                out.any_of.extend(self.list(&any.one_of, at)?);
            }
        }
        self.arena.push(out);
        Ok(self.arena.len() - 1)
    }

    fn object(
        &mut self,
        out: &mut Schema,
        properties: &indexmap::IndexMap<String, ReferenceOr<Box<openapiv3::Schema>>>,
        required: &[String],
        additional: Option<&AdditionalProperties>,
        at: &str,
    ) -> Result<(), String> {
        for (name, property) in properties {
            let index = self.schema(property, &format!("{at}.properties.{name}"))?;
            out.properties.push((name.clone(), index));
        }
        out.required = required.to_vec();
        match additional {
            Some(AdditionalProperties::Any(false)) => out.closed = true,
            Some(AdditionalProperties::Schema(schema)) => {
                out.additional = Some(self.schema(schema, &format!("{at}.additionalProperties"))?);
            }
            Some(AdditionalProperties::Any(true)) | None => {}
        }
        Ok(())
    }

    fn list(
        &mut self,
        list: &[ReferenceOr<openapiv3::Schema>],
        at: &str,
    ) -> Result<Vec<usize>, String> {
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
fn follow<'a, T>(
    mut item: &'a ReferenceOr<T>,
    named: &'a indexmap::IndexMap<String, ReferenceOr<T>>,
    kind: &str,
    at: &str,
) -> Result<&'a T, String> {
    for _ in 0..MAX_REFERENCE_HOPS {
        match item {
            ReferenceOr::Item(found) => return Ok(found),
            ReferenceOr::Reference { reference } => {
                item = reference
                    .strip_prefix(&format!("#/components/{kind}/"))
                    .and_then(|name| named.get(name))
                    .ok_or_else(|| {
                        format!(
                            "{at}: reference {reference} does not name one of components.{kind}"
                        )
                    })?;
            }
        }
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
