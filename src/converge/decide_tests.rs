use super::*;
use crate::plan::LineState;

fn file(content: &str) -> Now {
    Now::File {
        mode: 0o644,
        owner: "root:root".into(),
        content: content.as_bytes().to_vec(),
    }
}

fn whole(path: &str, content: &str) -> Step {
    Step::Content {
        path: path.into(),
        edit: Edit::Whole(content.into()),
        mode: Some(0o644),
        owner: Some("root:root".into()),
    }
}

#[test]
fn a_file_with_the_right_content_mode_and_owner_is_in_sync() {
    let d = decide(&[whole("/a", "x\n")], &[file("x\n")], false).unwrap();
    assert_eq!(d[0].report.change, Change::InSync);
    assert_eq!(d[0].action, Action::Nothing);
}

#[test]
fn a_wrong_mode_alone_is_a_change_with_no_content_diff() {
    let now = Now::File {
        mode: 0o600,
        owner: "root:root".into(),
        content: b"x\n".to_vec(),
    };
    let d = decide(&[whole("/a", "x\n")], &[now], false).unwrap();
    assert_eq!(
        d[0].report.change,
        Change::Changed("mode 600 -> 644\n".into())
    );
    assert!(matches!(d[0].action, Action::Put { secret: false, .. }));
}

#[test]
fn services_restart_only_when_a_watched_file_changed() {
    let steps = vec![
        whole("/etc/docker/daemon.json", "{}\n"),
        Step::Service {
            name: "docker".into(),
            enabled: true,
            running: true,
            restart_on: vec!["/etc/docker/daemon.json".into()],
        },
    ];
    let running = Now::Service {
        enabled: "enabled".into(),
        active: "active".into(),
    };
    let d = decide(&steps, &[file("{}\n"), running.clone()], false).unwrap();
    assert_eq!(d[1].report.change, Change::InSync);
    let d = decide(&steps, &[file("{\"a\":1}\n"), running], false).unwrap();
    assert_eq!(
        d[1].report.change,
        Change::Changed("restart (/etc/docker/daemon.json changed)".into())
    );
    assert_eq!(
        d[1].action,
        Action::Run {
            snippet: "systemctl restart docker".into(),
            fatal: true
        }
    );
    let stopped = Now::Service {
        enabled: "disabled".into(),
        active: "inactive".into(),
    };
    let d = decide(&steps, &[file("{\"a\":1}\n"), stopped], false).unwrap();
    // Starting reads the new file anyway; no restart on top.
    assert_eq!(d[1].report.change, Change::Changed("enable, start".into()));
}

#[test]
fn live_kernel_settings_are_warnings_only_in_containers() {
    let steps = vec![
        Step::LiveSysctl {
            key: "net.ipv4.ip_forward".into(),
            value: "1".into(),
        },
        Step::LiveModule {
            name: "br_netfilter".into(),
        },
    ];
    let now = vec![
        Now::Sysctl {
            value: Some("0".into()),
            writable: true,
        },
        Now::Module {
            loaded: false,
            loadable: true,
        },
    ];
    for container in [false, true] {
        let d = decide(&steps, &now, container).unwrap();
        assert_eq!(
            d[0].action,
            Action::Run {
                snippet: "sysctl -w net.ipv4.ip_forward=1".into(),
                fatal: !container
            }
        );
        let detail = "live value 0 -> 1".to_string();
        let expected = if container {
            Change::Refused(detail)
        } else {
            Change::Changed(detail)
        };
        assert_eq!(d[0].report.change, expected);
        assert_eq!(d[0].report.warning.is_some(), container);
        assert!(matches!(d[1].action, Action::Run { fatal, .. } if fatal != container));
    }
    // Already right: nothing to do, wherever it runs.
    let d = decide(
        &steps,
        &[
            Now::Sysctl {
                value: Some("1".into()),
                writable: false,
            },
            Now::Module {
                loaded: true,
                loadable: false,
            },
        ],
        false,
    )
    .unwrap();
    assert!(d.iter().all(|d| d.action == Action::Nothing));
    // A container that cannot take them (read-only /proc/sys, no modules): a warning,
    // and nothing is tried; a host that is no container still tries, and fails loudly.
    let cannot = [
        Now::Sysctl {
            value: Some("0".into()),
            writable: false,
        },
        Now::Module {
            loaded: false,
            loadable: false,
        },
    ];
    let d = decide(&steps, &cannot, true).unwrap();
    for d in &d {
        assert_eq!(d.action, Action::Nothing);
        assert!(matches!(d.report.change, Change::Refused(_)), "{d:?}");
        assert!(d.report.warning.is_some());
    }
    let d = decide(&steps, &cannot, false).unwrap();
    assert!(
        d.iter()
            .all(|d| matches!(d.action, Action::Run { fatal: true, .. }))
    );
}

#[test]
fn commands_run_only_when_their_guard_is_false() {
    let steps = vec![Step::Command {
        run: "mkdir -p /d".into(),
        guard: "test -d /d".into(),
        undo: None,
        rerun_on: Vec::new(),
    }];
    let d = decide(&steps, &[Now::Command { done: true }], false).unwrap();
    assert_eq!(d[0].action, Action::Nothing);
    let d = decide(&steps, &[Now::Command { done: false }], false).unwrap();
    let Action::Run { snippet, fatal } = &d[0].action else {
        panic!("{:?}", d[0].action)
    };
    assert!(fatal);
    assert!(snippet.contains("sh -c 'mkdir -p /d'"), "{snippet}");
    assert!(snippet.contains("guard is still false"), "{snippet}");
}

#[test]
fn commands_run_again_when_a_file_they_watch_changed() {
    let steps = vec![
        whole("/var/lib/gpuctl/cluster/gpu.yaml", "kind: A\n"),
        Step::Command {
            run: "kubectl apply -f /var/lib/gpuctl/cluster/gpu.yaml".into(),
            guard: "kubectl get ds x".into(),
            undo: None,
            rerun_on: vec!["/var/lib/gpuctl/cluster/gpu.yaml".into()],
        },
    ];
    let same = decide(
        &steps,
        &[file("kind: A\n"), Now::Command { done: true }],
        false,
    )
    .unwrap();
    assert_eq!(same[1].action, Action::Nothing);
    let edited = decide(
        &steps,
        &[file("kind: B\n"), Now::Command { done: true }],
        false,
    )
    .unwrap();
    assert_eq!(
        edited[1].report.change,
        Change::Changed("run it again (/var/lib/gpuctl/cluster/gpu.yaml changed)".into())
    );
    assert!(matches!(edited[1].action, Action::Run { fatal: true, .. }));
    // Its guard false: it runs for that reason, whatever the file did.
    let gone = decide(
        &steps,
        &[file("kind: A\n"), Now::Command { done: false }],
        false,
    )
    .unwrap();
    assert!(
        matches!(&gone[1].report.change, Change::Changed(why) if why.starts_with("run it (guard"))
    );
}

#[test]
fn a_missing_fstab_needs_no_line_edits_and_a_directory_is_left_alone() {
    let steps = vec![
        Step::Content {
            path: "/etc/fstab".into(),
            edit: Edit::Lines {
                matching: "swap".into(),
                state: LineState::Commented,
            },
            mode: None,
            owner: None,
        },
        whole("/etc/x", "y"),
    ];
    let d = decide(
        &steps,
        &[
            Now::Missing,
            Now::NotAFile("it is not a regular file".into()),
        ],
        false,
    )
    .unwrap();
    assert_eq!(d[0].action, Action::Nothing);
    assert_eq!(d[1].action, Action::Nothing);
    assert!(
        d[1].report
            .warning
            .as_deref()
            .unwrap_or("")
            .contains("left alone")
    );
}

#[test]
fn the_apply_script_stops_at_the_first_fatal_failure_only() {
    let s = apply_script(&[(1, "modprobe x", false), (3, "systemctl start y", true)]);
    let lines: Vec<&str> = s.lines().collect();
    assert!(
        lines[2].contains("@1 ok") && !lines[2].contains("exit 1"),
        "{s}"
    );
    assert!(
        lines[3].contains("@3 ok") && lines[3].contains("exit 1"),
        "{s}"
    );
    assert_eq!(lines.last(), Some(&"echo @end"));
}

fn upload(dest: &str) -> Step {
    Step::Upload {
        src: "/bundle/packages/debian-12/jq.deb".into(),
        dest: dest.into(),
        sha256: "ab".repeat(32),
        mode: 0o644,
    }
}

#[test]
fn an_upload_is_in_sync_by_sha256_and_mode() {
    let want = "ab".repeat(32);
    let same = Now::Hash {
        mode: 0o644,
        sha256: want.clone(),
    };
    let d = decide(&[upload("/d/jq.deb")], &[same], false).unwrap();
    assert_eq!(d[0].report.change, Change::InSync);

    let d = decide(&[upload("/d/jq.deb")], &[Now::Missing], false).unwrap();
    assert!(matches!(&d[0].action, Action::Upload { dest, .. } if dest == "/d/jq.deb"));
    let other = Now::Hash {
        mode: 0o644,
        sha256: "cd".repeat(32),
    };
    let d = decide(&[upload("/d/jq.deb")], &[other], false).unwrap();
    assert_eq!(
        d[0].report.change,
        Change::Changed("replace (sha256 cdcdcdcdcdcd… -> abababababab…)".into())
    );
    // Same content, wrong mode: a chmod, not a transfer.
    let loose = Now::Hash {
        mode: 0o600,
        sha256: want,
    };
    let d = decide(&[upload("/d/jq.deb")], &[loose], false).unwrap();
    assert_eq!(
        d[0].action,
        Action::Run {
            snippet: "chmod 644 /d/jq.deb".into(),
            fatal: true
        }
    );
    let err = decide(
        &[upload("/d")],
        &[Now::NotAFile("a directory".into())],
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("/d cannot be uploaded: a directory"), "{err}");
}

#[test]
fn an_uploaded_file_counts_as_changed_for_restarts() {
    let steps = vec![
        upload("/etc/thing.bin"),
        Step::Service {
            name: "thing".into(),
            enabled: true,
            running: true,
            restart_on: vec!["/etc/thing.bin".into()],
        },
    ];
    let running = Now::Service {
        enabled: "enabled".into(),
        active: "active".into(),
    };
    let d = decide(&steps, &[Now::Missing, running], false).unwrap();
    assert_eq!(
        d[1].report.change,
        Change::Changed("restart (/etc/thing.bin changed)".into())
    );
}

#[test]
fn unmet_requirements_fail_the_stage_before_any_change_all_at_once() {
    let require = |check: &str, message: &str| Step::Require {
        check: check.into(),
        message: message.into(),
    };
    let steps = vec![
        whole("/a", "x\n"),
        require("command -v dockerd", "install docker"),
        require("command -v nvidia-container-runtime", "install the toolkit"),
    ];
    let todo = Now::Command { done: false };
    let err = decide(&steps, &[Now::Missing, todo.clone(), todo], false)
        .unwrap_err()
        .to_string();
    assert_eq!(err, "install docker\ninstall the toolkit");
    let done = Now::Command { done: true };
    let d = decide(&steps, &[Now::Missing, done.clone(), done], false).unwrap();
    assert_eq!(d[1].report.change, Change::InSync);
    assert_eq!(d[2].action, Action::Nothing);
    assert!(matches!(d[0].action, Action::Put { .. }));
}

#[test]
fn a_secret_file_is_put_as_a_secret_and_never_shown() {
    let step = Step::Content {
        path: "/etc/rancher/k3s/token".into(),
        edit: Edit::Secret("s3cr3t-token".into()),
        mode: Some(0o600),
        owner: Some("root:root".into()),
    };
    let d = decide(&[step], &[Now::Missing], false).unwrap();
    // The executor keeps a secret out of scripts (and so out of run logs and `ps`).
    assert!(
        matches!(&d[0].action, Action::Put { secret: true, content, .. } if content == b"s3cr3t-token"),
        "{:?}",
        d[0].action
    );
    assert!(!format!("{:?}", d[0].report).contains("s3cr3t"));
}
