//! `gpuctl render`: every template rendered with the inventory, written under `--out`.
//!
//! The same rendering the cluster stages apply, so what an admin reviews (or commits to a
//! GitOps repository) is what install would send.

use crate::cli::RenderArgs;
use crate::exit::BadInput;
use crate::inventory::{self, LoadOptions};
use crate::render::{Source, Templates};

pub fn run(args: &RenderArgs) -> anyhow::Result<()> {
    let inv = inventory::load(&args.inventory.inventory, &LoadOptions::default())?;
    for w in &inv.warnings {
        eprintln!("warning: {w}");
    }
    let templates =
        Templates::load(args.templates.as_deref()).map_err(|e| BadInput(e.to_string()))?;
    let rendered = templates
        .render_all(&inv)
        .map_err(|e| BadInput(e.to_string()))?;
    // Everything is rendered before anything is written: a template error leaves the
    // output directory as it was.
    for r in &rendered {
        let path = args.out.join(&r.name);
        crate::state::atomic::write(&path, r.text.as_bytes()).map_err(|e| {
            BadInput(format!(
                "cannot write {}: {e}; check that --out {} is a writable directory",
                path.display(),
                args.out.display()
            ))
        })?;
        let from = match templates.sources().get(&format!("{}.hbs", r.name)) {
            Some(Source::Override(p)) => format!("  (template {})", p.display()),
            _ => String::new(),
        };
        println!("{}{from}", path.display());
    }
    let skipped = templates.sources().len() - rendered.len();
    eprintln!(
        "{} file{} written to {}{}",
        rendered.len(),
        if rendered.len() == 1 { "" } else { "s" },
        args.out.display(),
        if skipped > 0 {
            format!("; {skipped} template(s) turned off by the inventory rendered nothing")
        } else {
            String::new()
        }
    );
    Ok(())
}
