//! `push --create-projects` against Harbor (the API fixture in front of a real registry):
//! Harbor refuses a push into a missing project; gpuctl creates the projects first, once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::{PASSWORD_VAR, Work, assert_same_image, pull, small_bundle};
use crate::support::gpuctl::{Gpuctl, Outcome};
use crate::support::harbor::HarborFixture;
use crate::support::images::single_arch;
use crate::support::registry::TestRegistry;

const PASSWORD: &str = "Harbor-Pa55-71c2";

fn push_to(bundle: &std::path::Path, to: &str, extra: &[&str]) -> Outcome {
    Gpuctl::new()
        .args([
            "mirror-images",
            "push",
            "--insecure",
            "--to",
            to,
            "--bundle",
        ])
        .args([bundle.display().to_string()])
        .args(["--username", "admin", "--password-env", PASSWORD_VAR])
        .env(PASSWORD_VAR, PASSWORD)
        .args(extra.iter().copied())
        .run()
}

#[test]
fn create_projects_makes_the_missing_harbor_projects_once() {
    let work = Work::new();
    let upstream = TestRegistry::plain();
    let app = single_arch(&work.path("app"), "1", 1, 8 * 1024);
    upstream.copy_layout(&app, "1", "team/app", None);
    upstream.copy_layout(&app, "1", "tools/app", None);
    let images = work.images_file(&[
        format!("{}/team/app:1", upstream.addr),
        format!("{}/tools/app:1", upstream.addr),
    ]);
    let bundle = work.path("bundle");
    pull(&images, &bundle, &upstream.addr, &[]).success();

    let backend = TestRegistry::plain();
    let harbor = HarborFixture::start(&backend, "admin", PASSWORD, true);

    // Without the option, Harbor's refusal reaches the admin.
    let out = push_to(&bundle, &harbor.addr, &[]).code(1);
    assert!(
        out.stderr.contains("project team not found")
            && out.stderr.contains("push with --create-projects"),
        "{}",
        out.stderr
    );

    let out = push_to(&bundle, &harbor.addr, &["--create-projects"]).success();
    assert!(!out.stdout.contains(PASSWORD) && !out.stderr.contains(PASSWORD));
    out.stdout_has("Harbor v2.11.0-fixture: projects created: team, tools; already there: none");
    for repository in ["team/app", "tools/app"] {
        assert_same_image(&upstream, &backend, repository, "1", &work);
    }
    push_to(&bundle, &harbor.addr, &["--create-projects"])
        .success()
        .stdout_has("projects created: none; already there: team, tools");

    // Not Harbor: the option is refused with why.
    push_to(&bundle, &backend.addr, &["--create-projects"])
        .code(1)
        .stderr_has("is not Harbor (GET /api/v2.0/systeminfo answered 404");
}

#[test]
fn a_user_who_may_not_create_projects_is_told_what_to_ask_for() {
    let work = Work::new();
    let bundle = small_bundle(&work);
    let backend = TestRegistry::plain();
    let harbor = HarborFixture::start(&backend, "admin", PASSWORD, false);
    let out = push_to(&bundle, &harbor.addr, &["--create-projects"]).code(1);
    assert!(
        out.stderr.contains("refused to create project team: 403")
            && out
                .stderr
                .contains("ask a Harbor administrator to create project team"),
        "{}",
        out.stderr
    );
    assert!(backend.stored_repositories().is_empty());
}
