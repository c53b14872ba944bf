//! The fields of one request, each with the decoded forms worth inspecting: the path, each query
//! parameter, each header, each cookie, and the body's parts (form fields, JSON leaves, multipart
//! parts). What cannot be decoded is a malformation naming its field. Pure.

use super::decode::{label, percent_lenient, percent_strict, views};
use super::inspect::Request;

/// Where a field came from: which detections apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Path,
    Query,
    /// A header the application reads as data (not one of [`PROTOCOL_HEADERS`]).
    Header,
    /// A header of the protocol itself: only tool and Shellshock signatures are looked for.
    ProtocolHeader,
    Cookie,
    Body,
    /// A field a lenient form parser reads out of a binary body (`body:NAME`): most such values
    /// are chance bytes, so only strong signatures apply (`rules::matches_strong`).
    BinaryForm,
}

/// One field: its audit name (`query:id`), where it came from, and its decoded forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub origin: Origin,
    pub views: Vec<Vec<u8>>,
    /// Read whole however long (bounded by the body's size): a body, or a part of one, that is
    /// not a value an application reads as such: a document, an opaque body, the text of a binary
    /// body. A value is read up to `INSPECTED_VALUE_BYTES` (docs/waas.md, "Long values").
    pub whole: bool,
}

/// Headers whose values the HTTP machinery parses (never application data): injection signatures
/// are not looked for in them, as their grammar (`q=0.9`, `*/*`, dates, tokens) would trip them.
const PROTOCOL_HEADERS: &[&str] = &[
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "authorization",
    "cache-control",
    "connection",
    "content-length",
    "content-type",
    "date",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "keep-alive",
    "pragma",
    "priority",
    "range",
    "te",
    "transfer-encoding",
    "upgrade-insecure-requests",
];

/// What could not be decoded, and in which field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformation {
    pub field: String,
    pub reason: String,
}

/// The request's fields, and its malformations (a malformed field is still inspected as far as
/// it could be read).
pub fn fields(request: &Request<'_>) -> (Vec<Field>, Vec<Malformation>) {
    let mut out = Fields::default();
    let (path, query) = match request.target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (request.target, None),
    };
    out.strict("path".to_owned(), Origin::Path, path.as_bytes(), false);
    // Each segment on its own too: `/items/1 OR 1=1` reads as SQL only without the rest.
    if let Some(field) = out.fields.last_mut() {
        let segments: Vec<Vec<u8>> = field.views[0]
            .split(|b| *b == b'/')
            .filter(|s| !s.is_empty() && s.len() + 1 < field.views[0].len())
            .map(<[u8]>::to_vec)
            .collect();
        field.views.extend(segments);
    }
    if let Some(query) = query {
        out.pairs("query", Origin::Query, query.as_bytes(), true, false);
    }
    let mut content_type = None;
    for (name, value) in &request.headers {
        if name.eq_ignore_ascii_case("cookie") {
            out.cookies(value);
            continue;
        }
        if name.eq_ignore_ascii_case("content-type") && content_type.is_none() {
            content_type = Some(String::from_utf8_lossy(value).into_owned());
        }
        let origin = if PROTOCOL_HEADERS
            .iter()
            .any(|p| name.eq_ignore_ascii_case(p))
        {
            Origin::ProtocolHeader
        } else {
            Origin::Header
        };
        out.push(
            format!("header:{}", label(name.as_bytes())),
            origin,
            percent_lenient(value, false),
        );
    }
    if !request.body.is_empty() {
        out.body(request.body, content_type.as_deref());
    }
    (out.fields, out.malformed)
}

#[derive(Default)]
struct Fields {
    fields: Vec<Field>,
    malformed: Vec<Malformation>,
}

impl Fields {
    fn push(&mut self, name: String, origin: Origin, decoded: Vec<u8>) {
        self.fields.push(Field {
            name,
            origin,
            views: views(decoded),
            whole: false,
        });
    }

    /// A field read whole ([`Field::whole`]).
    fn push_whole(&mut self, name: String, origin: Origin, decoded: Vec<u8>) {
        self.push(name, origin, decoded);
        if let Some(field) = self.fields.last_mut() {
            field.whole = true;
        }
    }

    /// A percent-encoded value: an invalid escape is a malformation, and the value is still
    /// inspected as leniently decoded.
    fn strict(&mut self, name: String, origin: Origin, raw: &[u8], plus: bool) {
        let decoded = percent_strict(raw, plus).unwrap_or_else(|at| {
            self.malformed.push(Malformation {
                field: name.clone(),
                reason: format!("invalid percent-encoding at byte {at}"),
            });
            percent_lenient(raw, plus)
        });
        self.push(name, origin, decoded);
    }

    /// `name=value&...` (a query string or a form body): each parameter under `{prefix}:{name}`,
    /// its name inspected along with its value; `whole`: each read whole ([`Field::whole`]).
    fn pairs(&mut self, prefix: &str, origin: Origin, raw: &[u8], strict: bool, whole: bool) {
        for pair in raw.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(at) => (&pair[..at], Some(&pair[at + 1..])),
                None => (pair, None),
            };
            let field = format!("{prefix}:{}", label(&percent_lenient(name, true)));
            for part in std::iter::once(name).chain(value) {
                match (strict, whole) {
                    (true, _) => self.strict(field.clone(), origin, part, true),
                    (false, false) => self.push(field.clone(), origin, percent_lenient(part, true)),
                    (false, true) => {
                        self.push_whole(field.clone(), origin, percent_lenient(part, true));
                    }
                }
            }
        }
    }

    fn cookies(&mut self, header: &[u8]) {
        for cookie in header.split(|b| *b == b';') {
            let cookie = cookie.trim_ascii();
            if cookie.is_empty() {
                continue;
            }
            let (name, value) = match cookie.iter().position(|b| *b == b'=') {
                Some(at) => (&cookie[..at], &cookie[at + 1..]),
                None => (&cookie[..0], cookie),
            };
            let field = format!("cookie:{}", label(name));
            // Cookie values have no standard encoding: a stray `%` is no malformation.
            self.push(field.clone(), Origin::Cookie, name.to_vec());
            self.push(field, Origin::Cookie, percent_lenient(value, false));
        }
    }

    fn body(&mut self, body: &[u8], content_type: Option<&str>) {
        let media = content_type
            .map(|t| {
                t.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        match media.as_str() {
            "application/x-www-form-urlencoded" => {
                self.pairs("body", Origin::Body, body, true, false)
            }
            "multipart/form-data" => self.multipart(body, content_type.unwrap_or("")),
            // Without a content type an application may still parse a form: read it as one,
            // leniently, so that leaving the header out hides nothing.
            "" => self.pairs("body", Origin::Body, body, false, false),
            json if json == "application/json" || json.ends_with("+json") => self.json(body),
            xml if xml.ends_with("/xml") || xml.ends_with("+xml") => self.xml(body),
            media if binary(media, body) => self.binary(body),
            _ => self.push_whole("body".to_owned(), Origin::Body, body.to_vec()),
        }
    }

    /// A binary body ([`binary`]). The signatures are not run over its bytes (random bytes spell
    /// `;id` and `<a on..=` often enough in an upload of a few MiB, and the strings of a program
    /// or a font are full of paths, commands and markup), but over the fields a lenient form
    /// parser reads out of it, Python's `parse_qs` say, which an application may run whatever the
    /// content type: each `NAME=VALUE` between `&`s (or at the start) whose name looks like a
    /// parameter's ([`parameter_name`]), and the value up to the next `&` as [`words`] reads it,
    /// percent-decoded, read whole (bounded by the body's size) and trusted less
    /// ([`Origin::BinaryForm`]: strong signatures only), since most such values are chance bytes.
    /// The one attack that travels as binary, a serialised Java object, is looked for by its
    /// stream magic, wherever it is, inspected alone (the code injection signatures know it).
    fn binary(&mut self, body: &[u8]) {
        if find(body, JAVA_STREAM_MAGIC).is_some() {
            self.push("body".to_owned(), Origin::Body, JAVA_STREAM_MAGIC.to_vec());
        }
        for pair in body.split(|b| *b == b'&') {
            let Some((name, value)) = pair
                .iter()
                .position(|b| *b == b'=')
                .and_then(|at| Some((parameter_name(&pair[..at])?, &pair[at + 1..])))
            else {
                continue;
            };
            let field = format!("body:{}", label(&name));
            self.push_whole(field.clone(), Origin::BinaryForm, name);
            self.push_whole(
                field,
                Origin::BinaryForm,
                percent_lenient(&words(value), true),
            );
        }
    }

    /// XML: the whole body, and each attribute value and text between tags on its own (an
    /// injection inside a document does not read as one in the document's syntax). Entities are
    /// decoded by [`views`]; no XML parser is needed for that much.
    fn xml(&mut self, body: &[u8]) {
        self.push_whole("body".to_owned(), Origin::Body, body.to_vec());
        let mut rest = body;
        while let Some(at) = rest.iter().position(|b| matches!(b, b'"' | b'\'' | b'>')) {
            let close = if rest[at] == b'>' { b'<' } else { rest[at] };
            let after = &rest[at + 1..];
            let end = after
                .iter()
                .position(|b| *b == close)
                .unwrap_or(after.len());
            let leaf = after[..end].trim_ascii();
            if !leaf.is_empty() {
                self.push_whole("body".to_owned(), Origin::Body, leaf.to_vec());
            }
            // Past the closing quote (or up to the next tag's `<`).
            rest = after.get(end + 1..).unwrap_or_default();
        }
    }

    fn json(&mut self, body: &[u8]) {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(value) => self.json_value(&mut String::new(), &value),
            Err(e) => {
                self.malformed.push(Malformation {
                    field: "body".to_owned(),
                    reason: format!("invalid JSON with a JSON content type: {e}"),
                });
                self.push_whole("body".to_owned(), Origin::Body, body.to_vec());
            }
        }
    }

    /// Each string leaf under `body:a.b[0]`, each key under its own path. serde_json's
    /// recursion limit (128) bounds the depth.
    fn json_value(&mut self, path: &mut String, value: &serde_json::Value) {
        use serde_json::Value;
        let field = |path: &str| format!("body:{path}");
        match value {
            Value::String(s) => self.push(field(path), Origin::Body, s.as_bytes().to_vec()),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    self.json_value(path, item);
                    path.truncate(len);
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    let len = path.len();
                    if len > 0 {
                        path.push('.');
                    }
                    path.push_str(&label(key.as_bytes()));
                    self.push(field(path), Origin::Body, key.as_bytes().to_vec());
                    self.json_value(path, item);
                    path.truncate(len);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// `multipart/form-data`: each part under `body:{name}`, its file name inspected too; the
    /// content of a file part is not (files are the application's to judge), a form field's is.
    fn multipart(&mut self, body: &[u8], content_type: &str) {
        let malformed = |this: &mut Self, reason: &str| {
            this.malformed.push(Malformation {
                field: "body".to_owned(),
                reason: format!("invalid multipart body: {reason}"),
            });
            this.push_whole("body".to_owned(), Origin::Body, body.to_vec());
        };
        let Some(boundary) = parameter(content_type, "boundary").filter(|b| !b.is_empty()) else {
            return malformed(self, "no boundary in the content type");
        };
        // RFC 2046's limit; it also bounds the cost of looking for the delimiter.
        if boundary.len() > 70 {
            return malformed(self, "a boundary longer than 70 characters");
        }
        let delimiter = format!("--{boundary}").into_bytes();
        // What precedes the first delimiter is a preamble, ignored by parsers.
        let parts = split(body, &delimiter).skip(1);
        let mut closed = false;
        for part in parts {
            if part.starts_with(b"--") {
                closed = true;
                break;
            }
            // Lines end in CRLF, or in LF alone as many parsers accept: the headers end at the
            // first blank line of either kind, as those parsers read it.
            let part = part
                .strip_prefix(b"\r\n")
                .or(part.strip_prefix(b"\n"))
                .unwrap_or(part);
            let part = part
                .strip_suffix(b"\r\n")
                .or(part.strip_suffix(b"\n"))
                .unwrap_or(part);
            let blank = [&b"\r\n\r\n"[..], b"\n\n", b"\n\r\n", b"\r\n\n"]
                .iter()
                .filter_map(|blank| find(part, blank).map(|at| (at, blank.len())))
                .min();
            let Some((end, len)) = blank else {
                return malformed(self, "a part without a blank line after its headers");
            };
            let (headers, content) = (&part[..end], &part[end + len..]);
            let disposition = headers
                .split(|b| *b == b'\n')
                .map(|line| String::from_utf8_lossy(line.trim_ascii()).into_owned())
                .find(|line| {
                    line.get(..20)
                        .is_some_and(|h| h.eq_ignore_ascii_case("content-disposition:"))
                })
                .unwrap_or_default();
            let name = parameter(&disposition, "name").unwrap_or_default();
            let field = format!("body:{}", label(name.as_bytes()));
            self.push(field.clone(), Origin::Body, name.clone().into_bytes());
            match parameter(&disposition, "filename") {
                Some(file) => self.push(field, Origin::Body, file.into_bytes()),
                None => self.push(field, Origin::Body, content.to_vec()),
            }
        }
        if !closed {
            malformed(self, "no closing boundary delimiter");
        }
    }
}

/// The first bytes of a serialised Java object (`STREAM_MAGIC`, `STREAM_VERSION`).
const JAVA_STREAM_MAGIC: &[u8] = b"\xac\xed\x00\x05";

/// Media types of binary data: uploads, archives, documents, serialised objects.
const BINARY_MEDIA: &[&str] = &[
    "application/octet-stream",
    "application/x-java-serialized-object",
    "application/pdf",
    "application/zip",
    "application/gzip",
    "application/x-gzip",
    "application/x-bzip2",
    "application/x-xz",
    "application/zstd",
    "application/x-tar",
    "application/x-7z-compressed",
    "application/vnd.rar",
    "application/wasm",
];

/// Whether a body of `media` type is binary data, not text. Both must say so: the type (one of
/// [`BINARY_MEDIA`], or `image/`, `audio/`, `video/`, `font/`; an `+xml` such as SVG is text and
/// read as XML before this), and the content: a control byte that no text format allows (C0
/// other than tab, line feed, carriage return and form feed). The type alone is the client's
/// word: an application that parses whatever it is sent as JSON would otherwise see a JSON
/// attack the firewall skipped, while no JSON, XML, form or command line holds such a byte.
fn binary(media: &str, body: &[u8]) -> bool {
    let binary_type = BINARY_MEDIA.contains(&media)
        || ["image/", "audio/", "video/", "font/"]
            .iter()
            .any(|prefix| media.starts_with(prefix));
    binary_type && body.iter().copied().any(control)
}

/// A byte no text format allows: C0 other than tab, line feed, carriage return and form feed.
fn control(byte: u8) -> bool {
    byte < 0x20 && !matches!(byte, b'\t' | b'\n' | b'\r' | b'\x0c')
}

/// A binary form value as the signatures read it: each control byte, and each byte that is not
/// part of valid UTF-8, a space. Such a byte ends a word for a shell or an SQL parser, and may sit
/// anywhere in an attack (`ping \x01;id` runs `id`): the value is read whole, not as runs of text.
fn words(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for chunk in value.utf8_chunks() {
        out.extend(
            chunk
                .valid()
                .bytes()
                .map(|b| if control(b) { b' ' } else { b }),
        );
        out.extend(chunk.invalid().iter().map(|_| b' '));
    }
    out
}

/// `raw` decoded as a form parser decodes a name, when it looks like the name of a parameter an
/// application reads: as sent, at most 192 bytes of letters, digits, `_ - . [ ]`, percent-escapes
/// and `+`; decoded, 1 to 64 bytes, a letter or `_` first, then letters, digits and `_ - . [ ]`
/// (`q`, `user_id`, `items[0].name`, or `%71` for `q`). Anything else before a `=` in a binary
/// body (a digit or a sign first, other bytes) is chance.
fn parameter_name(raw: &[u8]) -> Option<Vec<u8>> {
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b"_-.[]".contains(b);
    if raw.is_empty() || raw.len() > 192 || !raw.iter().all(|b| plain(b) || b"%+".contains(b)) {
        return None;
    }
    let name = percent_lenient(raw, true);
    let first = *name.first()?;
    ((first.is_ascii_alphabetic() || first == b'_') && name.len() <= 64 && name.iter().all(plain))
        .then_some(name)
}

/// The value of `name=value` or `name="value"` among the `;`-separated parameters of a header.
fn parameter(header: &str, name: &str) -> Option<String> {
    header.split(';').skip(1).find_map(|p| {
        let (key, value) = p.split_once('=')?;
        key.trim().eq_ignore_ascii_case(name).then(|| {
            let value = value.trim();
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value)
                .to_owned()
        })
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `haystack` split at each `delimiter` (a `memmem` split).
fn split<'h>(haystack: &'h [u8], delimiter: &'h [u8]) -> impl Iterator<Item = &'h [u8]> + 'h {
    let mut rest = Some(haystack);
    std::iter::from_fn(move || {
        let current = rest?;
        match find(current, delimiter) {
            Some(at) => {
                rest = Some(&current[at + delimiter.len()..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(target: &'a str, headers: &[(&'a str, &'a str)], body: &'a str) -> Request<'a> {
        Request {
            method: "POST",
            target,
            headers: headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect(),
            body: body.as_bytes(),
        }
    }

    /// Each field's name and last (most decoded) view, as text.
    fn summary(request: &Request<'_>) -> (Vec<(String, String)>, Vec<String>) {
        let (fields, malformed) = fields(request);
        let fields = fields
            .into_iter()
            .map(|f| {
                let last = f.views.last().cloned().unwrap_or_default();
                (f.name, String::from_utf8_lossy(&last).into_owned())
            })
            .collect();
        let malformed = malformed
            .into_iter()
            .map(|m| format!("{}: {}", m.field, m.reason))
            .collect();
        (fields, malformed)
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn path_query_headers_cookies() {
        let r = request(
            "/a%20b?id=1+or+2&q=%253Cx&flag",
            &[
                ("User-Agent", "curl/8"),
                ("Cookie", "sid=abc%41; theme=dark"),
            ],
            "",
        );
        let (f, m) = summary(&r);
        assert_eq!(
            f,
            pairs(&[
                ("path", "/a b"),
                ("query:id", "id"),
                ("query:id", "1 or 2"),
                ("query:q", "q"),
                ("query:q", "<x"),
                ("query:flag", "flag"),
                ("header:User-Agent", "curl/8"),
                ("cookie:sid", "sid"),
                ("cookie:sid", "abcA"),
                ("cookie:theme", "theme"),
                ("cookie:theme", "dark"),
            ])
        );
        assert!(m.is_empty());
    }

    #[test]
    fn malformed_percent_names_its_field() {
        let (_, m) = summary(&request("/x%zz?a=100%", &[], ""));
        assert_eq!(
            m,
            [
                "path: invalid percent-encoding at byte 2",
                "query:a: invalid percent-encoding at byte 3",
            ]
        );
    }

    #[test]
    fn form_json_and_unknown_bodies() {
        let form = request(
            "/",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            "name=O%27Brien&x=%",
        );
        let (f, m) = summary(&form);
        assert_eq!(f[3], ("body:name".into(), "O'Brien".into()));
        assert_eq!(m, ["body:x: invalid percent-encoding at byte 0"]);

        let json = request(
            "/",
            &[(
                "Content-Type",
                "application/merge-patch+json; charset=utf-8",
            )],
            r#"{"a":{"b":["x",1,"y"]},"c":null}"#,
        );
        let (f, m) = summary(&json);
        assert_eq!(
            &f[2..],
            pairs(&[
                ("body:a", "a"),
                ("body:a.b", "b"),
                ("body:a.b[0]", "x"),
                ("body:a.b[2]", "y"),
                ("body:c", "c"),
            ])
        );
        assert!(m.is_empty());

        let bad = request("/", &[("content-type", "application/json")], "{\"a\":");
        let (f, m) = summary(&bad);
        assert_eq!(f[2].0, "body");
        assert!(
            m[0].starts_with("body: invalid JSON with a JSON content type"),
            "{m:?}"
        );

        let none = request("/", &[], "a=%3Cb%");
        assert_eq!(
            summary(&none),
            (
                pairs(&[("path", "/"), ("body:a", "a"), ("body:a", "<b%")]),
                vec![]
            )
        );

        let xml = request(
            "/",
            &[("Content-Type", "text/xml")],
            "<a b='x &amp; y'>1 OR 2</a>",
        );
        assert_eq!(
            &summary(&xml).0[2..],
            pairs(&[
                ("body", "<a b='x & y'>1 OR 2</a>"),
                ("body", "x & y"),
                ("body", "1 OR 2"),
            ])
        );
    }

    #[test]
    fn multipart_parts_and_file_names() {
        let body = "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"up\"; filename=\"../a.php\"\r\nContent-Type: text/plain\r\n\r\nfile content\r\n--XyZ--\r\n";
        let ct = "multipart/form-data; boundary=XyZ";
        let (f, m) = summary(&request("/", &[("Content-Type", ct)], body));
        assert_eq!(
            &f[2..],
            pairs(&[
                ("body:title", "title"),
                ("body:title", "hello"),
                ("body:up", "up"),
                ("body:up", "../a.php"),
            ])
        );
        assert!(m.is_empty(), "{m:?}");

        // Lines ending in LF alone: the same parts, up to the first blank line of either kind.
        let lf = "--XyZ\nContent-Disposition: form-data; name=\"a\"\n\nb\r\n\r\nc\n--XyZ--\n";
        let (f, m) = summary(&request("/", &[("Content-Type", ct)], lf));
        assert_eq!(&f[2..], pairs(&[("body:a", "a"), ("body:a", "b\r\n\r\nc")]));
        assert!(m.is_empty(), "{m:?}");

        let long = format!("multipart/form-data; boundary={}", "b".repeat(71));
        let table = [
            (
                "multipart/form-data",
                "x",
                "no boundary in the content type",
            ),
            (&long, "x", "a boundary longer than 70 characters"),
            (
                ct,
                "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nb\r\n",
                "no closing boundary delimiter",
            ),
            (
                ct,
                "--XyZ\r\nno blank line--XyZ--",
                "a part without a blank line after its headers",
            ),
        ];
        for (ct, body, reason) in table {
            let (_, m) = summary(&request("/", &[("Content-Type", ct)], body));
            assert_eq!(
                m,
                [format!("body: invalid multipart body: {reason}")],
                "{body}"
            );
        }
    }

    /// Binary bodies: what a binary type and a control byte make binary, and what of it is kept.
    #[test]
    fn binary_bodies() {
        let fields_of = |content_type: &str, body: &[u8]| {
            let r = Request {
                method: "PUT",
                target: "/",
                headers: vec![("Content-Type", content_type.as_bytes())],
                body,
            };
            let (fields, _) = fields(&r);
            fields
                .into_iter()
                .filter(|f| matches!(f.origin, Origin::Body | Origin::BinaryForm))
                .map(|f| (f.name, f.views[0].clone(), f.whole))
                .collect::<Vec<_>>()
        };
        let png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00;id|sh<svg onload=x>";
        let serialised = b"\x00\x01\xac\xed\x00\x05sr\x00\x11java.util.HashMap";
        let form =
            b"\x89PNG\x01\x00&q=%27+OR+1=1--&x\x01=y&c=\x01;id\xff\x00%3Csvg+onload%3Dx%3E\x01;id";
        /// Content type, body, and the fields of the body kept: name, first view, read whole.
        type Case<'a> = (&'a str, &'a [u8], &'a [(&'a str, &'a [u8], bool)]);
        let table: &[Case] = &[
            // Binary: no text read but the fields of a form, and the magic of a serialised object.
            ("application/octet-stream", png, &[]),
            ("image/png", png, &[]),
            ("font/woff2", b"wOF2\x00\x01", &[]),
            (
                "application/octet-stream",
                serialised,
                &[("body", JAVA_STREAM_MAGIC, false)],
            ),
            // Each field named as a form names one: its name, and its value with each control
            // byte and invalid UTF-8 byte a space, percent-decoded.
            (
                "application/octet-stream",
                form,
                &[
                    ("body:q", b"q", true),
                    ("body:q", b"' OR 1=1--", true),
                    ("body:c", b"c", true),
                    ("body:c", b" ;id  <svg onload=x> ;id", true),
                ],
            ),
            // Only names that look like a parameter's once decoded: not a digit or a sign first.
            (
                "font/ttf",
                b"\x00\x01&1=a&-=b&%71=c&9C=d&%2d=x&_k=e&items[0].id=f",
                &[
                    ("body:q", b"q", true),
                    ("body:q", b"c", true),
                    ("body:_k", b"_k", true),
                    ("body:_k", b"e", true),
                    ("body:items[0].id", b"items[0].id", true),
                    ("body:items[0].id", b"f", true),
                ],
            ),
            // Text in a binary type, or bytes in a type that is not binary: the whole body.
            (
                "application/octet-stream",
                b"{\"q\":\"; id\"}",
                &[("body", b"{\"q\":\"; id\"}", true)],
            ),
            ("text/plain", b"a\x00b", &[("body", b"a\x00b", true)]),
        ];
        for (content_type, body, want) in table {
            let want: Vec<(String, Vec<u8>, bool)> = want
                .iter()
                .map(|(n, v, w)| (n.to_string(), v.to_vec(), *w))
                .collect();
            assert_eq!(
                fields_of(content_type, body),
                want,
                "{content_type} {body:?}"
            );
        }
    }
}
