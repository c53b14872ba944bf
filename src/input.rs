//! A command's input file: read whole, `-` being standard input, and named in messages.

use std::io::Read;
use std::path::Path;

/// The text of `path`, or of standard input for `-`.
pub fn read(path: &Path) -> std::io::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map(|_| text)
    } else {
        std::fs::read_to_string(path)
    }
}

/// A path as messages name it; `-` is standard input.
pub fn shown(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    }
}
