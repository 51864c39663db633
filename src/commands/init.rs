//! `gpuctl init`: a commented starter inventory, or one converted from Ansible.
//!
//! The output is loaded back before `init` reports success, so what it writes is known to
//! validate (a converted inventory may still name a key file this machine lacks: that is
//! reported, and the file is kept for the admin to fix).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::InitArgs;
use crate::exit::BadInput;
use crate::inventory::{self, LoadOptions, ansible};

pub fn run(args: &InitArgs) -> anyhow::Result<()> {
    let to_stdout = args.out.as_os_str() == "-";
    if !to_stdout && args.out.exists() && !args.force {
        return Err(BadInput(format!(
            "{} already exists; pass --force to overwrite it, or --out to write elsewhere",
            args.out.display()
        ))
        .into());
    }
    let (text, not_converted) = match &args.from_ansible {
        Some(src) => {
            let input = std::fs::read_to_string(src).map_err(|e| {
                BadInput(format!(
                    "cannot read the Ansible inventory {}: {e}",
                    src.display()
                ))
            })?;
            let converted = ansible::convert(&input, &src.display().to_string())
                .map_err(|e| BadInput(e.to_string()))?;
            (converted.yaml, converted.not_converted)
        }
        None => (inventory::STARTER.to_string(), Vec::new()),
    };

    let shown = if to_stdout {
        PathBuf::from("inventory.yaml")
    } else {
        args.out.clone()
    };
    let base_dir = shown
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    // The starter must validate anywhere; a conversion is checked against this machine
    // (its key files and ~/.ssh/config), where it will be used.
    let opts = if args.from_ansible.is_some() {
        LoadOptions::default()
    } else {
        LoadOptions {
            no_ssh_config: true,
            home: Some(base_dir.clone()),
            user: Some("gpuctl".into()),
            ..LoadOptions::default()
        }
    };
    let check = inventory::load_text(&text, &shown, &base_dir, &opts);

    if to_stdout {
        std::io::stdout().write_all(text.as_bytes())?;
    } else {
        crate::state::atomic::write(&args.out, text.as_bytes())
            .with_context(|| format!("cannot write {}", args.out.display()))?;
        eprintln!("wrote {}", args.out.display());
    }
    for line in &not_converted {
        eprintln!("not converted: {line}");
    }
    match check {
        Ok(_) => {
            if !to_stdout {
                eprintln!(
                    "next: edit it, then `gpuctl inventory check --inventory {}`",
                    args.out.display()
                );
            }
            Ok(())
        }
        Err(e) => {
            Err(anyhow::Error::new(e).context("the written inventory needs fixing before use"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(out: &Path, from_ansible: Option<PathBuf>, force: bool) -> InitArgs {
        InitArgs {
            out: out.to_path_buf(),
            from_ansible,
            force,
        }
    }

    #[test]
    fn init_writes_a_starter_that_loads_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let out = dir.path().join("lab.yaml");
        run(&args(&out, None, false)).unwrap_or_else(|e| panic!("{e:#}"));
        let written = std::fs::read_to_string(&out).unwrap_or_default();
        assert_eq!(written, inventory::STARTER);
        let opts = LoadOptions {
            no_ssh_config: true,
            home: Some(dir.path().to_path_buf()),
            user: Some("tester".into()),
            ..LoadOptions::default()
        };
        assert!(inventory::load(&out, &opts).is_ok());

        std::fs::write(&out, "edited").unwrap_or_else(|e| panic!("{e}"));
        let err = run(&args(&out, None, false))
            .err()
            .map(|e| format!("{e:#}"));
        assert!(
            err.as_deref().is_some_and(|e| e.contains("--force")),
            "{err:?}"
        );
        assert_eq!(std::fs::read_to_string(&out).unwrap_or_default(), "edited");

        run(&args(&out, None, true)).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            std::fs::read_to_string(&out).unwrap_or_default(),
            inventory::STARTER
        );
        let leftovers = std::fs::read_dir(dir.path())
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(leftovers, 1, "no temp file is left behind");
    }

    #[test]
    fn init_converts_an_ansible_inventory_to_a_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let src = dir.path().join("hosts.ini");
        std::fs::write(&src, "[kube_control_plane]\nctl ansible_host=10.0.0.1\n[kube_node]\nw[1:2] ansible_host=10.0.0.9\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let out = dir.path().join("lab.yaml");
        // w1 and w2 share an address: the file is written, and the problem is reported.
        let err = run(&args(&out, Some(src), false))
            .err()
            .map(|e| format!("{e:#}"));
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        assert!(text.contains("  - name: w2\n"), "{text}");
        let err = err.unwrap_or_default();
        assert!(err.contains("needs fixing"), "{err}");
        assert!(err.contains("reaches the same place"), "{err}");
    }
}
