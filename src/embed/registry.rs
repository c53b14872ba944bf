//! Image configuration read from the registry (`fargate embed --from-registry`), as the
//! vendors' tools do: the OCI distribution API (manifest or index → the linux/amd64 manifest →
//! the config blob, each digest verified), Bearer token and Basic auth, credentials from the
//! Docker config file or `--registry-token`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Launch;

/// What a manifest request accepts: a multi-platform list (OCI index, Docker manifest list) or
/// one platform's manifest (OCI, Docker v2 schema 2); registries answer with the first they hold.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
                      application/vnd.docker.distribution.manifest.list.v2+json, \
                      application/vnd.oci.image.manifest.v1+json, \
                      application/vnd.docker.distribution.manifest.v2+json";
const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// The platform Fargate runs by default; an index is read for its linux/amd64 entry.
const OS: &str = "linux";
const ARCHITECTURE: &str = "amd64";
/// How long one registry request may take (connection, redirects and body).
const TIMEOUT: Duration = Duration::from_secs(60);
/// The user `--registry-token` is sent as by default: ECR's (`aws ecr get-login-password`).
pub const DEFAULT_USER: &str = "AWS";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("image {reference:?}: {what}")]
    Reference { reference: String, what: String },
    #[error("{}: {what}", path.display())]
    DockerConfig { path: PathBuf, what: String },
    #[error("{image}: {url}: {source}")]
    Transport {
        image: String,
        url: String,
        source: Box<ureq::Error>,
    },
    #[error(
        "{image}: the registry {registry} refused access (401){}",
        if *had_credentials { ": check the credentials" } else {
            ": no credentials for it in the Docker config file, nor --registry-token"
        }
    )]
    Unauthorized {
        image: String,
        registry: String,
        had_credentials: bool,
    },
    #[error("{image}: no such image in the registry ({url}: 404)")]
    Unknown { image: String, url: String },
    #[error("{image}: {url}: HTTP {status}: {body}")]
    Status {
        image: String,
        url: String,
        status: u16,
        body: String,
    },
    #[error("{image}: {url}: content does not match its digest (got {got})")]
    Digest {
        image: String,
        url: String,
        got: String,
    },
    #[error("{image}: {what}")]
    Shape { image: String, what: String },
}

/// An image reference, `[HOST[:PORT]/]NAME[:TAG][@DIGEST]`, with Docker's defaults: no host is
/// Docker Hub (`docker.io`, whose one-component names are under `library/`), no tag `latest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// As written in the task definition, for messages and the `--image-config` lookup.
    pub image: String,
    pub registry: String,
    pub repository: String,
    /// A tag, or a digest (`sha256:…`) which then wins over any tag.
    pub reference: String,
}

impl Reference {
    pub fn parse(image: &str) -> Result<Reference, RegistryError> {
        let bad = |what: &str| RegistryError::Reference {
            reference: image.into(),
            what: what.into(),
        };
        let (rest, digest) = match image.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (image, None),
        };
        // Docker's rule: the first component is a host when it has a dot or a port, or is
        // `localhost`; `team/app` is a Docker Hub name.
        let (registry, path) = match rest.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path)
            }
            _ => ("docker.io".to_string(), rest),
        };
        let (name, tag) = match path.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
            _ => (path, None),
        };
        if name.is_empty()
            || name.split('/').any(|c| {
                c.is_empty()
                    || !c.chars().all(|ch| {
                        ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch)
                    })
            })
        {
            return Err(bad("the name must be lowercase letters, digits, ._- and /"));
        }
        let repository = if registry == "docker.io" && !name.contains('/') {
            format!("library/{name}")
        } else {
            name.to_string()
        };
        let reference = match (digest, tag) {
            (Some(d), _) => {
                if !is_sha256(d) {
                    return Err(bad("the digest must be sha256: and 64 hex digits"));
                }
                d.to_string()
            }
            (None, Some("")) => return Err(bad("empty tag")),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".to_string(),
        };
        Ok(Reference {
            image: image.into(),
            registry,
            repository,
            reference,
        })
    }

    /// The registry's API root: Docker Hub's API host is not its name; loopback registries are
    /// spoken to in plain HTTP (as Docker allows for them), every other one in HTTPS.
    fn base(&self) -> String {
        let host = match self.registry.as_str() {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            other => other,
        };
        let hostname = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let scheme = if ["localhost", "127.0.0.1", "[::1]"].contains(&hostname) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}/v2/{}", self.repository)
    }
}

fn is_sha256(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

/// `user:password` for Basic auth, and for the token endpoint of a Bearer challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Basic {
    pub user: String,
    pub password: String,
}

impl Basic {
    fn header(&self) -> String {
        format!(
            "Basic {}",
            BASE64.encode(format!("{}:{}", self.user, self.password))
        )
    }
}

/// Where credentials come from: `--registry-token` (for every registry read) wins over the
/// Docker config file's `auths` (per registry).
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    token: Option<Basic>,
    auths: BTreeMap<String, Basic>,
}

impl Credentials {
    /// `--registry-token` as the password of `user`, and the Docker config file
    /// (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; none is no credentials).
    pub fn load(token: Option<&str>, user: &str) -> Result<Credentials, RegistryError> {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|h| !h.is_empty())
                    .map(|h| PathBuf::from(h).join(".docker"))
            });
        let auths = match dir.map(|d| d.join("config.json")) {
            Some(path) => match std::fs::read_to_string(&path) {
                Ok(text) => {
                    parse_docker_config(&text).map_err(|what| RegistryError::DockerConfig {
                        path: path.clone(),
                        what,
                    })?
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
                Err(e) => {
                    return Err(RegistryError::DockerConfig {
                        path,
                        what: e.to_string(),
                    });
                }
            },
            None => BTreeMap::new(),
        };
        Ok(Credentials {
            token: token.map(|password| Basic {
                user: user.into(),
                password: password.trim().into(),
            }),
            auths,
        })
    }

    fn for_registry(&self, registry: &str) -> Option<&Basic> {
        self.token.as_ref().or_else(|| self.auths.get(registry))
    }
}

/// The `auths` of a Docker config file, by registry (`docker login` writes Docker Hub's as
/// `https://index.docker.io/v1/`, others as the host, sometimes with a scheme).
fn parse_docker_config(text: &str) -> Result<BTreeMap<String, Basic>, String> {
    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        auths: BTreeMap<String, Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        auth: Option<String>,
    }
    let file: File = serde_json::from_str(text).map_err(|e| format!("not a Docker config: {e}"))?;
    let mut auths = BTreeMap::new();
    for (key, entry) in file.auths {
        // An entry without `auth` is kept by a credential helper, which is not read.
        let Some(auth) = entry.auth.filter(|a| !a.is_empty()) else {
            continue;
        };
        let decoded = BASE64
            .decode(auth.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
            return Err(format!("auths.{key:?}.auth: not base64 of USER:PASSWORD"));
        };
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let host = host.split('/').next().unwrap_or(host);
        let host = match host {
            "index.docker.io" | "registry-1.docker.io" => "docker.io",
            other => other,
        };
        auths.insert(
            host.to_string(),
            Basic {
                user: user.into(),
                password: password.into(),
            },
        );
    }
    Ok(auths)
}

/// A `WWW-Authenticate` challenge: the scheme and its parameters.
#[derive(Debug, PartialEq, Eq)]
struct Challenge {
    scheme: String,
    params: BTreeMap<String, String>,
}

/// Reads `Bearer realm="…",service="…",scope="repository:a:pull,push"` (quoted values may hold
/// commas).
fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if rest.is_empty() {
            break;
        }
        let (key, after) = rest.split_once('=')?;
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_once(',').unwrap_or((after, "")),
        };
        params.insert(key.trim().to_ascii_lowercase(), value.to_string());
        rest = after;
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// What an image runs and as whom, from its config blob.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    #[serde(default, deserialize_with = "null_is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(default, deserialize_with = "null_is_empty")]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub working_dir: Option<String>,
}

impl ImageConfig {
    pub fn launch(&self) -> Launch {
        Launch {
            entrypoint: self.entrypoint.clone(),
            cmd: self.cmd.clone(),
        }
    }
}

fn null_is_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// The `config` of an image config blob (absent: an image that sets nothing).
fn parse_config(blob: &[u8]) -> Result<ImageConfig, String> {
    #[derive(Deserialize)]
    struct Blob {
        #[serde(default)]
        config: Option<ImageConfig>,
    }
    let blob: Blob =
        serde_json::from_slice(blob).map_err(|e| format!("the image config blob: {e}"))?;
    Ok(blob.config.unwrap_or_default())
}

/// What a manifest request returned.
#[derive(Debug, PartialEq, Eq)]
enum Manifest {
    /// An index: the digest of its linux/amd64 manifest.
    Index { platform: String },
    /// One platform's manifest: the digest of its config blob.
    Image { config: String },
}

/// Classifies a manifest by its `mediaType` (else the response's Content-Type) and picks what
/// to fetch next.
fn parse_manifest(body: &[u8], content_type: &str) -> Result<Manifest, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the manifest is not JSON: {e}"))?;
    let media_type = value
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or_else(|| content_type.split(';').next().unwrap_or("").trim());
    let digest = |v: &Value| {
        v.get("digest")
            .and_then(Value::as_str)
            .filter(|d| is_sha256(d))
            .map(str::to_string)
    };
    if INDEX_TYPES.contains(&media_type) {
        let manifests = value
            .get("manifests")
            .and_then(Value::as_array)
            .ok_or("the index has no manifests")?;
        let platform = |m: &Value, key: &str| {
            m.pointer(&format!("/platform/{key}"))
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string()
        };
        let chosen = manifests
            .iter()
            .find(|m| platform(m, "os") == OS && platform(m, "architecture") == ARCHITECTURE);
        return match chosen {
            Some(m) => Ok(Manifest::Index {
                platform: digest(m).ok_or("the index's linux/amd64 entry has no sha256 digest")?,
            }),
            None => Err(format!(
                "no {OS}/{ARCHITECTURE} image in the index (it has: {})",
                manifests
                    .iter()
                    .map(|m| format!("{}/{}", platform(m, "os"), platform(m, "architecture")))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
    }
    if MANIFEST_TYPES.contains(&media_type) {
        let config = value
            .get("config")
            .and_then(digest)
            .ok_or("the manifest has no config with a sha256 digest")?;
        return Ok(Manifest::Image { config });
    }
    Err(format!(
        "unsupported manifest type {media_type:?} (expected an OCI or Docker v2 manifest or index)"
    ))
}

/// How a challenge is answered: first without credentials, then with them.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Anonymous,
    Credentials,
}

/// Reads image configurations from registries; one per command, so that a token obtained for a
/// repository serves every request to it.
pub struct Client {
    agent: ureq::Agent,
    credentials: Credentials,
    /// The Authorization header that worked, by registry API root.
    authorization: BTreeMap<String, String>,
}

impl Client {
    pub fn new(credentials: Credentials) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(TIMEOUT))
            .user_agent(format!("defender/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Client {
            agent,
            credentials,
            authorization: BTreeMap::new(),
        }
    }

    /// The configuration of `image`'s linux/amd64 variant.
    pub fn image_config(&mut self, image: &str) -> Result<ImageConfig, RegistryError> {
        let r = Reference::parse(image)?;
        let shape = |what: String| RegistryError::Shape {
            image: image.into(),
            what,
        };
        let mut manifest = self.get_manifest(&r, &r.reference)?;
        if let Manifest::Index { platform } = manifest {
            manifest = self.get_manifest(&r, &platform)?;
            if let Manifest::Index { .. } = manifest {
                return Err(shape(
                    "the index's linux/amd64 entry is an index itself".into(),
                ));
            }
        }
        let Manifest::Image { config } = manifest else {
            unreachable!("indexes were followed above")
        };
        let url = format!("{}/blobs/{config}", r.base());
        let (blob, _) = self.get(&r, &url, None)?;
        verify(&r, &url, &config, &blob)?;
        parse_config(&blob).map_err(shape)
    }

    fn get_manifest(&mut self, r: &Reference, reference: &str) -> Result<Manifest, RegistryError> {
        let url = format!("{}/manifests/{reference}", r.base());
        let (body, content_type) = self.get(r, &url, Some(ACCEPT))?;
        // A tag may move; a digest names exactly these bytes.
        if is_sha256(reference) {
            verify(r, &url, reference, &body)?;
        }
        parse_manifest(&body, &content_type).map_err(|what| RegistryError::Shape {
            image: r.image.clone(),
            what: format!("{url}: {what}"),
        })
    }

    /// GET `url`, answering 401 challenges with the weakest authorization that works, then
    /// retrying; the body and Content-Type. An anonymous token comes first: public images
    /// (Docker Hub, GHCR, public ECR) need no credentials, and credentials meant for another
    /// registry would be refused there, so they go only to a registry that refuses anonymous
    /// reading.
    fn get(
        &mut self,
        r: &Reference,
        url: &str,
        accept: Option<&str>,
    ) -> Result<(Vec<u8>, String), RegistryError> {
        let base = r.base();
        let mut authorization = self.authorization.get(&base).cloned();
        let mut answers = [Answer::Anonymous, Answer::Credentials].into_iter();
        loop {
            let mut request = self.agent.get(url);
            if let Some(accept) = accept {
                request = request.header("Accept", accept);
            }
            if let Some(a) = &authorization {
                request = request.header("Authorization", a);
            }
            let mut response = request.call().map_err(|e| transport(r, url, e))?;
            let status = response.status().as_u16();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            if status == 401 {
                let challenge = parse_challenge(&header("www-authenticate"));
                let mut next = None;
                for answer in answers.by_ref() {
                    next = self.answer(r, challenge.as_ref(), answer)?;
                    if next.is_some() {
                        break;
                    }
                }
                if next.is_some() {
                    authorization = next;
                    continue;
                }
            }
            let content_type = header("content-type");
            let body = response
                .body_mut()
                .with_config()
                .limit(16 << 20)
                .read_to_vec()
                .map_err(|e| transport(r, url, e))?;
            return match status {
                200..=299 => {
                    if let Some(a) = authorization {
                        self.authorization.insert(base, a);
                    }
                    Ok((body, content_type))
                }
                401 | 403 => Err(RegistryError::Unauthorized {
                    image: r.image.clone(),
                    registry: r.registry.clone(),
                    had_credentials: self.credentials.for_registry(&r.registry).is_some(),
                }),
                404 => Err(RegistryError::Unknown {
                    image: r.image.clone(),
                    url: url.into(),
                }),
                _ => Err(RegistryError::Status {
                    image: r.image.clone(),
                    url: url.into(),
                    status,
                    body: String::from_utf8_lossy(&body).chars().take(300).collect(),
                }),
            };
        }
    }

    /// The Authorization header that answers a challenge in the way `answer` says, if that way
    /// gives one.
    fn answer(
        &self,
        r: &Reference,
        challenge: Option<&Challenge>,
        answer: Answer,
    ) -> Result<Option<String>, RegistryError> {
        let basic = match answer {
            Answer::Anonymous => None,
            Answer::Credentials => match self.credentials.for_registry(&r.registry) {
                Some(basic) => Some(basic),
                None => return Ok(None),
            },
        };
        let Some(challenge) = challenge.filter(|c| c.scheme == "bearer") else {
            // Basic (ECR), or a challenge we cannot read: the credentials, if any.
            return Ok(basic.map(Basic::header));
        };
        let Some(realm) = challenge.params.get("realm") else {
            return Err(RegistryError::Shape {
                image: r.image.clone(),
                what: "the registry's Bearer challenge names no realm".into(),
            });
        };
        let mut request = self.agent.get(realm);
        if let Some(service) = challenge.params.get("service") {
            request = request.query("service", service);
        }
        let scope = challenge
            .params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| format!("repository:{}:pull", r.repository));
        request = request.query("scope", scope);
        if let Some(b) = basic {
            request = request.header("Authorization", b.header());
        }
        let mut response = request.call().map_err(|e| transport(r, realm, e))?;
        let status = response.status().as_u16();
        if status == 401 || status == 403 {
            return Ok(None);
        }
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| transport(r, realm, e))?;
        if !(200..=299).contains(&status) {
            return Err(RegistryError::Status {
                image: r.image.clone(),
                url: realm.clone(),
                status,
                body: body.chars().take(300).collect(),
            });
        }
        #[derive(Deserialize)]
        struct TokenReply {
            token: Option<String>,
            access_token: Option<String>,
        }
        let reply: TokenReply = serde_json::from_str(&body).map_err(|e| RegistryError::Shape {
            image: r.image.clone(),
            what: format!("{realm}: not a token reply: {e}"),
        })?;
        reply
            .token
            .or(reply.access_token)
            .filter(|t| !t.is_empty())
            .map(|t| Some(format!("Bearer {t}")))
            .ok_or_else(|| RegistryError::Shape {
                image: r.image.clone(),
                what: format!("{realm}: the token reply holds no token"),
            })
    }
}

fn transport(r: &Reference, url: &str, e: ureq::Error) -> RegistryError {
    RegistryError::Transport {
        image: r.image.clone(),
        url: url.into(),
        source: Box::new(e),
    }
}

/// Content fetched by digest must hash to it: a registry, a proxy or a cache could serve other
/// bytes.
fn verify(r: &Reference, url: &str, digest: &str, body: &[u8]) -> Result<(), RegistryError> {
    let got = sha256(body);
    if got == digest {
        Ok(())
    } else {
        Err(RegistryError::Digest {
            image: r.image.clone(),
            url: url.into(),
            got,
        })
    }
}

fn sha256(body: &[u8]) -> String {
    let hash = Sha256::digest(body);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The images of the protected containers (`protected`, by name) of a task definition that set no
/// `entryPoint` (absent, null, `[]` or `[""]`): those whose image decides what they run. Each once, in order; a definition
/// that cannot be read yields none (embedding reports it).
pub fn images_without_entry_point(
    task_definition: &str,
    protected: impl Fn(&str) -> bool,
) -> Vec<String> {
    let Ok(root) = serde_json::from_str::<Value>(task_definition) else {
        return Vec::new();
    };
    let def = root.get("taskDefinition").unwrap_or(&root);
    let mut images: Vec<String> = Vec::new();
    for c in def
        .get("containerDefinitions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let entry_point = c
            .get("entryPoint")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
            .unwrap_or_default();
        let unset = entry_point.is_empty() || entry_point == [""];
        let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
        if let Some(image) = c.get("image").and_then(Value::as_str)
            && unset
            && protected(name)
            && !images.iter().any(|i| i == image)
        {
            images.push(image.to_string());
        }
    }
    images
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_get_docker_defaults() {
        let d = "sha256:".to_string() + &"a".repeat(64);
        let cases = [
            ("nginx", "docker.io", "library/nginx", "latest"),
            ("nginx:1.27", "docker.io", "library/nginx", "1.27"),
            ("team/app", "docker.io", "team/app", "latest"),
            (
                "docker.io/library/nginx:1",
                "docker.io",
                "library/nginx",
                "1",
            ),
            ("localhost/app", "localhost", "app", "latest"),
            ("127.0.0.1:5000/a/b:v2", "127.0.0.1:5000", "a/b", "v2"),
            (
                "1111.dkr.ecr.us-west-2.amazonaws.com/web:3",
                "1111.dkr.ecr.us-west-2.amazonaws.com",
                "web",
                "3",
            ),
            (&format!("ghcr.io/o/app:1@{d}"), "ghcr.io", "o/app", &d),
        ];
        for (image, registry, repository, reference) in cases {
            let r = Reference::parse(image).unwrap();
            assert_eq!(
                (
                    r.registry.as_str(),
                    r.repository.as_str(),
                    r.reference.as_str()
                ),
                (registry, repository, reference),
                "{image}"
            );
        }
    }

    #[test]
    fn bad_references_are_refused() {
        for image in [
            "",
            "App",
            "a//b",
            "a:",
            "a@sha256:12",
            "ghcr.io/",
            "a@md5:x",
        ] {
            assert!(Reference::parse(image).is_err(), "{image}");
        }
    }

    #[test]
    fn the_api_root_is_https_except_on_loopback() {
        let base = |i: &str| Reference::parse(i).unwrap().base();
        assert_eq!(
            base("nginx"),
            "https://registry-1.docker.io/v2/library/nginx"
        );
        assert_eq!(base("127.0.0.1:5000/a"), "http://127.0.0.1:5000/v2/a");
        assert_eq!(base("localhost/a"), "http://localhost/v2/a");
        assert_eq!(
            base("registry.local:5000/a"),
            "https://registry.local:5000/v2/a"
        );
    }

    #[test]
    fn challenges_are_read_with_quoted_commas() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:a:pull,push");
        let c = parse_challenge(r#"Basic realm="https://1111.dkr.ecr.us-west-2.amazonaws.com/",service="ecr.amazonaws.com""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(
            parse_challenge("Bearer realm=x").unwrap().params["realm"],
            "x"
        );
        assert_eq!(parse_challenge(r#"Bearer realm="open"#), None);
    }

    #[test]
    fn docker_config_auths_are_decoded_per_registry() {
        let auth = |s: &str| BASE64.encode(s);
        let text = serde_json::json!({
            "auths": {
                "https://index.docker.io/v1/": {"auth": auth("hub:pw")},
                "127.0.0.1:5000": {"auth": auth("u:p:with:colons")},
                "https://ghcr.io": {"auth": auth("o:t")},
                "helped.example": {},
            },
            "credsStore": "desktop",
        })
        .to_string();
        let auths = parse_docker_config(&text).unwrap();
        let basic = |u: &str, p: &str| Basic {
            user: u.into(),
            password: p.into(),
        };
        assert_eq!(auths["docker.io"], basic("hub", "pw"));
        assert_eq!(auths["127.0.0.1:5000"], basic("u", "p:with:colons"));
        assert_eq!(auths["ghcr.io"], basic("o", "t"));
        assert!(!auths.contains_key("helped.example"));
        let e = parse_docker_config(r#"{"auths": {"h": {"auth": "bm9jb2xvbg=="}}}"#).unwrap_err();
        assert!(e.contains("not base64 of USER:PASSWORD"), "{e}");
    }

    #[test]
    fn the_token_wins_over_the_docker_config() {
        let mut c = Credentials::default();
        c.auths.insert(
            "h".into(),
            Basic {
                user: "u".into(),
                password: "p".into(),
            },
        );
        assert_eq!(c.for_registry("h").unwrap().user, "u");
        assert!(c.for_registry("other").is_none());
        c.token = Some(Basic {
            user: DEFAULT_USER.into(),
            password: "t".into(),
        });
        assert_eq!(c.for_registry("other").unwrap().header(), "Basic QVdTOnQ=");
    }

    #[test]
    fn manifests_lead_to_the_linux_amd64_config() {
        let d = |c: char| "sha256:".to_string() + &c.to_string().repeat(64);
        let index = serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"digest": d('a'), "platform": {"os": "linux", "architecture": "arm64"}},
                {"digest": d('b'), "platform": {"os": "linux", "architecture": "amd64"}},
            ]
        });
        let list = serde_json::json!({
            "manifests": [{"digest": d('c'), "platform": {"os": "linux", "architecture": "amd64"}}]
        });
        let manifest = serde_json::json!({
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"digest": d('e')}
        });
        let cases = [
            (index.clone(), "", Ok(Manifest::Index { platform: d('b') })),
            (
                list,
                "application/vnd.docker.distribution.manifest.list.v2+json",
                Ok(Manifest::Index { platform: d('c') }),
            ),
            (manifest, "", Ok(Manifest::Image { config: d('e') })),
            (
                serde_json::json!({"mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": [{"digest": d('a'), "platform": {"os": "windows", "architecture": "amd64"}}]}),
                "",
                Err("no linux/amd64 image in the index (it has: windows/amd64)"),
            ),
            (
                serde_json::json!({"schemaVersion": 1}),
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
                Err("unsupported manifest type"),
            ),
            (
                serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {"digest": "md5:x"}}),
                "",
                Err("no config with a sha256 digest"),
            ),
        ];
        for (body, content_type, want) in cases {
            let got = parse_manifest(body.to_string().as_bytes(), content_type);
            match want {
                Ok(w) => assert_eq!(got.unwrap(), w, "{body}"),
                Err(w) => assert!(got.unwrap_err().contains(w), "{body}"),
            }
        }
    }

    #[test]
    fn config_blobs_give_what_the_image_runs() {
        let blob = br#"{"architecture":"amd64","config":{"Entrypoint":["/app"],"Cmd":null,"User":"1000","WorkingDir":"/srv"},"rootfs":{}}"#;
        let c = parse_config(blob).unwrap();
        assert_eq!(c.entrypoint, ["/app"]);
        assert!(c.cmd.is_empty());
        assert_eq!(c.user.as_deref(), Some("1000"));
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert_eq!(parse_config(b"{}").unwrap(), ImageConfig::default());
        assert!(parse_config(br#"{"config":{"Cmd":"sh"}}"#).is_err());
    }

    #[test]
    fn digests_are_sha256_of_the_bytes() {
        assert_eq!(
            sha256(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn only_images_that_decide_what_runs_are_read() {
        let def = serde_json::json!({"taskDefinition": {"containerDefinitions": [
            {"name": "a", "image": "a"},
            {"name": "b", "image": "b", "entryPoint": ["/b"]},
            {"name": "c", "image": "c", "entryPoint": [""], "command": ["x"]},
            {"name": "d", "image": "a", "entryPoint": null},
            {"name": "e", "image": "e", "entryPoint": []},
        ]}});
        assert_eq!(
            images_without_entry_point(&def.to_string(), |_| true),
            ["a", "c", "e"]
        );
        // A container left alone (`--exclude`) needs nothing read.
        assert_eq!(
            images_without_entry_point(&def.to_string(), |name| name != "c"),
            ["a", "e"]
        );
        assert!(images_without_entry_point("not json", |_| true).is_empty());
    }
}
