//! HTML building blocks: escaping (everything shown comes from policies and audit events, which
//! workloads influence) and the page frame.

use axum::response::Html;

/// Text made safe for element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 0; color: #1d2330; }
header { background: #1d2330; color: #fff; padding: .6em 1.2em; display: flex; gap: 1.5em; align-items: center; }
header a { color: #cfd8ea; text-decoration: none; } header a.on { color: #fff; font-weight: bold; }
header form { margin-left: auto; } main { padding: 1em 1.2em; }
table { border-collapse: collapse; width: 100%; font-size: .9em; }
th, td { border-bottom: 1px solid #dde; padding: .3em .5em; text-align: left; vertical-align: top; }
td:first-child { white-space: nowrap; }
th { background: #f2f4f8; } code, textarea { font-family: ui-monospace, monospace; }
textarea { width: 100%; min-height: 24em; }
.errors { color: #a00; background: #fff0f0; border: 1px solid #e99; padding: .5em 1.5em; }
.ok { color: #060; background: #effaef; border: 1px solid #9c9; padding: .5em 1em; }
.effect-prevent, .effect-block { color: #a00; font-weight: bold; } .effect-alert { color: #a60; }
.muted { color: #778; } form.filters { display: flex; flex-wrap: wrap; gap: .5em; margin-bottom: 1em; }
";

/// A whole page: the navigation (with `active` marked), then `body`.
pub fn page(title: &str, active: &str, body: &str) -> Html<String> {
    let link = |href: &str, name: &str| {
        let class = if name == active { " class=\"on\"" } else { "" };
        format!("<a href=\"{href}\"{class}>{name}</a>")
    };
    let nav = if active.is_empty() {
        String::new()
    } else {
        format!(
            "{}{}{}<form method=\"post\" action=\"/logout\"><button>Log out</button></form>",
            link("/policy", "Policy"),
            link("/audits", "Audits"),
            link("/defenders", "Defenders"),
        )
    };
    Html(format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{} · defender console</title>\
         <style>{STYLE}</style></head><body><header><strong>defender console</strong>{nav}</header>\
         <main><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(title)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc(r#"<script>alert('x')</script> & "q""#),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }
}
