//! The pure model of a replication topology: instance keys, probed instances, GTID positions and
//! sets, and the cluster tree with its problems.
//!
//! Architecture invariant: nothing in this module does I/O or knows SQL. It is built from values
//! that `mysql/` read, and it is what the engine, the Lua host and the HTTP layer look at.

pub mod cluster;
pub mod gtid;
pub mod instance;
pub mod key;
pub mod render;

pub use cluster::{BuildOptions, Cluster, Member, ProbeOutcome, Problem, ProblemKind};
pub use gtid::{GtidError, GtidPos, GtidSet};
pub use instance::{
    BinlogCoordinates, Flavor, GtidMode, GtidState, Instance, ReplicationStatus, SemiSync, ThreadError, ThreadState,
    Version,
};
pub use key::{HostFilter, InstanceKey, KeyError};
