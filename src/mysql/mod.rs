//! The only code that speaks SQL: connections (`conn`), one dialect per flavor (`dialect`), the
//! probe of one instance (`probe`), and the write primitives the takeover engine uses (`ops`).
//!
//! Architecture invariant: no other module builds SQL text or reads result rows.

pub mod conn;
pub mod dialect;
pub mod guard;
pub mod lean;
pub mod ops;

pub mod probe;
pub mod readonly;
#[cfg(feature = "lab")]
pub mod workload;

pub use conn::{Connector, RowMap};
pub use dialect::{CredentialLimits, Dialect, SemiSyncChange, SourcePosition, SourceSpec, Statement};
pub use probe::probe;

use crate::topology::InstanceKey;

/// An error talking to one instance. Always names the instance; query errors name the statement
/// (as shown, passwords masked).
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("{instance}: cannot connect: {source}")]
    Connect { instance: InstanceKey, source: mysql_async::Error },
    #[error("{instance}: no connection within {ms} ms (is anything listening?)")]
    ConnectTimeout { instance: InstanceKey, ms: u64 },
    #[error("{instance}: `{sql}` failed: {source}")]
    Query { instance: InstanceKey, sql: String, source: mysql_async::Error },
    #[error("{instance}: `{sql}` got no answer within {ms} ms")]
    QueryTimeout { instance: InstanceKey, sql: String, ms: u64 },
    #[error("{instance}: unexpected answer to {what}: {detail}")]
    Unexpected { instance: InstanceKey, what: String, detail: String },
    #[error("{instance}: did not reach {target} within {ms} ms")]
    WaitTimedOut { instance: InstanceKey, target: String, ms: u64 },
    /// A statement carrying a secret failed; the server's message is masked (`Statement::mask`).
    #[error("{instance}: `{sql}` failed: {message}")]
    Failed { instance: InstanceKey, sql: String, code: Option<u16>, message: String },
}

impl SqlError {
    pub fn instance(&self) -> &InstanceKey {
        match self {
            SqlError::Connect { instance, .. }
            | SqlError::ConnectTimeout { instance, .. }
            | SqlError::Query { instance, .. }
            | SqlError::QueryTimeout { instance, .. }
            | SqlError::Unexpected { instance, .. }
            | SqlError::WaitTimedOut { instance, .. }
            | SqlError::Failed { instance, .. } => instance,
        }
    }

    /// The error as it may be shown when `stmt` carries a secret: the server's message masked.
    pub fn masked(self, stmt: &dialect::Statement) -> SqlError {
        match self {
            SqlError::Query { instance, sql, source } if stmt.secret.is_some() => {
                let code = match &source {
                    mysql_async::Error::Server(e) => Some(e.code),
                    _ => None,
                };
                SqlError::Failed { instance, sql, code, message: stmt.mask(&source.to_string()) }
            }
            other => other,
        }
    }

    /// No connection could be made: the server is down or not listening (a statement that got no
    /// answer on an open connection is not this: that server may be alive and blocked).
    pub fn is_down(&self) -> bool {
        match self {
            SqlError::ConnectTimeout { .. } => true,
            SqlError::Connect { source, .. } => !matches!(source, mysql_async::Error::Server(_)),
            _ => false,
        }
    }

    /// The connection broke under a statement (reset, closed): the server may be fine, and a
    /// fresh connection may run it.
    pub fn connection_lost(&self) -> bool {
        match self {
            SqlError::Query { source, .. } => lost(source),
            _ => false,
        }
    }

    /// The server could not be reached at all (as opposed to: it answered with an error).
    pub fn is_unreachable(&self) -> bool {
        match self {
            SqlError::ConnectTimeout { .. } | SqlError::QueryTimeout { .. } => true,
            SqlError::Connect { source, .. } => !matches!(source, mysql_async::Error::Server(_)),
            _ => false,
        }
    }
}

/// A connection that broke (reset, closed under a request), as opposed to a server's answer.
pub(crate) fn lost(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Io(_) | mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed))
}
