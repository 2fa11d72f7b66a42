//! `baton.query`'s gate: a statement is admitted only if it is read-only by construction.
//!
//! The text is tokenized and parsed with `sqlparser`'s MySQL dialect (never matched as a
//! substring), and admitted only when it is exactly one `SELECT` (or `WITH ... SELECT`) or one
//! `SHOW`, and:
//!
//! - no `INTO` anywhere (`INTO OUTFILE`/`DUMPFILE` write files as the server's OS user; `INTO @v`
//!   is refused with them: nothing a script needs);
//! - no locking read (`FOR UPDATE`, `FOR SHARE`, `LOCK IN SHARE MODE`);
//! - no call of a function that reads files, takes or releases named locks (Baton's own
//!   cross-process lock is a named lock), waits on replication, or burns server CPU;
//! - no comment at all, and no backslash: MySQL runs `/*! ... */`, and
//!   its comment and escape rules depend on `sql_mode`, so text on which a tokenizer and the server
//!   could disagree is refused rather than guessed at (bind values as parameters instead).
//!
//! The statement then runs inside `START TRANSACTION READ ONLY` (so a stored function cannot write
//! a table), and as `scripts.query_user` where one is configured.

use sqlparser::ast::{SetExpr, Statement};
use sqlparser::dialect::MySqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

/// Functions a read-only script query may not call (lower case).
const DENIED_FUNCTIONS: &[&str] = &[
    // files
    "load_file",
    // named locks: Baton's own cluster lock is one
    "get_lock",
    "release_lock",
    "release_all_locks",
    // waits and CPU burners
    "sleep",
    "benchmark",
    "master_pos_wait",
    "source_pos_wait",
    "master_gtid_wait",
    "wait_for_executed_gtid_set",
    "wait_until_sql_thread_after_gtids",
    // common shell-out UDFs (lib_mysqludf_sys)
    "sys_exec",
    "sys_eval",
];

/// Why `sql` is not an admissible read-only statement, if it is not.
pub fn check(sql: &str) -> Result<(), String> {
    if sql.contains("/*") {
        // Executable comments (`/*! */`, `/*M! */`) run on the server; refuse every `/*` rather
        // than guess which of them a server executes.
        return Err("comments are not allowed in baton.query (MySQL executes /*! ... */); bind a literal containing /* as a parameter".into());
    }
    if sql.contains('\\') {
        // Whether a backslash escapes a quote depends on the server's sql_mode
        // (NO_BACKSLASH_ESCAPES): where a literal ends must not be a guess.
        return Err("a backslash is not allowed in baton.query (its meaning depends on sql_mode): pass the value as a parameter".into());
    }
    let dialect = MySqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql).tokenize().map_err(|e| format!("cannot read the statement: {e}"))?;
    let significant: Vec<&Token> = tokens.iter().filter(|t| !matches!(t, Token::Whitespace(_))).collect();
    for t in &tokens {
        match t {
            Token::Whitespace(Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_)) => {
                return Err("comments are not allowed in baton.query (MySQL executes /*! ... */)".into())
            }
            Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::INTO => {
                return Err("INTO is not allowed in baton.query (SELECT ... INTO OUTFILE/DUMPFILE writes files)".into())
            }
            _ => {}
        }
    }
    for pair in significant.windows(2) {
        if let (Token::Word(f), Token::LParen) = (pair[0], pair[1]) {
            let name = f.value.to_ascii_lowercase();
            if DENIED_FUNCTIONS.contains(&name.as_str()) {
                return Err(format!("{name}() is not allowed in baton.query (it reads files, takes locks or waits)"));
            }
        }
        if let (Token::Word(a), Token::Word(b)) = (pair[0], pair[1]) {
            if a.quote_style.is_none()
                && a.keyword == Keyword::FOR
                && matches!(b.keyword, Keyword::UPDATE | Keyword::SHARE)
            {
                return Err("locking reads (FOR UPDATE, FOR SHARE) are not allowed in baton.query".into());
            }
            if a.quote_style.is_none() && a.keyword == Keyword::LOCK && b.keyword == Keyword::IN {
                return Err("locking reads (LOCK IN SHARE MODE) are not allowed in baton.query".into());
            }
        }
    }
    let first = significant.iter().find_map(|t| match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.keyword),
        _ => None,
    });
    let semicolons = significant.iter().filter(|t| matches!(t, Token::SemiColon)).count();
    let trailing_semicolon = matches!(significant.last(), Some(Token::SemiColon));
    if semicolons > usize::from(trailing_semicolon) {
        return Err("one statement only (found ';')".into());
    }
    match first {
        // SHOW never writes; the token rules above cover what it may carry (LIKE, WHERE).
        Some(Keyword::SHOW) => Ok(()),
        Some(Keyword::SELECT | Keyword::WITH) => {
            let statements =
                Parser::parse_sql(&dialect, sql).map_err(|e| format!("cannot parse the statement: {e}"))?;
            match statements.as_slice() {
                [Statement::Query(q)] if q.locks.is_empty() && !writes(&q.body) => Ok(()),
                [Statement::Query(_)] => Err("only a plain SELECT is allowed in baton.query".into()),
                [_] => Err("only SELECT and SHOW are allowed in baton.query".into()),
                _ => Err("one statement only".into()),
            }
        }
        None => Err("an empty statement".into()),
        Some(_) => {
            let word =
                significant
                    .iter()
                    .find_map(|t| if let Token::Word(w) = t { Some(w.value.to_uppercase()) } else { None });
            Err(format!("only SELECT and SHOW are allowed in baton.query, not {}", word.unwrap_or_default()))
        }
    }
}

/// Whether a query body is anything but a read (INSERT/UPDATE/... inside a query expression).
fn writes(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(s) => s.into.is_some(),
        SetExpr::Query(q) => !q.locks.is_empty() || writes(&q.body),
        SetExpr::SetOperation { left, right, .. } => writes(left) || writes(right),
        SetExpr::Values(_) | SetExpr::Table(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn reads_pass() {
        for sql in [
            "SELECT @@read_only",
            "select 1;",
            "  SELECT a, b FROM meta.cluster WHERE x = ? LIMIT 1",
            "WITH x AS (SELECT 1 AS a) SELECT * FROM x",
            "SELECT 1 UNION SELECT 2",
            "SHOW SLAVE STATUS",
            "show replica status;",
            "SHOW GLOBAL VARIABLES LIKE 'gtid%'",
            "SHOW MASTER STATUS",
            "SELECT 'it''s'",
            "SELECT `into` FROM t",
        ] {
            assert_eq!(check(sql), Ok(()), "{sql}");
        }
    }

    #[test]
    fn writes_files_locks_and_tricks_are_refused() {
        for (sql, why) in [
            ("UPDATE t SET a = 1", "only SELECT and SHOW"),
            ("DROP TABLE t", "only SELECT and SHOW"),
            ("SET GLOBAL read_only = 1", "only SELECT and SHOW"),
            ("EXPLAIN UPDATE t SET a = 1", "only SELECT and SHOW"),
            ("SELECT 1; DROP TABLE t", "one statement"),
            ("SELECT * FROM t INTO OUTFILE '/tmp/x'", "INTO"),
            ("SELECT * FROM t INTO  OUTFILE '/tmp/x'", "INTO"),
            ("SELECT * FROM t INTO\nOUTFILE '/tmp/x'", "INTO"),
            ("SELECT * FROM t INTO/**/OUTFILE '/tmp/x'", "comments"),
            ("SELECT 1/**/FROM t", "comments"),
            ("SELECT 1 /*!INTO OUTFILE '/tmp/x'*/", "comments"),
            ("SELECT 1 /*!50000 FROM t */", "comments"),
            ("SELECT 1 /*M!100000 INTO OUTFILE '/tmp/x'*/", "comments"),
            ("SELECT 1 -- x", "comments"),
            ("SELECT 1 # x", "comments"),
            ("SELECT 'a\\' INTO OUTFILE '/tmp/x' -- '", "backslash"),
            ("SELECT LOAD_FILE('/etc/passwd')", "load_file"),
            ("SELECT load_file ('/etc/passwd')", "load_file"),
            ("SHOW VARIABLES WHERE Variable_name = 'x' AND LOAD_FILE('/etc/passwd') LIKE 'r%'", "load_file"),
            ("SELECT GET_LOCK('baton.cluster', 0)", "get_lock"),
            ("SELECT RELEASE_LOCK('baton.cluster')", "release_lock"),
            ("SELECT SLEEP(100)", "sleep"),
            ("SELECT * FROM t FOR UPDATE", "locking"),
            ("SELECT * FROM t FOR SHARE", "locking"),
            ("SELECT * FROM t LOCK IN SHARE MODE", "locking"),
            ("SELECT 1 INTO @a", "INTO"),
            ("", "empty"),
            ("   ;", "empty"),
            ("SELECT 1;;", "one statement"),
        ] {
            let e = check(sql).expect_err(sql);
            assert!(e.contains(why), "{sql}: {e}");
        }
    }
}
