//! `gpuctl bundle create|verify` (see `bundle::create` and `bundle::Bundle`).

use crate::bundle::Bundle;
use crate::bundle::create::{self, Options};
use crate::cli::{BundleCreateArgs, BundleVerifyArgs};
use crate::exit::BadInput;

pub async fn create(args: &BundleCreateArgs) -> anyhow::Result<()> {
    let spec = create::load_spec(&args.spec).map_err(|e| BadInput(format!("{e:#}")))?;
    let spec_dir = args
        .spec
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(
            || std::path::PathBuf::from("."),
            std::path::Path::to_path_buf,
        );
    let opts = Options {
        out: args.out.clone(),
        base_url: args.base_url.clone(),
        spec_dir,
    };
    let summary = create::create(&spec, &opts).await?;
    for path in &summary.downloaded {
        println!("downloaded {path}");
    }
    for path in &summary.present {
        println!("kept       {path} (already there, sha256 as pinned)");
    }
    for path in &summary.rendered {
        println!("rendered   {path}");
    }
    println!(
        "bundle {} in {}: {} files listed in bundle.yaml",
        spec.name,
        args.out.display(),
        summary.files
    );
    Ok(())
}

pub async fn verify(args: &BundleVerifyArgs) -> anyhow::Result<()> {
    let bundle = Bundle::load(&args.bundle).map_err(|e| BadInput(e.to_string()))?;
    bundle.verify("").await?;
    let bytes: u64 = bundle.files.iter().map(|f| f.size).sum();
    println!(
        "bundle {} in {}: {} files, {bytes} bytes, every sha256 and size as bundle.yaml says",
        bundle.name,
        bundle.dir.display(),
        bundle.files.len()
    );
    Ok(())
}
