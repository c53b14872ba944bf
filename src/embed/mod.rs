//! Embedding the defender where containers start: ECS task definitions (`fargate`) and
//! Dockerfiles (`dockerfile`) are rewritten so that each container's process starts under
//! `defender run`; `image_config` reads an image's own ENTRYPOINT/CMD where the definition does
//! not spell them out, `registry` reads them from the registry instead; `install` puts the binary where a container can run it.
//!
//! Rewriting is pure (text in, text out, plus warnings): reading files and printing is `main`'s.

pub mod dockerfile;
pub mod fargate;
pub mod image_config;
pub mod install;
pub mod registry;

use std::path::{Path, PathBuf};

use crate::cli::{DockerfileEmbedArgs, FargateEmbedArgs};
use crate::input;
use dockerfile::DockerfileError;
use fargate::{ConsoleCa, FargateError, Selection, Token};
use image_config::{ImageConfigError, ImageConfigs};
use registry::RegistryError;

/// The directory a protected container finds the defender in: a task volume the carrier
/// container fills (Fargate), or the image itself (Dockerfile).
pub const BINARY_DIR: &str = "/opt/defender";
/// The defender binary in a protected container.
pub const BINARY: &str = "/opt/defender/defender";
/// Where a carrier image (`Dockerfile.example`'s first stage) holds the binary.
pub const CARRIER_BINARY: &str = "/defender";

/// What an embedding command prints: the rewritten text (stdout) and warnings (stderr).
#[derive(Debug)]
pub struct Output {
    pub text: String,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("{}: {source}", input::shown(path))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", input::shown(path))]
    Fargate { path: PathBuf, source: FargateError },
    #[error("{}: {source}", input::shown(path))]
    Dockerfile {
        path: PathBuf,
        source: DockerfileError,
    },
    #[error(transparent)]
    ImageConfig(#[from] ImageConfigError),
    #[error("--console-ca {}: {source}", path.display())]
    ConsoleCaRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--wait-for-console {0}: expected a positive number of seconds")]
    WaitForConsole(f64),
    #[error("--console-ca {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it", path.display())]
    ConsoleCaNotPem { path: PathBuf },
    #[error("--from-registry: {0}")]
    Registry(#[from] RegistryError),
}

/// `defender fargate embed`.
pub fn fargate_embed(args: &FargateEmbedArgs) -> Result<Output, EmbedError> {
    if let Some(seconds) = args.wait_for_console
        && !(seconds.is_finite() && seconds > 0.0)
    {
        return Err(EmbedError::WaitForConsole(seconds));
    }
    let path = &args.task_definition;
    let text = read_input(path)?;
    let mut images = ImageConfigs::load(&args.image_config)?;
    if args.from_registry {
        read_registry(&text, args, &mut images)?;
    }
    let opts = fargate::Options {
        console: args.console.clone(),
        token: args
            .token
            .clone()
            .map(Token::Plain)
            .or_else(|| args.token_secret.clone().map(Token::Secret)),
        console_ca: match (&args.console_ca, &args.console_ca_secret) {
            (Some(path), _) => Some(ConsoleCa::Pem(read_pem(path)?)),
            (None, arn) => arn.clone().map(ConsoleCa::Secret),
        },
        wait_for_console: args.wait_for_console,
        selection: Selection::new(args.exclude.clone(), args.only.clone()),
        defender_image: args.defender_image.clone(),
        images,
    };
    let embedded = fargate::embed(&text, &opts).map_err(|source| EmbedError::Fargate {
        path: path.clone(),
        source,
    })?;
    Ok(Output {
        text: embedded.to_json(),
        warnings: embedded.warnings,
    })
}

/// Reads from their registries the images whose containers set no entryPoint and that no
/// `--image-config` describes.
fn read_registry(
    task_definition: &str,
    args: &FargateEmbedArgs,
    images: &mut ImageConfigs,
) -> Result<(), RegistryError> {
    let credentials =
        registry::Credentials::load(args.registry_token.as_deref(), &args.registry_user)?;
    let mut client = registry::Client::new(credentials);
    // Containers left alone (`--exclude`, `--only`) keep their definition: nothing to read.
    let selection = Selection::new(args.exclude.clone(), args.only.clone());
    for image in registry::images_without_entry_point(task_definition, |n| selection.protects(n)) {
        if images.get(&image).is_none() {
            let config = client.image_config(&image)?;
            images.add(&image, config.launch());
        }
    }
    Ok(())
}

/// `defender dockerfile embed`.
pub fn dockerfile_embed(args: &DockerfileEmbedArgs) -> Result<Output, EmbedError> {
    let opts = dockerfile::Options {
        defender_image: args.defender_image.clone(),
        images: ImageConfigs::load(&args.image_config)?,
    };
    let path = &args.file;
    let embedded =
        dockerfile::embed(&read_input(path)?, &opts).map_err(|source| EmbedError::Dockerfile {
            path: path.clone(),
            source,
        })?;
    let warnings = if embedded.changed {
        Vec::new()
    } else {
        vec![format!(
            "{}: already starts under the defender; unchanged",
            input::shown(path)
        )]
    };
    Ok(Output {
        text: embedded.text,
        warnings,
    })
}

/// The CA certificates of `--console-ca`, as the text the definition carries.
fn read_pem(path: &Path) -> Result<String, EmbedError> {
    let text = std::fs::read_to_string(path).map_err(|source| EmbedError::ConsoleCaRead {
        path: path.into(),
        source,
    })?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(EmbedError::ConsoleCaNotPem { path: path.into() });
    }
    Ok(text)
}

/// A file's text, or standard input's for `-`.
fn read_input(path: &Path) -> Result<String, EmbedError> {
    input::read(path).map_err(|source| EmbedError::Read {
        path: path.into(),
        source,
    })
}

/// What a container runs: its ENTRYPOINT followed by its CMD, as Docker composes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Launch {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

impl Launch {
    /// Whether this already starts under a defender (`…/defender run …`), so that embedding
    /// twice changes nothing.
    pub fn is_protected(&self) -> bool {
        let argv: Vec<&str> = self
            .entrypoint
            .iter()
            .chain(&self.cmd)
            .map(String::as_str)
            .collect();
        matches!(argv.as_slice(), [program, "run", ..] if is_defender(program))
    }

    pub fn is_empty(&self) -> bool {
        self.entrypoint.is_empty() && self.cmd.is_empty()
    }
}

/// Whether `program` names a defender binary, wherever it is.
fn is_defender(program: &str) -> bool {
    program.rsplit('/').next() == Some("defender")
}

/// The ENTRYPOINT that starts `entrypoint` under the defender; CMD stays as it is, so that what
/// ECS or `docker run` pass as the command still reaches the original entrypoint.
pub fn protected_entrypoint(entrypoint: &[String]) -> Vec<String> {
    [BINARY, "run", "--"]
        .into_iter()
        .map(str::to_string)
        .chain(entrypoint.iter().cloned())
        .collect()
}

/// The canonical form of an image reference, so that `nginx`, `nginx:latest` and
/// `docker.io/library/nginx:latest` name the same image when `--image-config` is looked up.
pub fn normalize_image(reference: &str) -> String {
    let mut name = reference.trim();
    for registry in ["docker.io/", "index.docker.io/", "registry-1.docker.io/"] {
        if let Some(rest) = name.strip_prefix(registry) {
            name = rest.strip_prefix("library/").unwrap_or(rest);
        }
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || name.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn protection_is_recognized_wherever_the_binary_is() {
        let cases: &[(&[&str], &[&str], bool)] = &[
            (&["/opt/defender/defender", "run", "--", "/app"], &[], true),
            (
                &["/defender", "run", "--policy", "/p", "--"],
                &["/app"],
                true,
            ),
            (&[], &["defender", "run", "--", "/app"], true),
            (&["/opt/defender/defender", "policy", "check"], &[], false),
            (&["/app/defender-proxy", "run"], &[], false),
            (&["/app"], &["run"], false),
            (&[], &[], false),
        ];
        for (entrypoint, cmd, want) in cases {
            let l = Launch {
                entrypoint: strings(entrypoint),
                cmd: strings(cmd),
            };
            assert_eq!(l.is_protected(), *want, "{l:?}");
        }
    }

    #[test]
    fn image_references_are_normalized() {
        let cases = [
            ("nginx", "nginx:latest"),
            ("nginx:1.27", "nginx:1.27"),
            ("docker.io/library/nginx", "nginx:latest"),
            ("docker.io/matthewabq/app", "matthewabq/app:latest"),
            ("localhost:5000/app", "localhost:5000/app:latest"),
            ("localhost:5000/app:2", "localhost:5000/app:2"),
            ("app@sha256:abc", "app@sha256:abc"),
            (
                "1111.dkr.ecr.us-west-2.amazonaws.com/web",
                "1111.dkr.ecr.us-west-2.amazonaws.com/web:latest",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_image(input), want, "{input}");
        }
    }

    #[test]
    fn the_protected_entrypoint_keeps_the_original_after_the_separator() {
        assert_eq!(
            protected_entrypoint(&strings(&["/entrypoint.sh", "-x"])),
            strings(&[
                "/opt/defender/defender",
                "run",
                "--",
                "/entrypoint.sh",
                "-x"
            ])
        );
    }
}
