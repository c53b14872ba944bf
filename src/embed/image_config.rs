//! An image's own ENTRYPOINT and CMD, read from `docker image inspect IMAGE` output or from an
//! OCI image configuration (`crane config`, `skopeo inspect --config`): what a container runs
//! when its task definition or Dockerfile does not say.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Launch, normalize_image};

#[derive(Debug, thiserror::Error)]
pub enum ImageConfigError {
    #[error("--image-config {arg:?}: expected IMAGE=FILE")]
    Argument { arg: String },
    #[error("--image-config {image}={}: {source}", path.display())]
    Read {
        image: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--image-config {image}={}: not JSON: {source}", path.display())]
    Json {
        image: String,
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "--image-config {image}={}: {what}; expected the output of `docker image inspect {image}` or an OCI image config",
        path.display()
    )]
    Shape {
        image: String,
        path: PathBuf,
        what: String,
    },
}

/// The `--image-config IMAGE=FILE` arguments, read.
#[derive(Clone, Debug, Default)]
pub struct ImageConfigs {
    /// (normalized image reference, what it runs)
    known: Vec<(String, Launch)>,
}

impl ImageConfigs {
    /// Reads every `IMAGE=FILE` argument.
    pub fn load(args: &[String]) -> Result<ImageConfigs, ImageConfigError> {
        let mut known = Vec::new();
        for arg in args {
            let Some((image, file)) = arg
                .split_once('=')
                .filter(|(i, f)| !i.trim().is_empty() && !f.is_empty())
            else {
                return Err(ImageConfigError::Argument { arg: arg.clone() });
            };
            let path = Path::new(file);
            let text = std::fs::read_to_string(path).map_err(|source| ImageConfigError::Read {
                image: image.into(),
                path: path.into(),
                source,
            })?;
            known.push((normalize_image(image), parse(image, path, &text)?));
        }
        Ok(ImageConfigs { known })
    }

    /// What `image` runs, if its configuration was given (the last one given wins).
    pub fn get(&self, image: &str) -> Option<&Launch> {
        let want = normalize_image(image);
        self.known
            .iter()
            .rev()
            .find(|(name, _)| *name == want)
            .map(|(_, launch)| launch)
    }

    /// The images given, normalized.
    pub fn images(&self) -> impl Iterator<Item = &str> {
        self.known.iter().map(|(name, _)| name.as_str())
    }

    /// Adds what `image` runs, as read elsewhere (`--from-registry`).
    pub fn add(&mut self, image: &str, launch: Launch) {
        self.known.push((normalize_image(image), launch));
    }

    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, Launch)]) -> ImageConfigs {
        ImageConfigs {
            known: pairs
                .iter()
                .map(|(image, launch)| (normalize_image(image), launch.clone()))
                .collect(),
        }
    }
}

/// Reads ENTRYPOINT and CMD from `docker image inspect` output (an array of one object with
/// `Config`), one such object, or an OCI image config (`config`). Missing or null means empty.
pub fn parse(image: &str, path: &Path, text: &str) -> Result<Launch, ImageConfigError> {
    let shape = |what: &str| ImageConfigError::Shape {
        image: image.into(),
        path: path.into(),
        what: what.into(),
    };
    let value: Value = serde_json::from_str(text).map_err(|source| ImageConfigError::Json {
        image: image.into(),
        path: path.into(),
        source,
    })?;
    let object = match &value {
        Value::Array(items) if items.len() == 1 => &items[0],
        Value::Array(items) => {
            return Err(shape(&format!(
                "an array of {} images, expected exactly one",
                items.len()
            )));
        }
        other => other,
    };
    let config = object
        .get("Config")
        .or_else(|| object.get("config"))
        .filter(|c| c.is_object())
        .ok_or_else(|| shape("no \"Config\" (docker) or \"config\" (OCI) object"))?;
    let list = |key: &str| -> Result<Vec<String>, ImageConfigError> {
        match config.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| shape(&format!("{key} holds a non-string")))
                })
                .collect(),
            Some(_) => Err(shape(&format!("{key} is not a list of strings"))),
        }
    };
    Ok(Launch {
        entrypoint: list("Entrypoint")?,
        cmd: list("Cmd")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Launch, String> {
        parse("img", Path::new("f.json"), text).map_err(|e| e.to_string())
    }

    fn launch(entrypoint: &[&str], cmd: &[&str]) -> Launch {
        Launch {
            entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn reads_the_formats_images_are_described_in() {
        let cases = [
            // docker image inspect
            (
                r#"[{"Id": "sha256:1", "Config": {"Entrypoint": ["/docker-entrypoint.sh"], "Cmd": ["nginx", "-g", "daemon off;"]}}]"#,
                launch(&["/docker-entrypoint.sh"], &["nginx", "-g", "daemon off;"]),
            ),
            // null entrypoint, as docker writes it
            (
                r#"[{"Config": {"Entrypoint": null, "Cmd": ["/entrypoint.sh"]}}]"#,
                launch(&[], &["/entrypoint.sh"]),
            ),
            // one object
            (
                r#"{"Config": {"Cmd": ["/bin/sh"]}}"#,
                launch(&[], &["/bin/sh"]),
            ),
            // OCI image config
            (
                r#"{"architecture": "amd64", "os": "linux", "config": {"Entrypoint": ["/app"]}, "rootfs": {}}"#,
                launch(&["/app"], &[]),
            ),
            // neither: an empty launch, which the caller reports
            (r#"{"config": {}}"#, launch(&[], &[])),
        ];
        for (text, want) in cases {
            assert_eq!(parsed(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn says_what_is_wrong_with_a_file() {
        let cases = [
            ("not json", "not JSON"),
            ("[]", "an array of 0 images"),
            (
                r#"[{"Config": {}}, {"Config": {}}]"#,
                "an array of 2 images",
            ),
            (r#"{"Name": "x"}"#, "no \"Config\""),
            (r#"{"Config": {"Cmd": "sh"}}"#, "Cmd is not a list"),
            (
                r#"{"Config": {"Entrypoint": [1]}}"#,
                "Entrypoint holds a non-string",
            ),
        ];
        for (text, want) in cases {
            let e = parsed(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
            assert!(e.contains("--image-config img=f.json"), "{e}");
        }
    }

    #[test]
    fn lookup_normalizes_references_and_the_last_wins() {
        let configs = ImageConfigs::from_pairs(&[
            ("nginx", launch(&["/a"], &[])),
            ("docker.io/library/nginx:latest", launch(&["/b"], &[])),
        ]);
        assert_eq!(configs.get("nginx:latest"), Some(&launch(&["/b"], &[])));
        assert_eq!(configs.get("nginx:1"), None);
    }

    #[test]
    fn arguments_need_an_image_and_a_file() {
        for arg in ["nginx", "=f.json", "nginx="] {
            let e = ImageConfigs::load(&[arg.to_string()]).unwrap_err();
            assert!(matches!(e, ImageConfigError::Argument { .. }), "{arg}: {e}");
        }
    }
}
