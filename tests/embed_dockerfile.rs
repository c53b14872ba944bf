//! `defender dockerfile embed`: golden files for the exec form, the shell form, a final stage with
//! only CMD (on `scratch` and on an external image), multi-stage builds and inheritance between
//! stages; idempotence; the error that says what to pass; Dockerfile.example being the tool's
//! own output.

mod common;

use common::{defender_cli, defender_cli_ok, golden, repo_path, stderr, stdout};

const DIR: &str = "tests/golden/dockerfile";

/// `defender dockerfile embed FILE ARGS`, which must succeed: (stdout, stderr).
fn embed_ok(file: &str, args: &[&str]) -> (String, String) {
    defender_cli_ok(&[&["dockerfile", "embed", file], args].concat(), None)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_path(relative)).unwrap()
}

/// Each case: the Dockerfile, the options, and the lines the protected file must hold.
fn cases() -> Vec<(&'static str, Vec<&'static str>, Vec<&'static str>)> {
    vec![
        (
            "exec-form",
            vec![],
            vec![
                "COPY defender /opt/defender/defender",
                r#"ENTRYPOINT ["/opt/defender/defender", "run", "--", "node", "server.js"]"#,
                r#"CMD ["--port", "8080"]"#,
            ],
        ),
        (
            "shell-form",
            vec![],
            vec![
                // SHELL decides the shell of the shell form; continuation lines are joined.
                r#"ENTRYPOINT ["/opt/defender/defender", "run", "--", "/bin/bash", "-o", "pipefail", "-c", "exec gunicorn     --bind 0.0.0.0:8000 app:wsgi"]"#,
                "\tENTRYPOINT [\"/not/this/one\"]",
            ],
        ),
        (
            "cmd-only",
            vec![],
            vec![
                r#"CMD ["/server", "--listen", ":8080"]"#,
                r#"ENTRYPOINT ["/opt/defender/defender", "run", "--"]"#,
            ],
        ),
        (
            "cmd-only-external",
            vec![
                "--image-config",
                "nginx:1.27=tests/golden/dockerfile/nginx.inspect.json",
            ],
            vec![
                "CMD nginx -g 'daemon off;' -e stderr",
                r#"ENTRYPOINT ["/opt/defender/defender", "run", "--", "/docker-entrypoint.sh"]"#,
            ],
        ),
        (
            "multi-stage",
            vec!["--defender-image", "registry.example/defender:0.1.0"],
            vec![
                r#"ENTRYPOINT ["/out/app"]"#,
                "COPY --from=registry.example/defender:0.1.0 /defender /opt/defender/defender",
                r#"ENTRYPOINT ["/opt/defender/defender", "run", "--", "/app"]"#,
                r#"CMD ["serve", "--addr", ":8080"]"#,
            ],
        ),
        (
            "inherited",
            vec![],
            vec![
                r#"ENTRYPOINT ["/usr/bin/tini", "--"]"#,
                r#"ENTRYPOINT ["/opt/defender/defender", "run", "--", "/usr/bin/tini", "--"]"#,
                // The new ENTRYPOINT would reset the inherited CMD: written again.
                r#"CMD ["/app/run.sh"]"#,
            ],
        ),
    ]
}

#[test]
fn protected_dockerfiles_are_what_the_tool_makes() {
    for (name, args, lines) in cases() {
        let input = format!("{DIR}/{name}.Dockerfile");
        let (out, _) = embed_ok(&input, &args);
        golden(&format!("{DIR}/{name}.protected.Dockerfile"), &out);
        for line in &lines {
            assert!(
                out.lines().any(|l| l == *line),
                "{name}: no line {line:?} in:\n{out}"
            );
        }
        // One ENTRYPOINT rewritten or added, the original lines otherwise kept in order.
        let original = read(&input);
        let kept: Vec<&str> = out
            .lines()
            .filter(|l| original.lines().any(|o| o == *l))
            .collect();
        let dropped: Vec<&str> = original.lines().filter(|o| !kept.contains(o)).collect();
        assert!(
            dropped
                .iter()
                .all(|l| l.to_ascii_uppercase().starts_with("ENTRYPOINT")
                    || l.starts_with("    --bind")),
            "{name}: lost {dropped:?}"
        );
    }
}

#[test]
fn the_final_stage_is_protected_where_it_starts() {
    // The final stage's last ENTRYPOINT is the one rewritten, not a build stage's.
    let (out, _) = embed_ok(&format!("{DIR}/multi-stage.Dockerfile"), &[]);
    let entrypoints: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("ENTRYPOINT"))
        .collect();
    assert_eq!(
        entrypoints,
        [
            r#"ENTRYPOINT ["/out/app"]"#,
            r#"ENTRYPOINT ["/opt/defender/defender", "run", "--", "/app"]"#
        ]
    );
    // The COPY is in the final stage, just before its ENTRYPOINT.
    let lines: Vec<&str> = out.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("ENTRYPOINT [\"/opt/defender"))
        .unwrap();
    assert_eq!(lines[at - 1], "COPY defender /opt/defender/defender");
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM")).unwrap();
    assert!(last_from < at - 1);
}

#[test]
fn embedding_a_protected_dockerfile_changes_nothing() {
    let mut files: Vec<String> = cases()
        .iter()
        .map(|(name, _, _)| format!("{DIR}/{name}.protected.Dockerfile"))
        .collect();
    files.push("Dockerfile.example".into());
    for file in files {
        let (out, err) = embed_ok(&file, &[]);
        assert_eq!(out, read(&file), "{file}");
        assert!(err.contains("already starts under the defender"), "{err}");
    }
}

#[test]
fn dockerfile_example_is_what_the_tool_makes_of_its_unprotected_form() {
    let example = read("Dockerfile.example");
    let marker = "# Start under the runtime defense (added by `defender dockerfile embed`).";
    let at = example.find(marker).expect("the embedded block");
    let unprotected = &example[..at];
    let out = defender_cli(
        &["dockerfile", "embed", "--defender-image", "defender"],
        Some(unprotected),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), example);
}

#[test]
fn a_base_image_the_dockerfile_does_not_show_needs_its_config() {
    let out = defender_cli(
        &[
            "dockerfile",
            "embed",
            &format!("{DIR}/no-entrypoint.Dockerfile"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).is_empty());
    let err = stderr(&out);
    for part in [
        "no-entrypoint.Dockerfile: the final stage (line 1) sets no ENTRYPOINT",
        "base image python:3.12",
        "--image-config python:3.12=FILE",
        "docker image inspect python:3.12",
    ] {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }

    // Given the config, the image's own ENTRYPOINT (none here) goes after the defender.
    let config = r#"[{"Config": {"Entrypoint": null, "Cmd": ["python3"]}}]"#;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("python.json");
    std::fs::write(&file, config).unwrap();
    let arg = format!("python:3.12={}", file.display());
    let (out, _) = embed_ok(
        &format!("{DIR}/no-entrypoint.Dockerfile"),
        &["--image-config", &arg],
    );
    assert!(
        out.ends_with(
            "CMD [\"python\", \"/app.py\"]\n# Start under the runtime defense (added by `defender dockerfile embed`).\n\
             COPY defender /opt/defender/defender\nENTRYPOINT [\"/opt/defender/defender\", \"run\", \"--\"]\n"
        ),
        "{out}"
    );
}

#[test]
fn bad_dockerfiles_are_refused_with_the_reason() {
    let cases = [
        ("RUN echo\n", "no FROM instruction"),
        ("FROM scratch\nCOPY app /app\n", "starts nothing"),
        ("FROM scratch\nENTRYPOINT []\n", "starts nothing"),
        (
            "FROM scratch\nSHELL /bin/sh\nCMD x\n",
            "line 2: SHELL needs a JSON array",
        ),
    ];
    for (text, want) in cases {
        let out = defender_cli(&["dockerfile", "embed", "-"], Some(text));
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = stderr(&out);
        assert!(err.contains(want), "{text}: want {want:?} in {err}");
        assert!(err.contains("standard input"), "{err}");
    }
}

#[test]
fn reads_standard_input_and_keeps_crlf_line_ends() {
    let text = "FROM scratch\r\nCOPY app /app\r\nENTRYPOINT /app\r\n";
    let out = defender_cli(&["dockerfile", "embed"], Some(text));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "FROM scratch\r\nCOPY app /app\r\n\
         # Start under the runtime defense (added by `defender dockerfile embed`).\r\n\
         COPY defender /opt/defender/defender\r\n\
         ENTRYPOINT [\"/opt/defender/defender\", \"run\", \"--\", \"/bin/sh\", \"-c\", \"/app\"]\r\n"
    );
}
