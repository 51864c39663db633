use super::{MirrorState, images, oci_arch};
use crate::doctor::Severity;
use crate::doctor::reads::{MirrorProbe, ScriptPlan};
use crate::doctor::testing::{Case, one};
use crate::mirror::ImageCheck;

fn with_mirror(case: Case, insecure: bool) -> Case {
    let mut c = case;
    c.plan = ScriptPlan {
        mirror: Some(MirrorProbe {
            mirror: "registry.lab:5000".into(),
            insecure,
        }),
        ..ScriptPlan::default()
    };
    c
}

fn curl(case: Case, name: &str, out: &str, status: i32) -> Case {
    case.with(&format!("@@t cmd {name}"))
        .with(out)
        .with(&format!("@@t status {name} {status}"))
}

#[test]
fn the_mirror_answers_and_is_trusted() {
    let ok = curl(
        with_mirror(Case::healthy("n1", false), false),
        "mirror_v2",
        "401",
        0,
    )
    .findings();
    assert!(
        one(&ok, "M1", Severity::Ok)
            .title
            .contains("system CA bundle")
    );

    let via_certs_d = curl(
        curl(
            with_mirror(Case::healthy("n1", false), false),
            "mirror_v2",
            "curl: (60) SSL certificate problem: unable to get local issuer certificate",
            60,
        )
        .with("@@t kv mirror_ca0=/etc/docker/certs.d/registry.lab:5000/ca.crt"),
        "mirror_v2_ca0",
        "200",
        0,
    )
    .findings();
    assert!(
        one(&via_certs_d, "M1", Severity::Ok)
            .title
            .contains("certs.d")
    );

    let untrusted = curl(
        with_mirror(Case::healthy("n1", false), false),
        "mirror_v2",
        "curl: (60) SSL certificate problem: self-signed certificate",
        60,
    )
    .findings();
    let e = one(&untrusted, "M1", Severity::Error);
    assert!(e.title.contains("does not trust"));
    assert!(
        e.fix
            .as_deref()
            .is_some_and(|f| f.contains("update-ca-certificates"))
    );
}

#[test]
fn an_unreachable_mirror_or_a_wrong_answer_is_an_error() {
    let down = curl(
        with_mirror(Case::healthy("n1", false), true),
        "mirror_v2",
        "curl: (7) Failed to connect to registry.lab port 5000: Connection refused",
        7,
    )
    .findings();
    assert!(
        one(&down, "M1", Severity::Error)
            .title
            .contains("cannot reach the mirror registry.lab:5000")
    );
    let wrong = curl(
        with_mirror(Case::healthy("n1", false), true),
        "mirror_v2",
        "404",
        0,
    )
    .findings();
    assert!(
        one(&wrong, "M1", Severity::Error)
            .title
            .contains("HTTP 404")
    );
    let none = Case::healthy("n1", false).findings();
    one(&none, "M1", Severity::Skip);
}

#[test]
fn missing_images_count_for_the_node_architecture_only() {
    let results = vec![
        ImageCheck {
            source: "nginx:1.27".into(),
            mirror: "registry.lab:5000/library/nginx:1.27".into(),
            missing: vec!["linux/arm64 manifest sha256:aa".into()],
        },
        ImageCheck {
            source: "busybox:1".into(),
            mirror: "registry.lab:5000/library/busybox:1".into(),
            missing: vec![],
        },
    ];
    let state = MirrorState::Checked(results);
    assert_eq!(oci_arch("x86_64"), "amd64");
    let amd = images("n1", Some("x86_64"), &state);
    assert_eq!(amd.severity, Severity::Ok);
    let arm = images("a1", Some("aarch64"), &state);
    assert_eq!(arm.severity, Severity::Error);
    assert_eq!(
        arm.evidence,
        ["registry.lab:5000/library/nginx:1.27: linux/arm64 manifest sha256:aa"]
    );
    let skip = images("n1", None, &MirrorState::NotApplicable("no bundle".into()));
    assert_eq!(skip.severity, Severity::Skip);
}
