//! The batched probe: one generated shell script per host and stage that reports, for
//! every step, what the host has now — a file's mode, owner and content, a live sysctl,
//! whether a module is loaded, a service's state, whether a command's guard holds.
//!
//! One round trip checks the whole stage, so a re-run over an installed cluster costs a
//! handful of round trips per host instead of one per Op. Answers are `@<index> <kind>
//! ...` lines; free text travels base64-encoded so no file content can break the framing,
//! and a final `@end` proves nothing was cut off.

use std::collections::HashMap;

use super::step::{Edit, Step};
use crate::transport::shell::quote;

/// Files bigger than this are not read back: they are not the config files Ops manage.
pub const MAX_FILE: u64 = 4 * 1024 * 1024;

/// What the host has now for one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Now {
    /// A file that does not exist.
    Missing,
    File {
        mode: u32,
        owner: String,
        content: Vec<u8>,
    },
    /// A directory, a device, or a file over [`MAX_FILE`]: never overwritten.
    NotAFile(String),
    Sysctl {
        /// The live value, whitespace-normalised; `None` when the key does not exist.
        value: Option<String>,
        /// `/proc/sys` takes writes here (a container's is usually mounted read-only).
        writable: bool,
    },
    Module {
        loaded: bool,
        /// The host has modules for its running kernel to load (a container has none).
        loadable: bool,
    },
    Service {
        enabled: String,
        active: String,
    },
    Command {
        done: bool,
    },
    /// An uploaded file's mode and sha256 (lowercase hex).
    Hash {
        mode: u32,
        sha256: String,
    },
    /// A file holding a secret: its mode, owner and sha256, never its content.
    SecretFile {
        mode: u32,
        owner: String,
        sha256: String,
    },
}

/// The probe's shell functions. Each process they start is paid on every host (and where
/// a host is a container, again by its filesystem), so steps of one kind share them:
/// - the regular files of a probe (`p_each` sorts out the missing and odd ones) are read by
///   one `stat`, one `cat` and one `base64`; their contents travel as one blob, cut by
///   offset;
/// - all uploads are hashed by one `stat` and one hash process;
/// - all live sysctls are read by one `grep -H` (each line `PATH:VALUE`): the kernel answers
///   only whole reads, so the shell's byte-wise `read` cannot take them;
/// - module names and the kernel release are worked out by the shell itself;
/// - `base64 -w 0` is tried on the data itself: a `base64` without `-w` (BusyBox) fails
///   before it reads anything, and the portable form takes the same input.
///
/// A service costs one `systemctl show` for both its unit-file and its active state (no
/// `-p`: some systemctl implementations honour only the last one given); a systemctl
/// whose `show` lacks `ActiveState` is asked `is-enabled` and `is-active` instead. A unit
/// that does not exist is `not-found`, whatever unit-file state a stand-in makes up for it.
const FUNCTIONS: &str = r#"LC_ALL=C; export LC_ALL
NL='
'
b64() { base64 -w 0 2>/dev/null || base64 | tr -d '\n'; }
p_notfile() { echo "@$1 notfile $(printf "$2" "$3" | b64)"; }
p_each() {
  fn=$1; shift; r=
  while [ $# -gt 1 ]; do
    if [ ! -e "$2" ]; then echo "@$1 missing"
    elif [ ! -f "$2" ]; then p_notfile "$1" 'it is not a regular file'
    else r="$r$1 $2$NL"; fi
    shift 2
  done
  set --; idx=
  while IFS= read -r l; do
    [ -n "$l" ] || continue
    idx="$idx ${l%% *}"; set -- "$@" "${l#* }"
  done <<EOS
$r
EOS
  if [ $# -gt 0 ]; then "$fn" "$@"; fi
}
p_count() { c=0; t=$1; while [ -n "$t" ]; do c=$((c+1)); t=${t#*"$NL"}; done; }
p_file() {
  if [ ! -e "$2" ]; then echo "@$1 missing"; return; fi
  if [ ! -f "$2" ]; then p_notfile "$1" 'it is not a regular file'; return; fi
  st=$(stat -c '%s %a %U:%G' "$2"); size=${st%% *}
  if [ "$size" -gt MAX_FILE ]; then p_notfile "$1" 'it is %s bytes, more than gpuctl manages in a file' "$size"; return; fi
  echo "@$1 file ${st#* } $(b64 < "$2")"
}
p_files() {
  st=$(stat -c '%s %a %U:%G' "$@")$NL; p_count "$st"
  if [ "$c" != $# ]; then
    for i in $idx; do p_file "$i" "$1"; shift; done
    return 0
  fi
  o=0
  for i in $idx; do
    l=${st%%"$NL"*}; st=${st#*"$NL"}; size=${l%% *}; f=$1; shift
    if [ "$size" -gt MAX_FILE ]; then p_notfile "$i" 'it is %s bytes, more than gpuctl manages in a file' "$size"; continue; fi
    echo "@$i file ${l#* } $o $size"; o=$((o+size)); set -- "$@" "$f"
  done
  if [ $# -gt 0 ]; then echo "@blob $(cat -- "$@" | b64)"; fi
}
p_sysctls() {
  n=$(($# / 2))
  while [ "$n" -gt 0 ]; do
    i=$1; k=$2; shift 2; n=$((n - 1)); f=/proc/sys
    while :; do case $k in *.*) f=$f/${k%%.*}; k=${k#*.};; *) f=$f/$k; break;; esac; done
    if [ -w "$f" ] || [ ! -e "$f" ]; then w=rw; else w=ro; fi
    echo "@$i sysctl $w $f"
    if [ -r "$f" ]; then set -- "$@" "$f"; fi
  done
  if [ $# -gt 0 ]; then grep -H '' "$@" 2>/dev/null; fi
}
p_module() {
  m=; k=$2
  while :; do case $k in *-*) m=$m${k%%-*}_; k=${k#*-};; *) m=$m$k; break;; esac; done
  if [ -d "/sys/module/$m" ]; then echo "@$1 module loaded"; return; fi
  [ -n "$kr" ] || read -r kr < /proc/sys/kernel/osrelease || kr=$(uname -r)
  d=/lib/modules/$kr
  if [ ! -d "$d" ]; then echo "@$1 module absent nomodules"
  elif grep -qs "/$2.ko" "$d/modules.builtin"; then echo "@$1 module loaded"
  else echo "@$1 module absent"; fi
}
p_service() {
  e=; a=; n=; s=$(systemctl show "$2" 2>/dev/null)
  while IFS= read -r l; do
    case $l in UnitFileState=*) e=${l#*=};; ActiveState=*) a=${l#*=};; LoadState=not-found) n=1;; esac
  done <<EOS
$s
EOS
  if [ -n "$n" ]; then e=not-found; fi
  if [ -z "$a" ]; then
    e=$(systemctl is-enabled "$2" 2>/dev/null); a=$(systemctl is-active "$2" 2>/dev/null)
    e=${e%%"$NL"*}; a=${a%%"$NL"*}
  fi
  echo "@$1 service ${e:-unknown} ${a:-unknown}"
}
p_hash() {
  if command -v openssl >/dev/null 2>&1; then h=$(openssl dgst -sha256 -r < "$1"); else h=$(sha256sum < "$1"); fi
  h=${h%% *}
}
p_sha() {
  if [ ! -e "$2" ]; then echo "@$1 missing"; return; fi
  if [ ! -f "$2" ]; then p_notfile "$1" 'it is not a regular file'; return; fi
  p_hash "$2"; echo "@$1 sha $(stat -c %a "$2") $h"
}
p_shas() {
  ms=$(stat -c %a "$@")$NL
  if command -v openssl >/dev/null 2>&1; then hl=$(openssl dgst -sha256 -r "$@"); else hl=$(sha256sum "$@"); fi
  hl=$hl$NL; p_count "$ms"; a=$c; p_count "$hl"
  if [ "$a" != $# ] || [ "$c" != $# ]; then
    for i in $idx; do p_sha "$i" "$1"; shift; done
    return 0
  fi
  for i in $idx; do
    m=${ms%%"$NL"*}; ms=${ms#*"$NL"}; h=${hl%%"$NL"*}; hl=${hl#*"$NL"}
    echo "@$i sha $m ${h%% *}"
  done
}
p_fsha() {
  if [ ! -e "$2" ]; then echo "@$1 missing"; return; fi
  if [ ! -f "$2" ]; then p_notfile "$1" 'it is not a regular file'; return; fi
  p_hash "$2"; echo "@$1 fsha $(stat -c '%a %U:%G' "$2") $h"
}
p_guard() {
  if sh -c "$2" >/dev/null 2>&1 </dev/null; then echo "@$1 command done"; else echo "@$1 command todo"; fi
}
"#;

/// The probe script for `steps`.
pub fn script(steps: &[Step]) -> String {
    let mut s = FUNCTIONS.replace("MAX_FILE", &MAX_FILE.to_string());
    // Files are read together, uploads hashed together, sysctls read together (see
    // FUNCTIONS).
    let mut files = String::new();
    let mut uploads = String::new();
    let mut sysctls = String::new();
    for (i, step) in steps.iter().enumerate() {
        let line = match step {
            Step::Content {
                path,
                edit: Edit::Secret(_),
                ..
            } => format!("p_fsha {i} {}", quote(path)),
            Step::Content { path, .. } => {
                files.push_str(&format!(" {i} {}", quote(path)));
                continue;
            }
            Step::Upload { dest, .. } => {
                uploads.push_str(&format!(" {i} {}", quote(dest)));
                continue;
            }
            Step::LiveSysctl { key, .. } => {
                sysctls.push_str(&format!(" {i} {}", quote(key)));
                continue;
            }
            Step::LiveModule { name } => format!("p_module {i} {}", quote(name)),
            Step::Service { name, .. } => format!("p_service {i} {}", quote(name)),
            Step::Command { guard, .. } => format!("p_guard {i} {}", quote(guard)),
            Step::Require { check, .. } => format!("p_guard {i} {}", quote(check)),
        };
        s.push_str(&line);
        s.push('\n');
    }
    if !files.is_empty() {
        s.push_str(&format!("p_each p_files{files}\n"));
    }
    if !sysctls.is_empty() {
        s.push_str(&format!("p_sysctls{sysctls}\n"));
    }
    if !uploads.is_empty() {
        s.push_str(&format!("p_each p_shas{uploads}\n"));
    }
    s.push_str("echo @end\n");
    s
}

/// Reads the probe's answer: one [`Now`] per step, in order.
pub fn parse(steps: &[Step], output: &str) -> Result<Vec<Now>, String> {
    if !output.lines().any(|l| l == "@end") {
        return Err("the probe's answer was cut off (no @end line)".into());
    }
    let mut answers: HashMap<usize, Vec<&str>> = HashMap::new();
    let mut blob = None;
    // Live sysctl values, from `grep -H`: every line of a file is `PATH:LINE`.
    let mut sysctl_values: HashMap<&str, Vec<&str>> = HashMap::new();
    for line in output.lines() {
        if line.starts_with("/proc/sys/")
            && let Some((path, value)) = line.split_once(':')
        {
            sysctl_values.entry(path).or_default().push(value);
            continue;
        }
        let Some(rest) = line.strip_prefix('@') else {
            continue;
        };
        if let Some(b) = rest.strip_prefix("blob ") {
            blob = Some(
                data_encoding::BASE64
                    .decode(b.as_bytes())
                    .map_err(|e| format!("bad base64 in the probe's answer: {e}"))?,
            );
            continue;
        }
        let mut words = rest.split(' ');
        if let Some(Ok(i)) = words.next().map(str::parse::<usize>) {
            answers.insert(i, words.collect());
        }
    }
    let decode = |text: &str| {
        data_encoding::BASE64
            .decode(text.as_bytes())
            .map_err(|e| format!("bad base64 in the probe's answer: {e}"))
    };
    let mut out = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let words = answers
            .get(&i)
            .ok_or_else(|| format!("the probe said nothing about {}", step.describe()))?;
        let bad = || format!("odd probe answer for {}: {words:?}", step.describe());
        let now = match (step, words.as_slice()) {
            (Step::Content { .. }, ["missing"]) => Now::Missing,
            (Step::Content { .. }, ["notfile", why]) => {
                Now::NotAFile(String::from_utf8_lossy(&decode(why)?).into_owned())
            }
            (Step::Content { .. }, ["fsha", mode, owner, sha256]) => Now::SecretFile {
                mode: u32::from_str_radix(mode, 8).map_err(|_| bad())?,
                owner: (*owner).to_string(),
                sha256: (*sha256).to_string(),
            },
            (Step::Content { .. }, ["file", mode, owner, offset, size]) => Now::File {
                mode: u32::from_str_radix(mode, 8).map_err(|_| bad())?,
                owner: (*owner).to_string(),
                content: {
                    let at: usize = offset.parse().map_err(|_| bad())?;
                    let len: usize = size.parse().map_err(|_| bad())?;
                    blob.as_deref()
                        .and_then(|b| b.get(at..at.checked_add(len)?))
                        .ok_or_else(|| {
                            format!(
                                "{} changed while it was probed (its content is not the size \
                                 stat gave); run again",
                                step.describe()
                            )
                        })?
                        .to_vec()
                },
            },
            (Step::Content { .. }, ["file", mode, owner, rest @ ..]) => Now::File {
                mode: u32::from_str_radix(mode, 8).map_err(|_| bad())?,
                owner: (*owner).to_string(),
                content: decode(rest.first().copied().unwrap_or(""))?,
            },
            (Step::LiveSysctl { .. }, ["sysctl", w, path]) => Now::Sysctl {
                // `None`: the key does not exist (or cannot be read).
                value: sysctl_values
                    .get(path)
                    .map(|lines| normalise(&lines.join(" "))),
                writable: *w != "ro",
            },
            (Step::LiveModule { .. }, ["module", state, rest @ ..]) => Now::Module {
                loaded: *state == "loaded",
                loadable: rest.first() != Some(&"nomodules"),
            },
            (Step::Service { .. }, ["service", enabled, active]) => Now::Service {
                enabled: (*enabled).to_string(),
                active: (*active).to_string(),
            },
            (Step::Command { .. } | Step::Require { .. }, ["command", state]) => Now::Command {
                done: *state == "done",
            },
            (Step::Upload { .. }, ["missing"]) => Now::Missing,
            (Step::Upload { .. }, ["notfile", why]) => {
                Now::NotAFile(String::from_utf8_lossy(&decode(why)?).into_owned())
            }
            (Step::Upload { .. }, ["sha", mode, sha256]) => Now::Hash {
                mode: u32::from_str_radix(mode, 8).map_err(|_| bad())?,
                sha256: (*sha256).to_string(),
            },
            _ => return Err(bad()),
        };
        out.push(now);
    }
    Ok(out)
}

/// Sysctl values compared as the kernel prints them: words separated by single spaces.
pub fn normalise(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether a step is a file whose content is managed as a whole (mode/owner enforced).
pub fn is_whole(step: &Step) -> bool {
    matches!(
        step,
        Step::Content {
            edit: Edit::Whole(_) | Edit::Secret(_),
            ..
        }
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn steps() -> Vec<Step> {
        vec![
            Step::Content {
                path: "/etc/hosts".into(),
                edit: Edit::Whole("x".into()),
                mode: Some(0o644),
                owner: Some("root:root".into()),
            },
            Step::LiveSysctl {
                key: "net.ipv4.ip_forward".into(),
                value: "1".into(),
            },
            Step::LiveModule {
                name: "overlay".into(),
            },
            Step::Service {
                name: "ssh".into(),
                enabled: true,
                running: true,
                restart_on: vec![],
            },
            Step::Command {
                run: "mkdir -p /d".into(),
                guard: "test -d '/d'".into(),
                undo: None,
                rerun_on: Vec::new(),
            },
            Step::Content {
                path: "/nope".into(),
                edit: Edit::Whole(String::new()),
                mode: None,
                owner: None,
            },
            Step::Upload {
                src: "/bundle/a.deb".into(),
                dest: "/var/cache/gpuctl/debs/a.deb".into(),
                sha256: "ab".repeat(32),
                mode: 0o644,
            },
            Step::Require {
                check: "command -v dockerd".into(),
                message: "install docker".into(),
            },
        ]
    }

    #[test]
    fn the_script_quotes_every_argument() {
        let s = script(&steps());
        assert!(s.contains("p_guard 4 'test -d '\\''/d'\\'''\n"), "{s}");
        assert!(s.contains("p_each p_files 0 /etc/hosts 5 /nope\n"), "{s}");
        assert!(
            s.contains("p_each p_shas 6 /var/cache/gpuctl/debs/a.deb\n"),
            "{s}"
        );
        assert!(s.contains("p_guard 7 'command -v dockerd'\n"), "{s}");
        assert!(s.ends_with("echo @end\n"));
    }

    #[test]
    fn answers_are_read_per_step() {
        let out = "noise\n@0 file 644 root:root aGVsbG8K\n@1 sysctl rw /proc/sys/net/ipv4/ip_forward\n/proc/sys/net/ipv4/ip_forward:1\n@2 module loaded\n\
                   @3 service enabled active\n@4 command todo\n@5 missing\n\
                   @6 sha 644 0123abcd\n@7 command done\n@end\n";
        let now = parse(&steps(), out).unwrap();
        assert_eq!(
            now[0],
            Now::File {
                mode: 0o644,
                owner: "root:root".into(),
                content: b"hello\n".to_vec()
            }
        );
        assert_eq!(
            now[1],
            Now::Sysctl {
                value: Some("1".into()),
                writable: true
            }
        );
        assert_eq!(
            now[2],
            Now::Module {
                loaded: true,
                loadable: true
            }
        );
        assert_eq!(now[4], Now::Command { done: false });
        assert_eq!(now[5], Now::Missing);
        assert_eq!(
            now[6],
            Now::Hash {
                mode: 0o644,
                sha256: "0123abcd".into()
            }
        );
        assert_eq!(now[7], Now::Command { done: true });
        // An empty file has no base64 word at all.
        let empty = out.replace("aGVsbG8K", "");
        assert!(
            matches!(&parse(&steps(), &empty).unwrap()[0], Now::File { content, .. } if content.is_empty())
        );
    }

    /// The script runs under this machine's `sh` and answers what the files hold.
    #[test]
    fn the_probe_runs_under_sh_and_reads_the_truth() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("conf");
        std::fs::write(&file, "a = 1\n\tb\n").unwrap();
        let path = |p: &std::path::Path| p.display().to_string();
        let content = |p: String| Step::Content {
            path: p,
            edit: Edit::Whole(String::new()),
            mode: None,
            owner: None,
        };
        let other = dir.path().join("other file");
        std::fs::write(&other, "").unwrap();
        let third = dir.path().join("third");
        std::fs::write(&third, "x\ny").unwrap();
        let upload = |dest: String| Step::Upload {
            src: String::new(),
            dest,
            sha256: String::new(),
            mode: 0o644,
        };
        let steps = vec![
            content(path(&file)),
            content(path(dir.path())),
            content(path(&dir.path().join("missing"))),
            Step::LiveSysctl {
                key: "kernel.ostype".into(),
                value: String::new(),
            },
            Step::Upload {
                src: String::new(),
                dest: path(&file),
                sha256: String::new(),
                mode: 0o644,
            },
            Step::Content {
                path: path(&file),
                edit: Edit::Secret(String::new()),
                mode: None,
                owner: None,
            },
            Step::Require {
                check: "true".into(),
                message: String::new(),
            },
            // Uploads are hashed in one batch; these sit around the first one above.
            upload(path(dir.path())),
            upload(path(&dir.path().join("missing"))),
            upload(path(&other)),
            // Files share one blob, cut by offset: an empty one, then another with content.
            content(path(&other)),
            content(path(&third)),
            // An integer sysctl: the kernel answers only a whole read of it.
            Step::LiveSysctl {
                key: "kernel.pid_max".into(),
                value: String::new(),
            },
        ];
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script(&steps))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let now = parse(&steps, &text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777
        };
        assert!(
            matches!(&now[0], Now::File { content, mode: m, .. } if content == b"a = 1\n\tb\n" && *m == mode),
            "{:?}",
            now[0]
        );
        assert!(
            matches!(&now[1], Now::NotAFile(why) if why.contains("not a regular file")),
            "{:?}",
            now[1]
        );
        assert_eq!(now[2], Now::Missing);
        assert!(
            matches!(&now[3], Now::Sysctl { value: Some(v), .. } if v == "Linux"),
            "{:?}",
            now[3]
        );
        let sha: String = {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(std::fs::read(&file).unwrap());
            digest.iter().map(|b| format!("{b:02x}")).collect()
        };
        assert_eq!(
            now[4],
            Now::Hash {
                mode,
                sha256: sha.clone()
            }
        );
        assert!(
            matches!(&now[5], Now::SecretFile { sha256, .. } if *sha256 == sha),
            "{:?}",
            now[5]
        );
        assert_eq!(now[6], Now::Command { done: true });
        assert!(matches!(&now[7], Now::NotAFile(_)), "{:?}", now[7]);
        assert_eq!(now[8], Now::Missing);
        let other_mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(&other).unwrap().permissions().mode() & 0o7777
        };
        assert_eq!(
            now[9],
            Now::Hash {
                mode: other_mode,
                // sha256 of nothing.
                sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into()
            }
        );
        assert!(
            matches!(&now[10], Now::File { content, .. } if content.is_empty()),
            "{:?}",
            now[10]
        );
        assert!(
            matches!(&now[11], Now::File { content, .. } if content == b"x\ny"),
            "{:?}",
            now[11]
        );
        let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap();
        assert!(
            matches!(&now[12], Now::Sysctl { value: Some(v), .. } if v == pid_max.trim()),
            "{:?}",
            now[12]
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn a_file_that_changed_while_probed_is_an_error() {
        let steps = vec![Step::Content {
            path: "/etc/hosts".into(),
            edit: Edit::Whole("x".into()),
            mode: None,
            owner: None,
        }];
        // stat said 5 bytes, the blob holds 4.
        let err = parse(&steps, "@0 file 644 root:root 0 5\n@blob aGVsbA==\n@end\n").unwrap_err();
        assert!(err.contains("changed while it was probed"), "{err}");
    }

    #[test]
    fn a_cut_off_answer_is_an_error() {
        let err = parse(&steps(), "@0 missing\n").unwrap_err();
        assert!(err.contains("cut off"), "{err}");
        let err = parse(&steps(), "@0 missing\n@end\n").unwrap_err();
        assert!(err.contains("said nothing about sysctl"), "{err}");
    }
}
