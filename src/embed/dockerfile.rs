//! `defender dockerfile embed`: rewrites a Dockerfile so that the image its final stage builds
//! starts under `defender run`, and copies the binary into it. Everything else stays byte for byte.
//!
//! Docker's rules, followed here: the final stage's config is its base's (an earlier stage, an
//! external image, or `scratch`) changed by its own instructions in order; a shell form
//! `ENTRYPOINT x`/`CMD x` means `SHELL + ["x"]` (`/bin/sh -c x`); an ENTRYPOINT resets the CMD
//! inherited from the base unless the stage set a CMD before it. So:
//! - the final stage has an ENTRYPOINT: that line becomes the exec form with the defender in
//!   front (the shell form keeps its meaning as `defender run -- /bin/sh -c x`), and CMD is
//!   untouched;
//! - it has none: the inherited ENTRYPOINT (and, when the stage sets no CMD, the inherited CMD,
//!   which the new ENTRYPOINT would reset) are written at the end of the stage; an external
//!   base's come from `--image-config`, or the command fails saying so.
//!
//! Instructions are read as Docker's parser reads them: parser directives (`# escape=`),
//! comments, line continuations, and heredocs (`RUN <<EOF`), whose bodies are not instructions.

use std::ops::Range;

use super::image_config::ImageConfigs;
use super::{BINARY, CARRIER_BINARY, Launch, protected_entrypoint};

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Copy the binary from this (carrier) image instead of from `defender` in the build context.
    pub defender_image: Option<String>,
    pub images: ImageConfigs,
}

#[derive(Debug, thiserror::Error)]
pub enum DockerfileError {
    #[error("no FROM instruction: not a Dockerfile")]
    NoStage,
    #[error("line {line}: {what}")]
    Syntax { line: usize, what: String },
    #[error(
        "the final stage (line {line}) sets no ENTRYPOINT{and_cmd}, so it runs what the base image \
         {image} has, which the Dockerfile does not show: pass --image-config {image}=FILE, FILE \
         being the output of `docker image inspect {image}` (or its OCI config), or give the final \
         stage an ENTRYPOINT"
    )]
    NeedsImageConfig {
        line: usize,
        image: String,
        and_cmd: &'static str,
    },
    #[error("the final stage (line {line}) starts nothing: it has neither ENTRYPOINT nor CMD")]
    NothingToRun { line: usize },
}

/// The rewritten Dockerfile; `changed` is false when it already started under the defender.
#[derive(Debug)]
pub struct Embedded {
    pub text: String,
    pub changed: bool,
}

/// One instruction: a logical line, possibly spread over several physical ones.
#[derive(Debug)]
struct Instruction {
    /// Upper-cased.
    keyword: String,
    /// The rest of the logical line, continuations joined.
    args: String,
    /// Physical lines (0-based), the heredoc bodies included.
    lines: Range<usize>,
}

impl Instruction {
    /// 1-based, for messages.
    fn line(&self) -> usize {
        self.lines.start + 1
    }
}

/// A build stage: its FROM and the instructions after it.
#[derive(Debug)]
struct Stage {
    base: String,
    /// Lower-cased, as Docker compares stage names.
    name: Option<String>,
    from: usize,
    body: Range<usize>,
}

/// The config a stage's image has at some point. `None`: not known, because it comes from an
/// external image whose config was not given (`unknown_base`).
#[derive(Clone, Debug)]
struct Config {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    shell: Vec<String>,
    unknown_base: Option<String>,
}

pub fn embed(text: &str, opts: &Options) -> Result<Embedded, DockerfileError> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let instructions = parse(&lines);
    let stages = stages(&instructions);
    let last = stages.last().ok_or(DockerfileError::NoStage)?;
    let inherited = base_config(&stages, stages.len() - 1, &instructions, opts)?;
    let body = &instructions[last.body.clone()];
    let at_end = apply(inherited.clone(), body)?;

    let copy = match &opts.defender_image {
        Some(image) => format!("COPY --from={image} {CARRIER_BINARY} {BINARY}"),
        None => format!("COPY defender {BINARY}"),
    };
    let mut new_lines = vec![
        "# Start under the runtime defense (added by `defender dockerfile embed`).".to_string(),
        copy,
    ];
    // What the image runs. A stage with an ENTRYPOINT of its own knows it (and its CMD: set in
    // the stage, or reset by the ENTRYPOINT); otherwise it comes from the base.
    let own = body.iter().rposition(|i| i.keyword == "ENTRYPOINT");
    let sets_cmd = body.iter().any(|i| i.keyword == "CMD");
    let from_line = instructions[last.from].line();
    let needs = |and_cmd| DockerfileError::NeedsImageConfig {
        line: from_line,
        image: at_end.unknown_base.clone().unwrap_or_default(),
        and_cmd,
    };
    let launch = Launch {
        entrypoint: at_end
            .entrypoint
            .clone()
            .ok_or_else(|| needs(if sets_cmd { "" } else { " and no CMD" }))?,
        cmd: at_end.cmd.clone().ok_or_else(|| needs(" and no CMD"))?,
    };
    if launch.is_empty() {
        return Err(DockerfileError::NothingToRun { line: from_line });
    }
    if launch.is_protected() {
        return Ok(Embedded {
            text: text.to_string(),
            changed: false,
        });
    }
    new_lines.push(exec_form(
        "ENTRYPOINT",
        &protected_entrypoint(&launch.entrypoint),
    ));
    let edit = match own {
        // The stage's own ENTRYPOINT: rewritten where it is; its CMD is the stage's business.
        Some(p) => body[p].lines.clone(),
        // Inherited: written at the end of the stage, with the CMD the new ENTRYPOINT resets.
        None => {
            if !sets_cmd && !launch.cmd.is_empty() {
                new_lines.push(exec_form("CMD", &launch.cmd));
            }
            let end = body
                .last()
                .map_or(instructions[last.from].lines.end, |i| i.lines.end);
            end..end
        }
    };
    Ok(Embedded {
        text: splice(&lines, edit, &new_lines),
        changed: true,
    })
}

/// `KEYWORD ["a", "b"]`, as Docker writes the exec form.
fn exec_form(keyword: &str, argv: &[String]) -> String {
    let items: Vec<String> = argv
        .iter()
        .map(|a| serde_json::to_string(a).expect("a string always serializes"))
        .collect();
    format!("{keyword} [{}]", items.join(", "))
}

/// `lines` with the physical lines in `remove` replaced by `insert` (which may be an insertion
/// at an empty range), line endings following the file's.
fn splice(lines: &[&str], remove: Range<usize>, insert: &[String]) -> String {
    let eol = if lines.first().is_some_and(|l| l.ends_with("\r\n")) {
        "\r\n"
    } else {
        "\n"
    };
    let mut out = String::new();
    for line in &lines[..remove.start] {
        out.push_str(line);
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push_str(eol);
    }
    for line in insert {
        out.push_str(line);
        out.push_str(eol);
    }
    for line in &lines[remove.end..] {
        out.push_str(line);
    }
    out
}

/// The config a stage starts from: its base stage's at the end, `scratch`'s (nothing), or an
/// external image's (from `--image-config`, else unknown).
fn base_config(
    stages: &[Stage],
    index: usize,
    instructions: &[Instruction],
    opts: &Options,
) -> Result<Config, DockerfileError> {
    let stage = &stages[index];
    let base = stage.base.to_ascii_lowercase();
    if let Some(parent) = stages[..index]
        .iter()
        .rposition(|s| s.name.as_deref() == Some(base.as_str()))
    {
        let start = base_config(stages, parent, instructions, opts)?;
        return apply(start, &instructions[stages[parent].body.clone()]);
    }
    let shell = vec!["/bin/sh".to_string(), "-c".to_string()];
    if base == "scratch" {
        return Ok(Config {
            entrypoint: Some(Vec::new()),
            cmd: Some(Vec::new()),
            shell,
            unknown_base: None,
        });
    }
    Ok(match opts.images.get(&stage.base) {
        Some(launch) => Config {
            entrypoint: Some(launch.entrypoint.clone()),
            cmd: Some(launch.cmd.clone()),
            shell,
            unknown_base: None,
        },
        None => Config {
            entrypoint: None,
            cmd: None,
            shell,
            unknown_base: Some(stage.base.clone()),
        },
    })
}

/// `config` changed by a stage's instructions, in order.
fn apply(mut config: Config, body: &[Instruction]) -> Result<Config, DockerfileError> {
    let mut cmd_set = false;
    for i in body {
        match i.keyword.as_str() {
            "CMD" => {
                config.cmd = Some(command(&i.args, &config.shell));
                cmd_set = true;
            }
            "ENTRYPOINT" => {
                config.entrypoint = Some(command(&i.args, &config.shell));
                if !cmd_set {
                    config.cmd = Some(Vec::new());
                }
            }
            "SHELL" => {
                config.shell = json_array(&i.args).ok_or_else(|| DockerfileError::Syntax {
                    line: i.line(),
                    what: "SHELL needs a JSON array of strings".into(),
                })?;
            }
            _ => {}
        }
    }
    Ok(config)
}

/// The argv of a CMD or ENTRYPOINT: the exec form when the arguments are a JSON array of
/// strings, otherwise (as Docker does) the shell form.
fn command(args: &str, shell: &[String]) -> Vec<String> {
    json_array(args).unwrap_or_else(|| {
        let mut argv = shell.to_vec();
        argv.push(args.to_string());
        argv
    })
}

fn json_array(args: &str) -> Option<Vec<String>> {
    if !args.starts_with('[') {
        return None;
    }
    serde_json::from_str(args).ok()
}

/// The stages: each FROM and the instructions up to the next one.
fn stages(instructions: &[Instruction]) -> Vec<Stage> {
    let froms: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, i)| i.keyword == "FROM")
        .map(|(n, _)| n)
        .collect();
    froms
        .iter()
        .enumerate()
        .map(|(k, &from)| {
            let end = froms.get(k + 1).copied().unwrap_or(instructions.len());
            // FROM [--platform=...] image [AS name]
            let mut words = instructions[from]
                .args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"));
            let base = words.next().unwrap_or_default().to_string();
            let name = match (words.next(), words.next()) {
                (Some(kw), Some(name)) if kw.eq_ignore_ascii_case("as") => {
                    Some(name.to_ascii_lowercase())
                }
                _ => None,
            };
            Stage {
                base,
                name,
                from,
                body: from + 1..end,
            }
        })
        .collect()
}

/// Reads the instructions as Docker's parser does.
fn parse(lines: &[&str]) -> Vec<Instruction> {
    let content = |i: usize| lines[i].trim_end_matches(['\n', '\r']);
    let is_blank_or_comment = |i: usize| {
        let t = content(i).trim_start();
        t.is_empty() || t.starts_with('#')
    };
    let mut escape = '\\';
    let mut i = 0;
    // Parser directives: `# key=value` lines at the very top.
    while i < lines.len() {
        let Some((key, value)) = directive(content(i)) else {
            break;
        };
        if key.eq_ignore_ascii_case("escape")
            && let Some(c) = value.chars().next()
        {
            escape = c;
        }
        i += 1;
    }
    let mut out = Vec::new();
    while i < lines.len() {
        if is_blank_or_comment(i) {
            i += 1;
            continue;
        }
        let start = i;
        let mut logical = String::new();
        loop {
            let line = content(i).trim_end();
            match line.strip_suffix(escape) {
                Some(head) => {
                    logical.push_str(head);
                    i += 1;
                    // Comments and empty lines inside a continuation are dropped.
                    while i < lines.len() && is_blank_or_comment(i) {
                        i += 1;
                    }
                    if i == lines.len() {
                        break;
                    }
                }
                None => {
                    logical.push_str(line);
                    i += 1;
                    break;
                }
            }
        }
        let logical = logical.trim();
        let (keyword, args) = logical
            .split_once(char::is_whitespace)
            .unwrap_or((logical, ""));
        let keyword = keyword.to_ascii_uppercase();
        if matches!(keyword.as_str(), "RUN" | "COPY" | "ADD") {
            for (word, strip_tabs) in heredocs(args) {
                while i < lines.len() {
                    let body = content(i);
                    let body = if strip_tabs {
                        body.trim_start_matches('\t')
                    } else {
                        body
                    };
                    i += 1;
                    if body == word {
                        break;
                    }
                }
            }
        }
        out.push(Instruction {
            keyword,
            args: args.trim().to_string(),
            lines: start..i,
        });
    }
    out
}

/// `# key=value`, a parser directive.
fn directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim().strip_prefix('#')?;
    let (key, value) = rest.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then(|| (key, value.trim()))
}

/// The heredocs an instruction opens (`<<EOF`, `<<-EOF`, `<<"EOF"`): each terminating word, and
/// whether leading tabs are stripped before comparing.
fn heredocs(args: &str) -> Vec<(String, bool)> {
    let mut found = Vec::new();
    let mut rest = args;
    while let Some(at) = rest.find("<<") {
        rest = &rest[at + 2..];
        let strip_tabs = rest.starts_with('-');
        let after = rest.strip_prefix('-').unwrap_or(rest);
        let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'');
        let word_start = after.strip_prefix(|c| Some(c) == quote).unwrap_or(after);
        let word: String = word_start
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if word
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        {
            rest = &word_start[word.len()..];
            found.push((word, strip_tabs));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instructions(text: &str) -> Vec<(String, String, Range<usize>)> {
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        parse(&lines)
            .into_iter()
            .map(|i| (i.keyword, i.args, i.lines))
            .collect()
    }

    #[test]
    fn reads_instructions_like_docker() {
        let text = "# syntax=docker/dockerfile:1\n\
                    # escape=\\\n\
                    \n\
                    FROM  alpine AS base\n\
                    # a comment\n\
                    run apk add \\\n\
                    # dropped inside a continuation\n\
                    \x20   curl\n\
                    RUN <<EOF cat >/x && cat <<-'END'\n\
                    ENTRYPOINT [\"/not-an-instruction\"]\n\
                    EOF\n\
                    \tCMD also not\n\
                    \tEND\n\
                    ENTRYPOINT [\"/app\"]";
        let got = instructions(text);
        let want = vec![
            ("FROM".into(), "alpine AS base".into(), 3..4),
            ("RUN".into(), "apk add     curl".into(), 5..8),
            ("RUN".into(), "<<EOF cat >/x && cat <<-'END'".into(), 8..13),
            ("ENTRYPOINT".into(), "[\"/app\"]".into(), 13..14),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn the_escape_directive_changes_the_continuation_character() {
        let got = instructions("# escape=`\nFROM x\nRUN a `\n  b\nCMD c\\\n");
        let kinds: Vec<(&str, &str)> = got
            .iter()
            .map(|(k, a, _)| (k.as_str(), a.as_str()))
            .collect();
        assert_eq!(kinds, [("FROM", "x"), ("RUN", "a   b"), ("CMD", "c\\")]);
    }

    #[test]
    fn heredoc_words_are_found() {
        let cases: &[(&str, &[(&str, bool)])] = &[
            ("<<EOF", &[("EOF", false)]),
            ("<<-\"END\" sh", &[("END", true)]),
            ("<<A cat && <<'B' cat", &[("A", false), ("B", false)]),
            ("echo $((1<<2))", &[]),
            ("cat a << b", &[]),
        ];
        for (args, want) in cases {
            let want: Vec<(String, bool)> = want.iter().map(|(w, t)| (w.to_string(), *t)).collect();
            assert_eq!(heredocs(args), want, "{args}");
        }
    }

    #[test]
    fn commands_take_the_exec_or_the_shell_form() {
        let sh = vec!["/bin/sh".to_string(), "-c".to_string()];
        let cases: &[(&str, &[&str])] = &[
            (r#"["/app", "-x"]"#, &["/app", "-x"]),
            ("[]", &[]),
            ("/app -x", &["/bin/sh", "-c", "/app -x"]),
            // not valid JSON: Docker takes it as a shell command
            ("['/app']", &["/bin/sh", "-c", "['/app']"]),
            (r#"["/app", 1]"#, &["/bin/sh", "-c", r#"["/app", 1]"#]),
        ];
        for (args, want) in cases {
            assert_eq!(command(args, &sh), *want, "{args}");
        }
    }
}
