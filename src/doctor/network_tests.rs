use super::{PeerView, check};
use crate::doctor::Severity;
use crate::doctor::reads::Probe;

fn probe(host: &str, addr: &str, port: u16) -> Probe {
    Probe {
        host: host.into(),
        addr: addr.into(),
        port,
    }
}

fn view(host: &str, results: &[(&str, &str)], listening: &[u16]) -> PeerView {
    PeerView {
        host: host.into(),
        results: results
            .iter()
            .map(|(k, r)| (k.to_string(), r.to_string()))
            .collect(),
        can_probe: true,
        listening: Some(
            listening
                .iter()
                .map(|p| ("0.0.0.0".to_string(), *p))
                .collect(),
        ),
    }
}

fn probes() -> Vec<Probe> {
    vec![
        probe("s1", "10.0.0.1", 6443),
        probe("s1", "10.0.0.1", 10250),
        probe("w1", "10.0.0.2", 10250),
    ]
}

#[test]
fn before_install_nothing_listens_and_nothing_fails() {
    let views = [
        view("s1", &[("10.0.0.2:10250", "closed")], &[22]),
        view(
            "w1",
            &[("10.0.0.1:6443", "closed"), ("10.0.0.1:10250", "closed")],
            &[22],
        ),
    ];
    let f = check(&probes(), &views);
    assert_eq!(f.len(), 2, "{f:#?}");
    assert!(
        f.iter()
            .all(|f| f.severity == Severity::Skip && f.title.starts_with("not applicable yet"))
    );
}

#[test]
fn a_blocked_listening_port_is_an_error_on_the_probing_node() {
    let views = [
        view("s1", &[("10.0.0.2:10250", "open")], &[6443, 10250]),
        view(
            "w1",
            &[("10.0.0.1:6443", "timeout"), ("10.0.0.1:10250", "open")],
            &[10250],
        ),
    ];
    let f = check(&probes(), &views);
    let errors: Vec<_> = f.iter().filter(|f| f.severity == Severity::Error).collect();
    assert_eq!(errors.len(), 1, "{f:#?}");
    assert_eq!(errors[0].host, "w1");
    assert!(
        errors[0]
            .title
            .starts_with("node w1 cannot reach s1:6443 (Kubernetes API)")
    );
    assert!(
        errors[0]
            .fix
            .as_deref()
            .is_some_and(|x| x.contains("--dport 6443 -s 10.0.0.2"))
    );
    assert!(
        f.iter()
            .any(|f| f.host == "s1" && f.severity == Severity::Ok)
    );
}

#[test]
fn a_loopback_only_listener_does_not_count() {
    let mut s1 = view("s1", &[], &[]);
    s1.listening = Some(vec![("127.0.0.1".into(), 6443)]);
    let views = [s1, view("w1", &[("10.0.0.1:6443", "closed")], &[])];
    let f = check(&probes(), &views);
    assert!(f.iter().all(|f| f.severity == Severity::Skip), "{f:#?}");
}
