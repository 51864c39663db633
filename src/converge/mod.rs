//! Converge: the one executor that turns a stage's Ops into changes on a host.
//!
//! For each host and stage: the Ops are lowered into steps ([`step`]), **one** batched
//! probe round trip reports what the host has for all of them ([`probe`]), a pure
//! decision says what is out of sync and why ([`decide`], with diffs from [`edit`]), and
//! only then are the out-of-sync steps applied: file content through the transport's
//! atomic, verified `put` (which also copes with bind-mounted files such as a container's
//! `/etc/hosts`), everything else in one apply script, with service restarts for watched
//! files last in their place.
//!
//! Dry runs and `gpuctl plan` go through exactly the same path; [`Mode::applies`] is the
//! one place that decides whether the last part happens, so what a dry run shows can never
//! drift from what a real run does.
//!
//! Within a stage, probes see the host as it was when the stage started, and files are
//! written before the apply script runs. A stage whose Ops depend on the effect of an
//! earlier Op's command must be split into two stages.

pub mod decide;
pub mod edit;
pub mod probe;
pub mod step;
pub mod undo;

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use serde::Serialize;

pub use decide::{Change, StepReport};

use crate::fleet::HostCtx;
use crate::plan::Op;
use crate::transport::{Command, PutOptions, SCRIPT_MAX, inline_script};

const PROBE_TIMEOUT: Duration = Duration::from_secs(120);
/// Commands in an apply script may unpack archives or start services; still bounded.
const APPLY_TIMEOUT: Duration = Duration::from_secs(1800);

/// Whether changes are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Apply,
    /// Probe and report what would change; write nothing.
    DryRun,
}

impl Mode {
    /// The one switch between a real run and a dry run.
    pub fn applies(self) -> bool {
        matches!(self, Mode::Apply)
    }
}

/// What converging one stage on one host found and did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StageReport {
    pub steps: Vec<StepReport>,
    /// Changes were made (false in dry runs and when everything was in sync).
    pub applied: bool,
    /// Round trips to the host this stage cost.
    pub round_trips: u32,
}

impl StageReport {
    /// Steps that were (or, in a dry run, would be) changed.
    pub fn changes(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s.change, Change::Changed(_)))
            .count()
    }

    pub fn warnings(&self) -> impl Iterator<Item = (&str, &str)> {
        self.steps
            .iter()
            .filter_map(|s| s.warning.as_deref().map(|w| (s.what.as_str(), w)))
    }
}

/// Probes `ops` on the host and, when `mode` applies, brings every out-of-sync one in line.
pub async fn converge(
    ctx: &HostCtx,
    stage: &str,
    ops: &[Op],
    container: bool,
    mode: Mode,
) -> anyhow::Result<StageReport> {
    converge_steps(ctx, stage, step::lower(stage, ops), container, mode).await
}

/// Probes already lowered `steps` and applies what is out of sync (reset's undo steps
/// come this way; see [`undo`]).
pub async fn converge_steps(
    ctx: &HostCtx,
    stage: &str,
    steps: Vec<step::Step>,
    container: bool,
    mode: Mode,
) -> anyhow::Result<StageReport> {
    let (report, _) = converge_ahead(ctx, stage, &steps, container, mode, None, &[], None).await?;
    Ok(report)
}

/// What a converge learned about the steps of the stages after it.
#[derive(Debug)]
pub enum Ahead {
    /// Their answers, probed after this stage's last change.
    Fresh(Vec<probe::Now>),
    /// This stage changed nothing: answers probed earlier still hold.
    Unchanged,
    /// This stage changed the host and could not probe them afterwards.
    Stale,
}

/// Converges `steps` like [`converge_steps`], sharing round trips with the stages after it:
/// `known` are answers for `steps` probed earlier (nothing changed on the host since), so
/// no probe is sent; otherwise `ahead` (the later stages' steps) is probed in the same round
/// trip. When this stage changes the host, `ahead` is probed again at the end of its apply
/// script. So a run over hosts that are in sync probes all its stages in one round trip,
/// and a stage with changes costs one round trip for them, not one more for the next probe.
/// `before_changes` is a script the host runs before this stage changes anything (the
/// install marks the stage as not done in the host's journal), best effort.
#[allow(clippy::too_many_arguments)]
pub async fn converge_ahead(
    ctx: &HostCtx,
    stage: &str,
    steps: &[step::Step],
    container: bool,
    mode: Mode,
    known: Option<Vec<probe::Now>>,
    ahead: &[step::Step],
    before_changes: Option<&str>,
) -> anyhow::Result<(StageReport, Ahead)> {
    let mut report = StageReport::default();
    if steps.is_empty() {
        return Ok((report, Ahead::Unchanged));
    }
    let (now, learned) = match known.filter(|k| k.len() == steps.len()) {
        Some(now) => {
            ctx.log.note(&format!(
                "{stage}: {} steps, probed with an earlier stage",
                steps.len()
            ));
            (now, Ahead::Unchanged)
        }
        None => probe_host(ctx, stage, steps, ahead, &mut report).await?,
    };
    let decisions = decide::decide(steps, &now, container)?;
    report.steps = decisions.iter().map(|d| d.report.clone()).collect();
    for (s, d) in steps.iter().zip(&decisions) {
        if let Change::Changed(detail) = &d.report.change {
            ctx.log
                .note(&format!("{stage}: {} out of sync\n{detail}", s.describe()));
        }
    }
    let to_do = decisions
        .iter()
        .any(|d| d.action != decide::Action::Nothing);
    if !mode.applies() || !to_do {
        return Ok((report, learned));
    }

    let learned = apply(ctx, stage, &decisions, ahead, before_changes, &mut report).await?;
    Ok((report, learned))
}

/// Probes `steps` and, in the same round trip, `ahead`: the answers for `steps`, and
/// those for `ahead` to hand on.
async fn probe_host(
    ctx: &HostCtx,
    stage: &str,
    steps: &[step::Step],
    ahead: &[step::Step],
    report: &mut StageReport,
) -> anyhow::Result<(Vec<probe::Now>, Ahead)> {
    let all: Vec<step::Step> = steps.iter().chain(ahead).cloned().collect();
    ctx.log.note(&format!(
        "{stage}: probing {} steps{}",
        steps.len(),
        if ahead.is_empty() {
            String::new()
        } else {
            format!(" and {} of the stages after it", ahead.len())
        }
    ));
    let out = ctx
        .run(
            Command::new(probe::script(&all))
                .sudo(true)
                .timeout(PROBE_TIMEOUT),
        )
        .await
        .context("probing the host")?;
    report.round_trips += 1;
    if !out.success() {
        bail!(
            "the probe exited with {:?}: {}",
            out.status,
            out.stderr_str().trim()
        );
    }
    let mut now = probe::parse(&all, &out.stdout_str()).map_err(|e| anyhow!(e))?;
    let rest = now.split_off(steps.len());
    Ok((now, Ahead::Fresh(rest)))
}

/// Applies what `decisions` say is out of sync: uploads, then one apply script with the
/// files that fit in it, the commands and, at its end, the probe of `ahead`. Returns what
/// it learned of `ahead`.
async fn apply(
    ctx: &HostCtx,
    stage: &str,
    decisions: &[decide::Decision],
    ahead: &[step::Step],
    before_changes: Option<&str>,
    report: &mut StageReport,
) -> anyhow::Result<Ahead> {
    report.applied = true;
    let mut learned = Ahead::Stale;
    // Small files travel inside the apply script, written before its commands as a put
    // would have, while the script stays under SCRIPT_MAX; the others, and every secret,
    // go through the transport's put, after the uploads.
    let ahead_probe = if ahead.is_empty() {
        String::new()
    } else {
        probe::script(ahead)
    };
    let commands: usize = decisions
        .iter()
        .map(|d| match &d.action {
            // The snippet and the apply script's wrapping of it.
            decide::Action::Run { snippet, .. } => snippet.len() + 200,
            _ => 0,
        })
        .sum();
    let mut room = SCRIPT_MAX
        .saturating_sub(before_changes.map_or(0, str::len) + ahead_probe.len() + commands + 200);
    let mut inline = Vec::new();
    let mut puts = Vec::new();
    for (i, d) in decisions.iter().enumerate() {
        if let decide::Action::Put {
            path,
            content,
            mode,
            owner,
            secret,
        } = &d.action
        {
            let opts = PutOptions {
                mode: *mode,
                owner: owner.clone(),
                sudo: true,
                ..PutOptions::default()
            };
            let script = (!secret)
                .then(|| inline_script(path, content, &opts))
                .filter(|script| script.len() + 200 <= room);
            match script {
                Some(script) => {
                    room -= script.len() + 200;
                    inline.push((i, script));
                }
                None => puts.push((i, path, content, opts)),
            }
        }
    }
    let uploads: Vec<_> = decisions
        .iter()
        .filter_map(|d| match &d.action {
            decide::Action::Upload {
                src,
                dest,
                sha256,
                mode,
            } => Some((src, dest, sha256, *mode)),
            _ => None,
        })
        .collect();
    // Whatever changes the host before the apply script needs the script run before
    // changes to have run first, in a round trip of its own.
    let mut before = before_changes;
    if (!uploads.is_empty() || !puts.is_empty())
        && let Some(script) = before.take()
    {
        let out = ctx.run(Command::new(script).sudo(true)).await;
        if !out.as_ref().is_ok_and(|o| o.success()) {
            ctx.log
                .note(&format!("{stage}: the script run before changes failed"));
        }
        report.round_trips += 1;
    }
    for (src, dest, sha256, mode) in uploads {
        upload(ctx, src, dest, sha256, mode)
            .await
            .with_context(|| format!("uploading {src} to {dest}"))?;
        report.round_trips += 2;
        ctx.log.note(&format!("{stage}: uploaded {dest}"));
    }
    for (i, path, content, opts) in puts {
        put(ctx, path, content, opts)
            .await
            .with_context(|| format!("writing {path}"))?;
        report.round_trips += 2;
        ctx.log.note(&format!("{stage}: wrote step {i} ({path})"));
    }
    let mut runs: Vec<(usize, &str, bool)> = inline
        .iter()
        .map(|(i, script)| (*i, script.as_str(), true))
        .collect();
    runs.extend(
        decisions
            .iter()
            .enumerate()
            .filter_map(|(i, d)| match &d.action {
                decide::Action::Run { snippet, fatal } => Some((i, snippet.as_str(), *fatal)),
                _ => None,
            }),
    );
    if runs.is_empty() {
        return Ok(learned);
    }
    let mut script = String::new();
    if let Some(pre) = before {
        script.push_str(&format!("( {pre}\n) >/dev/null 2>&1\n"));
    }
    script.push_str(&decide::apply_script(&runs));
    if !ahead.is_empty() {
        script.push_str(&format!("echo {AHEAD}\n"));
        script.push_str(&ahead_probe);
    }
    let out = ctx
        .run(Command::new(script).sudo(true).timeout(APPLY_TIMEOUT))
        .await
        .context("applying changes")?;
    report.round_trips += 1;
    let stdout = out.stdout_str();
    let (text, ahead_text) = match stdout.split_once(&format!("\n{AHEAD}\n")) {
        Some((applied, probed)) => (format!("{applied}\n"), Some(probed)),
        None => (stdout.to_string(), None),
    };
    for (i, _, fatal) in &runs {
        let line = text.lines().find(|l| l.starts_with(&format!("@{i} ")));
        let what = report.steps[*i].what.clone();
        match line.map(|l| l.splitn(3, ' ').collect::<Vec<_>>()) {
            Some(words) if words.get(1) == Some(&"ok") => {
                // A container that did accept a live setting: a change after all.
                let step = &mut report.steps[*i];
                if let Change::Refused(detail) = &step.change {
                    step.change = Change::Changed(detail.clone());
                    step.warning = None;
                }
            }
            Some(words) if words.get(1) == Some(&"fail") => {
                let msg = words
                    .get(2)
                    .and_then(|b| data_encoding::BASE64.decode(b.as_bytes()).ok())
                    .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                    .unwrap_or_default();
                if *fatal {
                    bail!("{what} failed: {msg}");
                }
                report.steps[*i].warning = Some(format!(
                    "refused live ({msg}); {}",
                    decide::CONTAINER_KERNEL
                ));
            }
            // An earlier fatal step stopped the script; its error was raised above.
            _ if !text.lines().any(|l| l == "@end") => {
                bail!(
                    "the apply script stopped before {what} (exit {:?}): {}",
                    out.status,
                    out.stderr_str().trim()
                )
            }
            _ => bail!("the apply script said nothing about {what}"),
        }
    }
    // The apply itself went through; a probe answer that does not parse only means the
    // next stage probes again.
    if let Some(probed) = ahead_text
        && let Ok(now) = probe::parse(ahead, probed)
    {
        learned = Ahead::Fresh(now);
    }
    Ok(learned)
}

/// The line between an apply script's answers and the probe of the stages after it.
const AHEAD: &str = "@@ahead";

/// Puts the local artifact `src` at `dest` (resumable; the transport verifies the host's
/// sha256 against the local file's) and checks that the local file is still the one the
/// Op names: a bundle file changed after it was verified must not land on a host.
async fn upload(
    ctx: &HostCtx,
    src: &str,
    dest: &str,
    sha256: &str,
    mode: u32,
) -> anyhow::Result<()> {
    let opts = PutOptions {
        mode: Some(mode),
        owner: Some("root:root".into()),
        sudo: true,
        ..PutOptions::default()
    };
    let report = ctx.put(std::path::Path::new(src), dest, &opts).await?;
    if report.sha256 != sha256 {
        bail!(
            "{src} has sha256 {} now, not {sha256} as when it was verified: the bundle \
             changed during the run; verify it and run again",
            report.sha256
        );
    }
    Ok(())
}

/// Writes `content` to `path` on the host through the transport's put (a local temp file
/// is its source; it is removed when this returns).
async fn put(ctx: &HostCtx, path: &str, content: &[u8], opts: PutOptions) -> anyhow::Result<()> {
    let mut local = tempfile::NamedTempFile::new().context("creating a local temp file")?;
    local.write_all(content)?;
    local.flush()?;
    let opts = PutOptions {
        // Config files are small: no transfer bar.
        progress: Some(Arc::new(|_| {})),
        ..opts
    };
    ctx.put(local.path(), path, &opts).await?;
    Ok(())
}
