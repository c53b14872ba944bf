//! The console's log lines on stderr, through the `log` crate: `defender-console: MESSAGE` (with
//! `LEVEL: ` before warnings and errors), one write per line. Only the console's own records are
//! written, not its libraries'. Structured lines are `KIND key=value ...` ([`fields`]).

use std::fmt::Write as _;
use std::io::Write as _;

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level() && metadata.target().starts_with("defender_console")
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = match record.level() {
            log::Level::Error | log::Level::Warn => format!(
                "defender-console: {}: {}\n",
                record.level().as_str().to_lowercase(),
                record.args()
            ),
            _ => format!("defender-console: {}\n", record.args()),
        };
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

pub fn init() {
    static LOGGER: StderrLogger = StderrLogger;
    // Only fails if a logger is already set, which would be this one.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// `key=value` pairs separated by spaces; a value that is empty or holds a space, a quote, an
/// `=`, a backslash or a control character is written as a JSON string, so that every line
/// splits back into the same pairs.
pub fn fields(pairs: &[(&str, &str)]) -> String {
    let mut line = String::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        let plain = !value.is_empty()
            && !value
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '=' | '\\'));
        if plain {
            let _ = write!(line, "{key}={value}");
        } else {
            let quoted = serde_json::to_string(value).expect("a string always serializes");
            let _ = write!(line, "{key}={quoted}");
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_split_back() {
        for (pairs, want) in [
            (vec![("a", "1"), ("b", "x/y")], "a=1 b=x/y"),
            (vec![("caller", "")], "caller=\"\""),
            (vec![("caller", "a b")], "caller=\"a b\""),
            (vec![("caller", "x=1")], "caller=\"x=1\""),
            (vec![("p", "a\"b\\\n")], "p=\"a\\\"b\\\\\\n\""),
        ] {
            assert_eq!(fields(&pairs), want);
        }
    }
}
