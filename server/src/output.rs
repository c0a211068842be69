//! What commands print on stdout: lines, aligned tables for people, JSON for scripts. Logs and
//! errors go to stderr, never here.

/// Prints one line on stdout.
pub(crate) fn print_line(text: &str) {
    #[allow(clippy::print_stdout)]
    {
        println!("{text}");
    }
}

/// Prints `rows` under `headers`, each column as wide as its widest cell.
pub(crate) fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let text: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}", w = *w))
            .collect();
        print_line(text.join("  ").trim_end());
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
}

/// Prints `value` as pretty JSON.
pub(crate) fn print_json(value: &serde_json::Value) {
    print_line(&serde_json::to_string_pretty(value).unwrap_or_default());
}
