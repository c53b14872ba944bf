//! Decoding of one request value the way an application (or an attacker counting on it) would:
//! percent-encoding (with `+` for space, IIS's `%uXXXX`, and the repeated layers of double
//! encoding) and HTML character references. Pure.

/// How many further percent-decoding layers are peeled off after the first: `%25252e` is
/// `.` after three; an application decoding more often than that is not one we can model.
const MORE_LAYERS: usize = 2;

/// Decodes one layer of percent-encoding, strictly: a `%` not followed by two hex digits (or
/// `u` and four) is an error at its byte offset. `plus`: `+` is a space (query strings, forms).
pub fn percent_strict(input: &[u8], plus: bool) -> Result<Vec<u8>, usize> {
    percent(input, plus, true)
}

/// Decodes one layer like [`percent_strict`] but keeps an invalid `%` as it is.
pub fn percent_lenient(input: &[u8], plus: bool) -> Vec<u8> {
    // Lenient decoding has no error path.
    percent(input, plus, false).unwrap_or_else(|_| input.to_vec())
}

fn percent(input: &[u8], plus: bool, strict: bool) -> Result<Vec<u8>, usize> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'%' => {
                if let Some(byte) = hex_at(input, i + 1, 2) {
                    out.push(byte as u8);
                    i += 3;
                    continue;
                }
                if matches!(input.get(i + 1), Some(b'u' | b'U'))
                    && let Some(unit) = hex_at(input, i + 2, 4)
                {
                    // A lone surrogate has no UTF-8 form: the replacement character stands in.
                    let c = char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER);
                    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    i += 6;
                    continue;
                }
                if strict {
                    return Err(i);
                }
                out.push(b'%');
            }
            b'+' if plus => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    Ok(out)
}

/// The value of `count` hex digits at `at`, if they are all there.
fn hex_at(input: &[u8], at: usize, count: usize) -> Option<u32> {
    let digits = input.get(at..at + count)?;
    digits
        .iter()
        .try_fold(0u32, |acc, &d| Some(acc * 16 + (d as char).to_digit(16)?))
}

/// The forms of an already once-decoded value worth inspecting: itself, the further
/// percent-decoding layers an attacker may count on (double encoding), and the HTML-decoded form
/// of the last; each distinct, in that order.
pub fn views(decoded: Vec<u8>) -> Vec<Vec<u8>> {
    let mut views = vec![decoded];
    for _ in 0..MORE_LAYERS {
        let last = &views[views.len() - 1];
        if !last.contains(&b'%') {
            break;
        }
        let next = percent_lenient(last, false);
        if &next == last {
            break;
        }
        views.push(next);
    }
    let last = &views[views.len() - 1];
    if last.contains(&b'&') {
        let html = html_decode(last);
        if &html != last {
            views.push(html);
        }
    }
    views
}

/// The named references worth knowing: those that spell the characters of markup and scripts.
const NAMED: &[(&str, char)] = &[
    ("lt", '<'),
    ("gt", '>'),
    ("amp", '&'),
    ("quot", '"'),
    ("apos", '\''),
    ("nbsp", ' '),
    ("colon", ':'),
    ("semi", ';'),
    ("lpar", '('),
    ("rpar", ')'),
    ("sol", '/'),
    ("bsol", '\\'),
    ("equals", '='),
    ("tab", '\t'),
    ("newline", '\n'),
    ("grave", '`'),
    ("period", '.'),
    ("comma", ','),
    ("excl", '!'),
    ("num", '#'),
    ("dollar", '$'),
    ("percnt", '%'),
    ("plus", '+'),
    ("lcub", '{'),
    ("rcub", '}'),
    ("lsqb", '['),
    ("rsqb", ']'),
];

/// Decodes HTML character references: the names of [`NAMED`] (with their `;`), and numeric ones
/// in decimal or hex, whose `;` browsers do not require. Anything else stays as it is.
pub fn html_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'&'
            && let Some((c, used)) = reference(&input[i + 1..])
        {
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            i += 1 + used;
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

/// The character a reference after `&` spells, and how many bytes it took.
fn reference(rest: &[u8]) -> Option<(char, usize)> {
    if let Some(numeric) = rest.strip_prefix(b"#") {
        let (radix, digits_at) = match numeric.first() {
            Some(b'x' | b'X') => (16, 2),
            _ => (10, 1),
        };
        // At most 7 digits (any code point fits), so the value never overflows.
        let digits = rest[digits_at..]
            .iter()
            .take(7)
            .take_while(|d| (**d as char).is_digit(radix))
            .count();
        if digits == 0 {
            return None;
        }
        let text = std::str::from_utf8(&rest[digits_at..digits_at + digits]).ok()?;
        let c = char::from_u32(u32::from_str_radix(text, radix).ok()?)
            .unwrap_or(char::REPLACEMENT_CHARACTER);
        let used = digits_at + digits + usize::from(rest.get(digits_at + digits) == Some(&b';'));
        return Some((c, used));
    }
    NAMED.iter().find_map(|(name, c)| {
        let after = rest.get(..name.len())?;
        (after.eq_ignore_ascii_case(name.as_bytes()) && rest.get(name.len()) == Some(&b';'))
            .then_some((*c, name.len() + 1))
    })
}

/// A field's name for audits: lossy UTF-8, control characters shown as `?`, at most 64
/// characters (the name is the attacker's).
pub fn label(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        let table: &[(&str, bool, Result<&str, usize>)] = &[
            ("a%20b", false, Ok("a b")),
            ("a+b", true, Ok("a b")),
            ("a+b", false, Ok("a+b")),
            ("%3Cscript%3e", false, Ok("<script>")),
            ("%u003Cb", false, Ok("<b")),
            ("%U00e9", false, Ok("é")),
            ("%uD800", false, Ok("\u{FFFD}")),
            ("100%", false, Err(3)),
            ("%zz", false, Err(0)),
            ("a%2", false, Err(1)),
            ("%u12", false, Err(0)),
        ];
        for (input, plus, want) in table {
            let got = percent_strict(input.as_bytes(), *plus);
            let want = want.map(|s| s.as_bytes().to_vec());
            assert_eq!(got, want, "{input}");
        }
        assert_eq!(percent_lenient(b"100% %41", false), b"100% A");
    }

    #[test]
    fn views_peel_double_encoding_and_html() {
        let table: &[(&str, &[&str])] = &[
            ("plain", &["plain"]),
            ("%2e%2e%2f", &["%2e%2e%2f", "../"]),
            ("%252e%252e", &["%252e%252e", "%2e%2e", ".."]),
            ("%25252525", &["%25252525", "%252525", "%2525"]),
            ("&lt;script&gt;", &["&lt;script&gt;", "<script>"]),
            ("%26lt;x", &["%26lt;x", "&lt;x", "<x"]),
            ("50% off", &["50% off"]),
        ];
        for (input, want) in table {
            let got: Vec<String> = views(input.as_bytes().to_vec())
                .into_iter()
                .map(|v| String::from_utf8(v).unwrap())
                .collect();
            assert_eq!(&got, want, "{input}");
        }
    }

    #[test]
    fn html_references() {
        let table = [
            ("&#60;a&#x3E;", "<a>"),
            ("&#0000060", "<"),
            ("java&#x09;script&colon;", "java\tscript:"),
            ("&LT;&amp;&unknown;", "<&&unknown;"),
            ("&lt no semicolon", "&lt no semicolon"),
            ("&#;&#x;", "&#;&#x;"),
            ("&#99999999;", "\u{FFFD}9;"),
            ("Tom &amp; Jerry", "Tom & Jerry"),
        ];
        for (input, want) in table {
            assert_eq!(
                String::from_utf8(html_decode(input.as_bytes())).unwrap(),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn labels_are_bounded_and_printable() {
        assert_eq!(label(b"id"), "id");
        assert_eq!(label(b"a\nb\xff"), "a?b\u{FFFD}");
        assert_eq!(label(&[b'x'; 100]).len(), 64);
    }
}
