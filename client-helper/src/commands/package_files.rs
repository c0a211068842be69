//! `tollgate-helper package-files --out DIR` (hidden): what the Debian package ships beside the
//! binaries, made from the same clap definitions.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::{Cli, out};

#[derive(Debug, Args)]
pub(super) struct PackageFilesArgs {
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// `man/` (this command's page and one per subcommand, gzipped), `completions/` (bash, zsh,
/// fish) and `tollgate-provider.pc`, whose `providersdir` is where the helper finds packaged
/// providers first.
pub(super) fn run(args: &PackageFilesArgs) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    use std::io::Write as _;

    let dir: &Path = &args.out;
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut command = Cli::command();
    command.build();
    let mut pages = vec![(command.get_name().to_owned(), command.clone())];
    for sub in command
        .get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name() != "help")
    {
        let name = format!("{}-{}", command.get_name(), sub.get_name());
        pages.push((name.clone(), sub.clone().display_name(name)));
    }
    for (name, page) in pages {
        let mut roff = Vec::new();
        clap_mangen::Man::new(page).render(&mut roff)?;
        let path = man.join(format!("{name}.1.gz"));
        // No name or time in the gzip header, so that the package builds reproducibly.
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::best());
        gz.write_all(&roff)?;
        std::fs::write(&path, gz.finish()?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let name = command.get_name().to_owned();
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut command, &name, &completions)
            .with_context(|| format!("writing the {shell} completions"))?;
    }
    let pc = format!(
        "prefix=/usr\nincludedir=${{prefix}}/include\nprovidersdir={}\nabi_major={}\n\n\
         Name: tollgate-provider\n\
         Description: Credential-provider plugins for tollgate-helper\n\
         Version: {}\n\
         Cflags: -I${{includedir}}\n",
        crate::chain::PACKAGED_DIR,
        tollgate_plugin_api::abi::ABI_MAJOR,
        env!("CARGO_PKG_VERSION"),
    );
    let path = dir.join("tollgate-provider.pc");
    std::fs::write(&path, pc).with_context(|| format!("writing {}", path.display()))?;
    out(&format!("wrote the package files into {}", dir.display()));
    Ok(ExitCode::SUCCESS)
}
