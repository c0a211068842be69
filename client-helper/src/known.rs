//! The services this user stored a credential for, so that `tollgate-helper status` can list
//! them: providers answer lookups for one URL and have no call that lists what they hold.
//! One normalised URL per line in `$XDG_STATE_HOME/tollgate/services` (no secrets; 0600 like the
//! helper's other files). A store adds its service, a logout removes it; a credential stored
//! some other way (with `secret-tool`, say) is listed once a token was fetched with it.

use std::path::PathBuf;

use crate::files::{Mode, rewrite_locked};

/// Where the list is kept.
pub(crate) fn path() -> Option<PathBuf> {
    crate::config::state_home().map(|d| d.join("tollgate/services"))
}

/// The services remembered, in the order they were first stored; none when there is no list.
pub(crate) fn list() -> Vec<String> {
    path()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|text| parse(&text))
        .unwrap_or_default()
}

fn parse(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Adds `url` to the list (once).
pub(crate) fn remember(url: &str) -> std::io::Result<()> {
    edit(|urls| {
        if !urls.iter().any(|u| u == url) {
            urls.push(url.to_owned());
        }
    })
}

/// Takes `url` off the list.
pub(crate) fn forget(url: &str) -> std::io::Result<()> {
    edit(|urls| urls.retain(|u| u != url))
}

fn edit(change: impl FnOnce(&mut Vec<String>)) -> std::io::Result<()> {
    let Some(path) = path() else {
        return Ok(());
    };
    rewrite_locked(&path, Mode::Exactly(0o600), || {
        let mut urls = match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        change(&mut urls);
        Ok(urls
            .iter()
            .map(|u| format!("{u}\n"))
            .collect::<String>()
            .into_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn one_url_per_line_blank_lines_ignored() {
        assert_eq!(
            parse("https://a.example\n\n  https://b.example/x \n"),
            ["https://a.example", "https://b.example/x"]
        );
    }
}
