//! Who the protected container is, in ECS: the task metadata endpoint v4
//! (`$ECS_CONTAINER_METADATA_URI_V4`, which ECS sets in every container of a task) gives the
//! container name, image, task ARN, cluster and family, and the service where the ECS agent
//! gives it (`ServiceName`: EC2 and ECS Anywhere, not Fargate). Flags and environment variables
//! win over it, and it wins over the hostname and `unknown`. A failure is reported, never fatal:
//! the defender protects the container all the same.

use std::time::Duration;

use serde_json::Value;

use crate::audit::Scope;

/// The variable ECS sets to this container's metadata URI.
pub const URI_VAR: &str = "ECS_CONTAINER_METADATA_URI_V4";
/// Each step of a request (connect, send, wait for the answer, read it) gets this long: the
/// endpoint is local to the task and answers at once, and the container waits for us.
const STEP_TIMEOUT: Duration = Duration::from_millis(500);

/// What the endpoint says about this container and its task.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskMetadata {
    pub container: Option<String>,
    pub image: Option<String>,
    pub task_arn: Option<String>,
    pub cluster: Option<String>,
    pub family: Option<String>,
    pub revision: Option<String>,
    pub service: Option<String>,
}

/// What the flags (or their variables) name; empty values already count as not given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Given {
    pub container: Option<String>,
    pub image: Option<String>,
    pub cluster: Option<String>,
    pub family: Option<String>,
    pub service: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("{url}: {source}")]
    Http {
        url: String,
        source: Box<ureq::Error>,
    },
    #[error("{url}: not JSON: {source}")]
    Json {
        url: String,
        source: serde_json::Error,
    },
    #[error("{url}: names no container, image or task")]
    Empty { url: String },
}

/// The container's identity for audits and rules: the flags (or their variables) first, then
/// the task metadata when `$ECS_CONTAINER_METADATA_URI_V4` is set, then the hostname and
/// `unknown` (cluster, family and service: unknown). Returns the report to make when the metadata
/// could not be read.
pub fn identify(given: Given, hostname: impl FnOnce() -> String) -> (Scope, Option<String>) {
    let Some(uri) = std::env::var(URI_VAR).ok().filter(|u| !u.is_empty()) else {
        return (scope(given, None, hostname), None);
    };
    match lookup(&uri) {
        Ok(meta) => {
            let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            log::info!(
                "ECS task metadata: container {}, image {}, task {}, cluster {}, family {} revision {}, \
                 service {}",
                shown(&meta.container),
                shown(&meta.image),
                shown(&meta.task_arn),
                shown(&meta.cluster),
                shown(&meta.family),
                shown(&meta.revision),
                shown(&meta.service)
            );
            (scope(given, Some(&meta), hostname), None)
        }
        Err(e) => {
            let scope = scope(given, None, hostname);
            let report = format!(
                "ECS task metadata could not be read ({URI_VAR}): {e}; container {:?} and image {:?} \
                 come from flags, environment or defaults, and events carry no task ARN",
                scope.container, scope.image
            );
            (scope, Some(report))
        }
    }
}

/// Reads `uri` (this container) and, when its labels do not name the task, `uri/task`.
pub fn lookup(uri: &str) -> Result<TaskMetadata, MetadataError> {
    // No global, per-call or resolve timeout: with one, ureq resolves the host on a thread of its
    // own, and the supervisor must fork while single-threaded. ECS gives an IP address.
    let config = ureq::Agent::config_builder()
        .proxy(None) // the endpoint is link-local; an HTTP_PROXY meant for the app must not see it
        .timeout_connect(Some(STEP_TIMEOUT))
        .timeout_send_request(Some(STEP_TIMEOUT))
        .timeout_recv_response(Some(STEP_TIMEOUT))
        .timeout_recv_body(Some(STEP_TIMEOUT))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let get = |url: &str| -> Result<Value, MetadataError> {
        let body = agent
            .get(url)
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .map_err(|e| MetadataError::Http {
                url: url.into(),
                source: Box::new(e),
            })?;
        serde_json::from_str(&body).map_err(|source| MetadataError::Json {
            url: url.into(),
            source,
        })
    };
    let mut meta = from_container(&get(uri)?);
    // The container's labels name the task, its cluster and family, never the service: only the
    // task response has `ServiceName`, so it is always asked for.
    let named = meta.task_arn.is_some() && meta.cluster.is_some() && meta.family.is_some();
    let url = format!("{}/task", uri.trim_end_matches('/'));
    match get(&url) {
        Ok(task) => meta.fill_from_task(&task),
        // Only the service was missing: rules that name services do not match, as for any
        // container whose service is unknown.
        Err(e) if named => log::warn!("ECS task metadata: no service name: {e}"),
        Err(e) => return Err(e),
    }
    if meta == TaskMetadata::default() {
        return Err(MetadataError::Empty { url: uri.into() });
    }
    Ok(meta)
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// From the container response: `Name`, `Image`, and the task in the `com.amazonaws.ecs.*` labels.
fn from_container(v: &Value) -> TaskMetadata {
    let label = |key: &str| text(v.get("Labels").and_then(|l| l.get(key)));
    TaskMetadata {
        container: text(v.get("Name")),
        image: text(v.get("Image")),
        task_arn: label("com.amazonaws.ecs.task-arn"),
        cluster: label("com.amazonaws.ecs.cluster"),
        family: label("com.amazonaws.ecs.task-definition-family"),
        revision: label("com.amazonaws.ecs.task-definition-version"),
        // No label names the service; the task response may.
        service: None,
    }
}

impl TaskMetadata {
    /// Fills what the labels lacked from the task response (`TaskARN`, `Cluster`, ...).
    fn fill_from_task(&mut self, v: &Value) {
        let fill = |field: &mut Option<String>, key: &str| {
            if field.is_none() {
                *field = text(v.get(key));
            }
        };
        fill(&mut self.task_arn, "TaskARN");
        fill(&mut self.cluster, "Cluster");
        fill(&mut self.family, "Family");
        fill(&mut self.revision, "Revision");
        fill(&mut self.service, "ServiceName");
    }
}

/// A cluster as rules name it: `arn:aws:ecs:REGION:ACCOUNT:cluster/NAME` gives `NAME`; a short
/// name (what the labels of some agents hold) is already one.
fn cluster_name(cluster: &str) -> String {
    match cluster.strip_prefix("arn:") {
        Some(arn) => arn
            .rsplit_once(":cluster/")
            .map_or(cluster, |(_, name)| name),
        None => cluster,
    }
    .to_owned()
}

/// Flags (and their variables) first, then the metadata, then the defaults.
fn scope(given: Given, meta: Option<&TaskMetadata>, hostname: impl FnOnce() -> String) -> Scope {
    let from_meta = |f: fn(&TaskMetadata) -> &Option<String>| meta.and_then(|m| f(m).clone());
    Scope {
        container: given
            .container
            .or_else(|| from_meta(|m| &m.container))
            .unwrap_or_else(hostname),
        image: given
            .image
            .or_else(|| from_meta(|m| &m.image))
            .unwrap_or_else(|| "unknown".into()),
        task: from_meta(|m| &m.task_arn),
        cluster: given
            .cluster
            .or_else(|| from_meta(|m| &m.cluster))
            .map(|cluster| cluster_name(&cluster)),
        family: given.family.or_else(|| from_meta(|m| &m.family)),
        service: given.service.or_else(|| from_meta(|m| &m.service)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(container: &str, image: &str, task: &str) -> TaskMetadata {
        TaskMetadata {
            container: Some(container.into()),
            image: Some(image.into()),
            task_arn: Some(task.into()),
            ..TaskMetadata::default()
        }
    }

    #[test]
    fn flags_win_over_metadata_which_wins_over_defaults() {
        let m = meta("web", "nginx:1", "arn:task");
        let some = |s: &str| Some(s.to_string());
        let cases = [
            (None, None, Some(&m), ("web", "nginx:1", Some("arn:task"))),
            (
                some("flag"),
                None,
                Some(&m),
                ("flag", "nginx:1", Some("arn:task")),
            ),
            (
                None,
                some("img"),
                Some(&m),
                ("web", "img", Some("arn:task")),
            ),
            (None, None, None, ("host", "unknown", None)),
            (some("flag"), some("img"), None, ("flag", "img", None)),
        ];
        for (container, image, meta, (c, i, t)) in cases {
            let given = Given {
                container: container.clone(),
                image: image.clone(),
                ..Given::default()
            };
            let s = scope(given, meta, || "host".into());
            assert_eq!(
                (s.container.as_str(), s.image.as_str(), s.task.as_deref()),
                (c, i, t),
                "{container:?} {image:?} {meta:?}"
            );
        }
        let partial = TaskMetadata {
            task_arn: Some("arn:task".into()),
            ..TaskMetadata::default()
        };
        let s = scope(Given::default(), Some(&partial), || "host".into());
        assert_eq!(
            (s.container.as_str(), s.image.as_str()),
            ("host", "unknown")
        );
    }

    /// Cluster, family and service: the flags first, then the metadata, else unknown; a cluster
    /// is known by its name, whether the ARN or the name was given.
    #[test]
    fn the_ecs_identity_from_flags_and_metadata() {
        let m = TaskMetadata {
            cluster: Some("arn:aws:ecs:us-west-2:111122223333:cluster/prod-us".into()),
            family: Some("orders".into()),
            service: Some("orders-api".into()),
            ..TaskMetadata::default()
        };
        let flags = Given {
            cluster: Some("arn:aws:ecs:eu-west-1:1:cluster/other".into()),
            service: Some("flagged".into()),
            ..Given::default()
        };
        let cases = [
            (
                Given::default(),
                Some(&m),
                [Some("prod-us"), Some("orders"), Some("orders-api")],
            ),
            (Given::default(), None, [None; 3]),
            (
                flags,
                Some(&m),
                [Some("other"), Some("orders"), Some("flagged")],
            ),
        ];
        for (given, meta, want) in cases {
            let s = scope(given.clone(), meta, || "host".into());
            let got = [&s.cluster, &s.family, &s.service].map(|v| v.as_deref());
            assert_eq!(got, want, "{given:?} {meta:?}");
        }
    }

    #[test]
    fn cluster_names_from_arns() {
        let cases = [
            (
                "arn:aws:ecs:us-west-2:111122223333:cluster/default",
                "default",
            ),
            ("arn:aws-cn:ecs:cn-north-1:1:cluster/prod-eu", "prod-eu"),
            ("default", "default"),
            // Not an ARN: kept whole rather than guessed at.
            ("team/cluster/x", "team/cluster/x"),
        ];
        for (given, want) in cases {
            assert_eq!(cluster_name(given), want);
        }
    }

    #[test]
    fn labels_name_the_task_and_the_task_response_fills_gaps() {
        let container = json!({
            "Name": "curl",
            "Image": "111122223333.dkr.ecr.us-west-2.amazonaws.com/curltest:latest",
            "Labels": {
                "com.amazonaws.ecs.cluster": "arn:aws:ecs:us-west-2:111122223333:cluster/default",
                "com.amazonaws.ecs.task-arn": "arn:aws:ecs:us-west-2:111122223333:task/default/cd18",
                "com.amazonaws.ecs.task-definition-version": "2"
            }
        });
        let mut m = from_container(&container);
        assert_eq!(m.container.as_deref(), Some("curl"));
        assert_eq!(
            m.task_arn.as_deref(),
            Some("arn:aws:ecs:us-west-2:111122223333:task/default/cd18")
        );
        assert_eq!(m.family, None);
        m.fill_from_task(
            &json!({"Cluster": "other", "Family": "curltest", "Revision": "3", "TaskARN": "x"}),
        );
        assert_eq!(m.family.as_deref(), Some("curltest"));
        // What the labels said stays.
        assert_eq!(m.revision.as_deref(), Some("2"));
        assert_eq!(
            m.cluster.as_deref(),
            Some("arn:aws:ecs:us-west-2:111122223333:cluster/default")
        );
        assert_eq!(from_container(&json!([1, 2])), TaskMetadata::default());
        assert_eq!(
            from_container(&json!({"Name": ""})),
            TaskMetadata::default()
        );
    }
}
