//! The converge executor against a real node, Op by Op, for the Ops the `os` stage does
//! not use yet: a whole File with mode, a JsonMerge into an admin's file, a Service that
//! restarts only when a watched file changed, a Command and its guard, and a dry run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use gpuctl::converge::{self, Change, Mode, StageReport};
use gpuctl::fleet::{Fleet, FleetOptions, Progress};
use gpuctl::inventory::{self, LoadOptions};
use gpuctl::plan::Op;
use serde_json::json;

use crate::support::lab::{Lab, LabSpec};
use crate::transport::options;

const UNIT: &str = "[Unit]\nDescription=gpuctl converge test\n\n[Service]\n\
ExecStart=/bin/sh -c 'echo started >> /var/log/gpuctl-demo.starts; exec sleep 600'\n\n\
[Install]\nWantedBy=multi-user.target\n";

fn ops(level: u32, conf: &str) -> Vec<Op> {
    vec![
        Op::File {
            path: "/etc/systemd/system/gpuctl-demo.service".into(),
            content: UNIT.into(),
            mode: 0o644,
            owner: "root:root".into(),
            secret: false,
        },
        Op::File {
            path: "/etc/gpuctl-demo.conf".into(),
            content: conf.into(),
            mode: 0o600,
            owner: "root:root".into(),
            secret: false,
        },
        Op::JsonMerge {
            path: "/etc/gpuctl-demo.json".into(),
            merge: json!({"nested": {"level": level}, "added": true}),
            sets: vec![],
        },
        Op::Command {
            run: "touch /tmp/gpuctl-demo-ran".into(),
            guard: "test -e /tmp/gpuctl-demo-ran".into(),
            undo: None,
            rerun_on: Vec::new(),
        },
        Op::Service {
            name: "gpuctl-demo".into(),
            enabled: true,
            running: true,
            restart_on: vec!["/etc/gpuctl-demo.json".into()],
        },
    ]
}

/// Converges `ops` on the lab's only node.
fn converge(lab: &Lab, ops: Vec<Op>, mode: Mode) -> anyhow::Result<StageReport> {
    let inv = inventory::load(
        &lab.inventory,
        &LoadOptions {
            no_ssh_config: true,
            home: Some(lab.dir().to_path_buf()),
            user: Some("ops".into()),
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let fleet = Fleet::new(
        inv.hosts.clone(),
        &inv.state_dir(),
        FleetOptions {
            concurrency: 1,
            connect: options(lab),
            progress: Progress::Quiet,
        },
    )
    .unwrap();
    let ops = Arc::new(ops);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut report = rt.block_on(fleet.run(move |ctx| {
        let ops = Arc::clone(&ops);
        async move { converge::converge(&ctx, "demo", &ops, false, mode).await }
    }));
    report.results.remove(0).outcome
}

fn changed(r: &StageReport) -> Vec<String> {
    r.steps
        .iter()
        .filter(|s| matches!(s.change, Change::Changed(_)))
        .map(|s| s.what.clone())
        .collect()
}

#[test]
fn ops_converge_once_and_services_restart_only_for_watched_files() {
    let lab = Lab::up(&LabSpec::new(1));
    lab.exec(
        "node1",
        "printf '{\"admin\": \"keep\", \"nested\": {\"mine\": 1}}' > /etc/gpuctl-demo.json",
    );

    let first = converge(&lab, ops(1, "a\n"), Mode::Apply).unwrap();
    assert_eq!(first.changes(), 5, "{first:#?}");
    let json: serde_json::Value =
        serde_json::from_str(&lab.exec("node1", "cat /etc/gpuctl-demo.json")).unwrap();
    assert_eq!(
        json,
        json!({"admin": "keep", "added": true, "nested": {"mine": 1, "level": 1}})
    );
    assert_eq!(
        lab.exec("node1", "stat -c '%a %U' /etc/gpuctl-demo.conf"),
        "600 root\n"
    );
    lab.exec("node1", "test -e /tmp/gpuctl-demo-ran");
    assert_eq!(
        lab.exec("node1", "systemctl is-active gpuctl-demo").trim(),
        "active"
    );
    assert_eq!(
        lab.exec("node1", "wc -l < /var/log/gpuctl-demo.starts")
            .trim(),
        "1"
    );

    // Everything in sync: one round trip, nothing written, nothing restarted.
    let second = converge(&lab, ops(1, "a\n"), Mode::Apply).unwrap();
    assert_eq!(second.changes(), 0, "{second:#?}");
    assert_eq!(second.round_trips, 1);
    assert!(!second.applied);

    // A dry run shows the diff and leaves the host alone.
    let dry = converge(&lab, ops(1, "b\n"), Mode::DryRun).unwrap();
    assert_eq!(changed(&dry), ["file /etc/gpuctl-demo.conf"]);
    let Change::Changed(diff) = &dry.steps[1].change else {
        panic!("{dry:#?}")
    };
    assert!(diff.contains("-a\n+b\n"), "{diff}");
    assert_eq!(lab.exec("node1", "cat /etc/gpuctl-demo.conf"), "a\n");

    // A changed file the service does not watch: no restart.
    let conf = converge(&lab, ops(1, "b\n"), Mode::Apply).unwrap();
    assert_eq!(changed(&conf), ["file /etc/gpuctl-demo.conf"]);
    assert_eq!(
        lab.exec("node1", "wc -l < /var/log/gpuctl-demo.starts")
            .trim(),
        "1"
    );

    // The watched JSON changes: merged, and the service restarted once.
    let watched = converge(&lab, ops(2, "b\n"), Mode::Apply).unwrap();
    assert_eq!(
        changed(&watched),
        ["json /etc/gpuctl-demo.json", "service gpuctl-demo"]
    );
    assert_eq!(
        watched.steps[4].change,
        Change::Changed("restart (/etc/gpuctl-demo.json changed)".into())
    );
    assert_eq!(
        lab.exec("node1", "wc -l < /var/log/gpuctl-demo.starts")
            .trim(),
        "2"
    );
    assert!(
        lab.exec("node1", "cat /etc/gpuctl-demo.json")
            .contains("\"admin\": \"keep\"")
    );

    // A command whose guard stays false fails the stage, naming it.
    let err = converge(
        &lab,
        vec![Op::Command {
            run: "true".into(),
            guard: "false".into(),
            undo: None,
            rerun_on: Vec::new(),
        }],
        Mode::Apply,
    )
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("command `true` failed"), "{text}");
    assert!(text.contains("guard is still false"), "{text}");

    // Corrupt JSON is refused, never overwritten.
    lab.exec("node1", "printf '{ broken' > /etc/gpuctl-demo.json");
    let err = converge(&lab, ops(2, "b\n"), Mode::Apply).unwrap_err();
    assert!(format!("{err:#}").contains("is not valid JSON"), "{err:#}");
    assert_eq!(lab.exec("node1", "cat /etc/gpuctl-demo.json"), "{ broken");
}
