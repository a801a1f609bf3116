//! CSV for spreadsheet exports: RFC 4180 quoting (a field with a comma, a quote,
//! CR or LF is quoted, quotes doubled; lines end CRLF), and cells defused against
//! formula injection: a text cell that starts with `=`, `+`, `-`, `@`, a tab or CR
//! is prefixed with `'`, so a spreadsheet shows it instead of evaluating it.
//! Small enough not to need a crate.

/// Appends one line of `cells` to `out`.
pub fn write_row<'a>(out: &mut String, cells: impl IntoIterator<Item = &'a str>) {
    for (i, cell) in cells.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_cell(out, cell);
    }
    out.push_str("\r\n");
}

fn write_cell(out: &mut String, cell: &str) {
    let defuse = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = cell.contains([',', '"', '\r', '\n']);
    if quote {
        out.push('"');
    }
    if defuse {
        out.push('\'');
    }
    if quote {
        out.push_str(&cell.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(cell);
    }
}

#[cfg(test)]
mod tests {
    use super::write_row;

    fn line(cells: &[&str]) -> String {
        let mut out = String::new();
        write_row(&mut out, cells.iter().copied());
        out
    }

    #[test]
    fn plain_cells_are_left_alone() {
        assert_eq!(line(&["a", "B-12", "5000", ""]), "a,B-12,5000,\r\n");
        assert_eq!(line(&[]), "\r\n");
    }

    #[test]
    fn separators_quotes_and_newlines_are_quoted() {
        assert_eq!(
            line(&["Doe, Jane", "say \"hi\"", "two\nlines", "cr\r"]),
            "\"Doe, Jane\",\"say \"\"hi\"\"\",\"two\nlines\",\"cr\r\"\r\n"
        );
        assert_eq!(line(&["\""]), "\"\"\"\"\r\n");
    }

    #[test]
    fn formulas_are_defused() {
        assert_eq!(line(&["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "a=b"]), "'=1+1,'+1,'-1,'@SUM(A1),'\tx,a=b\r\n");
        // Defused and quoted: the prefix goes inside the quotes.
        assert_eq!(line(&["=HYPERLINK(\"x\",\"y\")"]), "\"'=HYPERLINK(\"\"x\"\",\"\"y\"\")\"\r\n");
        assert_eq!(line(&["\r=1"]), "\"'\r=1\"\r\n");
    }
}
