//! How the pages show why a policy was refused: every problem as `defender policy check` words it,
//! and a custom rule's script error also as the script's line with a caret under the column, since
//! a position alone is hard to find in a script of several lines.

use defender::policy::{List, PolicyError, Problem};
use maud::{Markup, html};

/// The line and column of a script error, from a problem's field (`script:LINE:COLUMN`).
pub fn script_position(field: &str) -> Option<(usize, usize)> {
    let (line, column) = field.strip_prefix("script:")?.split_once(':')?;
    Some((line.parse().ok()?, column.parse().ok()?))
}

/// The problem's custom rule (its index in the library) and script position, when it is a
/// script error.
fn script_error(p: &Problem) -> Option<(usize, (usize, usize))> {
    let rule = p.rule.as_ref().filter(|r| r.list == List::CustomRules)?;
    Some((rule.index, script_position(&p.field)?))
}

/// Line `line` of `script` (from 1) with a caret under `column` (from 1, in characters); nothing
/// when the script has no such line.
pub fn excerpt(script: &str, line: usize, column: usize) -> Markup {
    match script.lines().nth(line.saturating_sub(1)) {
        Some(text) => html! {
            pre class="excerpt" {
                (text) "\n" (" ".repeat(column.saturating_sub(1))) "^"
            }
        },
        // The error is at the very end, after a last line break.
        None => html! {},
    }
}

/// Every problem of `e`, one item each; `script_of` gives the script of the library's custom
/// rule at an index, for the excerpt under a script error.
pub fn list(e: &PolicyError, script_of: impl Fn(usize) -> Option<String>) -> Markup {
    let problems: &[Problem] = match e {
        PolicyError::Syntax { .. } => &[],
        PolicyError::Invalid(list) => list,
    };
    html! {
        ul {
            @if let PolicyError::Syntax { .. } = e {
                li { (e) }
            }
            @for p in problems {
                li {
                    (p)
                    @if let Some((index, (line, column))) = script_error(p) {
                        @if let Some(script) = script_of(index) {
                            (excerpt(&script, line, column))
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_positions() {
        for (field, want) in [
            ("script:1:34", Some((1, 34))),
            ("script:12:1", Some((12, 1))),
            ("script", None),
            ("script:1", None),
            ("script:x:1", None),
            ("name", None),
            ("customRules[0].name", None),
        ] {
            assert_eq!(script_position(field), want, "{field}");
        }
    }

    #[test]
    fn excerpts_point_at_the_column() {
        let script = "proc.name = \"nc\"\nand proc.cmdline contains";
        assert_eq!(
            excerpt(script, 2, 26).into_string(),
            format!(
                "<pre class=\"excerpt\">and proc.cmdline contains\n{}^</pre>",
                " ".repeat(25)
            )
        );
        assert_eq!(
            excerpt("a < \"<b>\"", 1, 3).into_string(),
            "<pre class=\"excerpt\">a &lt; &quot;&lt;b&gt;&quot;\n  ^</pre>"
        );
        assert_eq!(excerpt("x\n", 2, 1).into_string(), "");
    }
}
