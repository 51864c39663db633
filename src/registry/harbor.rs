//! Harbor's projects. A plain registry makes a repository on its first push; Harbor keeps
//! every repository in a project and refuses a push into a project that does not exist.
//! `mirror-images push --create-projects` asks Harbor's API (`/api/v2.0`) for each project
//! the push will use (the first path component of each repository) and creates the
//! missing ones, private, with the push's own login.

use std::collections::BTreeSet;

use anyhow::{anyhow, bail};
use reqwest::{Method, StatusCode};

use super::client::{RegistryClient, error_chain};

/// What `ensure_harbor_projects` found and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HarborProjects {
    pub version: String,
    pub existing: Vec<String>,
    pub created: Vec<String>,
}

/// The projects a set of repositories lives in; a repository without a project part is
/// refused (Harbor has nowhere to put it).
pub fn projects_of<'a>(
    repositories: impl IntoIterator<Item = &'a str>,
) -> anyhow::Result<BTreeSet<String>> {
    let mut projects = BTreeSet::new();
    for repository in repositories {
        match repository.split_once('/') {
            Some((project, _)) => projects.insert(project.to_string()),
            None => bail!(
                "{repository} has no project part, and Harbor keeps every repository in a project; push with --prefix PROJECT"
            ),
        };
    }
    Ok(projects)
}

impl RegistryClient {
    /// Makes sure every project exists in this Harbor, creating the missing ones.
    pub async fn ensure_harbor_projects(
        &self,
        projects: &BTreeSet<String>,
    ) -> anyhow::Result<HarborProjects> {
        let registry = self.registry().to_string();
        let version = self.harbor_version().await?;
        let Some(creds) = &self.credentials else {
            bail!(
                "--create-projects: creating a project in Harbor {registry} needs a login; give --username and --password-env (or a docker config entry for {registry})"
            );
        };
        let mut done = HarborProjects {
            version,
            ..HarborProjects::default()
        };
        for project in projects {
            let url = format!("{}/api/v2.0/projects?project_name={project}", self.base);
            let resp = self
                .harbor_call(Method::HEAD, &url)
                .basic_auth(&creds.username, Some(creds.password.expose()))
                .send()
                .await
                .map_err(|e| unreachable(&registry, &e))?;
            match resp.status() {
                StatusCode::OK => {
                    done.existing.push(project.clone());
                    continue;
                }
                StatusCode::NOT_FOUND => {}
                status => bail!(
                    "Harbor {registry}: asking whether project {project} exists answered {status}{}",
                    refusal_hint(status, &creds.username, project)
                ),
            }
            let body = serde_json::json!({
                "project_name": project,
                "metadata": { "public": "false" },
            });
            let resp = self
                .harbor_call(Method::POST, &format!("{}/api/v2.0/projects", self.base))
                .basic_auth(&creds.username, Some(creds.password.expose()))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string())
                .send()
                .await
                .map_err(|e| unreachable(&registry, &e))?;
            match resp.status() {
                StatusCode::CREATED => done.created.push(project.clone()),
                // Made by someone else since we asked: just as good.
                StatusCode::CONFLICT => done.existing.push(project.clone()),
                status => {
                    let text = resp.text().await.unwrap_or_default();
                    bail!(
                        "Harbor {registry} refused to create project {project}: {status} {}{}",
                        harbor_message(&text),
                        refusal_hint(status, &creds.username, project)
                    )
                }
            }
        }
        Ok(done)
    }

    /// `GET /api/v2.0/systeminfo` (open to anyone): Harbor's version, or an error saying
    /// this registry is not Harbor.
    async fn harbor_version(&self) -> anyhow::Result<String> {
        let registry = self.registry();
        let resp = self
            .harbor_call(Method::GET, &format!("{}/api/v2.0/systeminfo", self.base))
            .send()
            .await
            .map_err(|e| unreachable(registry, &e))?;
        let status = resp.status();
        let not_harbor = |why: String| {
            anyhow!(
                "--create-projects: {registry} is not Harbor ({why}); only Harbor needs its projects made before a push, so drop --create-projects"
            )
        };
        if !status.is_success() {
            return Err(not_harbor(format!(
                "GET /api/v2.0/systeminfo answered {status}"
            )));
        }
        let body = resp.bytes().await.map_err(|e| unreachable(registry, &e))?;
        let info: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| not_harbor(format!("/api/v2.0/systeminfo is not JSON: {e}")))?;
        info.get("harbor_version")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| not_harbor("/api/v2.0/systeminfo names no harbor_version".into()))
    }

    fn harbor_call(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        self.http.request(method, url)
    }
}

fn unreachable(registry: &str, e: &reqwest::Error) -> anyhow::Error {
    anyhow!(
        "cannot reach Harbor's API on {registry}: {}",
        error_chain(e)
    )
}

/// Harbor's error body is `{"errors":[{"code":…,"message":…}]}`.
fn harbor_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("errors")?
                .get(0)?
                .get("message")?
                .as_str()
                .map(|m| format!("({m})"))
        })
        .unwrap_or_default()
}

fn refusal_hint(status: StatusCode, user: &str, project: &str) -> String {
    match status {
        StatusCode::UNAUTHORIZED => format!(
            "; Harbor did not accept the login of user {user}: check the username and password"
        ),
        StatusCode::FORBIDDEN => format!(
            "; user {user} may not create projects: ask a Harbor administrator to create project {project}, or to let every user create projects (Configuration → System Settings → Project Creation)"
        ),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects_are_the_first_path_components() {
        let projects = projects_of([
            "library/nginx",
            "nvidia/k8s/device-plugin",
            "library/busybox",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            projects.into_iter().collect::<Vec<_>>(),
            ["library", "nvidia"]
        );
        let err = projects_of(["app"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("app has no project part") && err.contains("--prefix"),
            "{err}"
        );
    }

    #[test]
    fn harbor_errors_are_read_from_their_body() {
        assert_eq!(
            harbor_message(r#"{"errors":[{"code":"FORBIDDEN","message":"forbidden"}]}"#),
            "(forbidden)"
        );
        assert_eq!(harbor_message("<html>"), "");
    }
}
