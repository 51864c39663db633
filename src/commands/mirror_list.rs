//! `gpuctl mirror-images list`: every image an install uses, found in an images file and
//! in manifests, printed one per line with where it was found, or written as an images
//! file for `mirror-images pull`. See `docs/mirror.md`, "Finding every image".

use crate::cli::{ListOutput, MirrorListArgs};
use crate::exit::BadInput;
use crate::mirror::discover::{discover, images_file_text};

pub fn list(args: &MirrorListArgs) -> anyhow::Result<()> {
    let found = discover(args.images.as_deref(), &args.manifests).map_err(BadInput)?;
    if args.output == ListOutput::Images {
        if found.is_empty() {
            return Err(BadInput(
                "no images found, so there is no images file to write; check the --manifests paths"
                    .to_string(),
            )
            .into());
        }
        print!("{}", images_file_text(&found));
        return Ok(());
    }
    for image in &found {
        let Some(first) = image.places.first() else {
            continue;
        };
        if args.verbose {
            println!("{}", image.reference);
            for place in &image.places {
                println!("    {place}");
            }
            continue;
        }
        let more = image.places.len() - 1;
        if more == 0 {
            println!("{}  {first}", image.reference);
        } else {
            println!(
                "{}  {first}  (+{more} more place{})",
                image.reference,
                if more == 1 { "" } else { "s" }
            );
        }
    }
    eprintln!(
        "{} image{} found",
        found.len(),
        if found.len() == 1 { "" } else { "s" }
    );
    Ok(())
}
