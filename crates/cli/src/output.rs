//! Human output (aligned tables) and JSON output for scripts.

use std::fmt::Write as _;

use serde::Serialize;

use crate::exit;

/// A table printed with columns aligned on the widest cell.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Table {
        Table {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are blank).
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// The rendered table, one line per row, no trailing spaces.
    pub fn render(&self) -> String {
        let n = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(n) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |cells: &[String]| {
            let mut l = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = cells.get(i).map_or("", String::as_str);
                let _ = write!(l, "{cell:<w$}  ");
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(&self.headers);
        for row in &self.rows {
            line(row);
        }
        out
    }

    /// Prints the table, or a note when it has no rows.
    pub fn print(&self, empty: &str) {
        if self.rows.is_empty() {
            outln!("{empty}");
        } else {
            out!("{}", self.render());
        }
    }
}

/// Writes to standard output; a closed pipe ends the process with exit 0
/// (the reader has what it wanted), any other write error with
/// [`exit::FAILURE`] and a message. Used through `out!` / `outln!`.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(i32::from(exit::OK));
        }
        eprintln!("error: cannot write to standard output: {err}");
        std::process::exit(i32::from(exit::FAILURE));
    }
}

/// Prints `value` as pretty JSON.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell_without_trailing_spaces() {
        let mut t = Table::new(["KEY", "ON"]);
        t.row(["new-checkout", "yes"]);
        t.row(["a", ""]);
        assert_eq!(t.render(), "KEY           ON\nnew-checkout  yes\na\n");
    }
}
