//! One function per command. Each takes its parsed arguments, does its work through the
//! layers below, prints its result, and returns an error for `exit` to map to a code.

pub mod bundle;
pub mod connect;
pub mod copy;
pub mod doctor;
pub mod exec;
pub mod init;
pub mod install;
pub mod inventory_check;
pub mod kubeconfig;
pub mod mirror_images;
pub mod mirror_list;
pub mod ping;
pub mod plan;
pub mod render;
pub mod reset;
pub mod users;

use crate::cli::{BundleCommand, Command, InventoryCommand, MirrorImagesCommand, UsersCommand};

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Init(args) => init::run(&args),
        Command::Inventory(InventoryCommand::Check(args)) => inventory_check::run(&args),
        Command::Ping(args) => ping::run(&args).await,
        Command::Exec(args) => exec::run(&args).await,
        Command::Copy(args) => copy::run(&args).await,
        Command::Install(args) => install::run(&args).await,
        Command::Plan(args) => plan::run(&args).await,
        Command::Doctor(args) => doctor::run(&args).await,
        Command::MirrorImages(MirrorImagesCommand::Pull(args)) => mirror_images::pull(&args).await,
        Command::MirrorImages(MirrorImagesCommand::Push(args)) => mirror_images::push(&args).await,
        Command::MirrorImages(MirrorImagesCommand::List(args)) => mirror_list::list(&args),
        Command::MirrorImages(MirrorImagesCommand::Export(args)) => mirror_images::export(&args),
        Command::MirrorImages(MirrorImagesCommand::Check(args)) => {
            mirror_images::check(&args).await
        }
        Command::Reset(args) => reset::run(&args).await,
        Command::Kubeconfig(args) => kubeconfig::run(&args).await,
        Command::Render(args) => render::run(&args),
        Command::Bundle(BundleCommand::Create(args)) => bundle::create(&args).await,
        Command::Bundle(BundleCommand::Verify(args)) => bundle::verify(&args).await,
        Command::Users(UsersCommand::Add(args)) => users::add(&args).await,
        Command::Users(UsersCommand::List(args)) => users::list(&args).await,
        Command::Users(UsersCommand::Remove(args)) => users::remove(&args).await,
    }
}
