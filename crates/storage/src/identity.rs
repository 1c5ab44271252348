//! The identity file: which cluster, group and node a data directory belongs to, and the
//! group's members (voters and learners), written when the directory is first used, kept
//! following the log's membership by the server (rewritten when a membership change
//! enters the log), and checked on every later start, so a member never joins a group it
//! was not created for.
//!
//! Why: Raft's safety rests on every member agreeing on the voter set. A member restarted
//! with a different peer list (`up --replicas 5` on a 3-member directory, a typo in
//! `--peers`) would count quorums over the wrong set and could elect a second leader; a
//! directory reused for another cluster or group would mix two logs. Both are refused here,
//! before anything is read from the log.
//!
//! # Layout
//! One file, `identity`, little-endian:
//! `magic "SKVIDENT" | version u32 (= 3) | payload_len u32 | payload | crc32c u32`, the crc
//! covering every byte before it; the payload is the postcard encoding of [`Identity`].
//! Written as temp file (`identity.tmp`), fdatasync, rename, directory fsync, so a crash
//! leaves either the old file or the new one; a leftover temp file is removed on open.
//!
//! # Rules ([`check_identity`])
//! - no identity file and no Raft data (no `node-id`, WAL or snapshot file), with
//!   `bootstrap`: a new member; the file is written ([`IdentityCheck::Created`]);
//! - the same without `bootstrap`: [`StorageError::NotBootstrapped`], nothing is written.
//!   Likewise an identity file with no Raft state beside it (no WAL segment, no snapshot:
//!   they were lost, the identity file was not): refused unless `bootstrap`. A member that
//!   was bootstrapped and stopped before its store first opened (which creates the first
//!   WAL segment at once) looks the same; starting it with `bootstrap` again is then right.
//!   Other files (`LOCK`, `node-id`) do not count as Raft state.
//!   An empty directory is what a member whose disk was wiped or replaced looks like; had
//!   it started, it would vote and count toward quorums having forgotten its votes and the
//!   entries it acknowledged (with one other member lagging, the two could elect a leader
//!   missing acknowledged writes). Only the first start of a new group bootstraps; a member
//!   that lost its data comes back through membership change, not here;
//! - no identity file but Raft data (a directory from before identity files): the given
//!   identity is adopted and written ([`IdentityCheck::Adopted`]; the caller warns, since
//!   nothing can tell whether the given peer list is the one the data was created with);
//! - an identity file: cluster id, group id and the member *ids* (voters and learners: the
//!   given identity lists every member of `--peers`, whatever its role) must equal the
//!   given ones, else [`StorageError::IdentityMismatch`]; another node id is
//!   [`StorageError::WrongNode`]. Addresses are informative (a member may move): when only
//!   they differ the file is rewritten with the stored roles and the given addresses
//!   ([`IdentityCheck::AddressesUpdated`]). Roles come from the file, never from the
//!   given identity: after a membership change the file records the log's membership;
//!   - a member joining an existing group (`--join`) gives an identity that lists itself as
//!     a learner; with an empty directory it is written like a bootstrap (the caller
//!     passes `bootstrap` true for it). Joining only ever happens under a new node id.
//! - the membership a directory was created with (`initial_voters`, `initial_learners`) is
//!   written once and never rewritten: it is Raft's bootstrap membership, in force for the
//!   log until its first membership entry. The rewritten members are for the `--peers`
//!   check and addresses only, never for Raft (they may name a membership whose entry
//!   was later cut from the log).
//! - a damaged file (bad magic, crc, length, version, or payload) is
//!   [`StorageError::Corrupt`]: refused, never rewritten, since the data beside it may
//!   still be good and the operator must decide.

use crate::disk::Disk;
use crate::error::StorageError;
use crate::{recovery, snapshot};
use serde::{Deserialize, Serialize};
use shardkv_types::{Gid, NodeId};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::Path;

/// The file name of the identity file in a data directory.
pub const IDENTITY_FILE: &str = "identity";
/// The format version this code writes. Versions 1 (no `service`) and 2 (no `learners`)
/// are still read.
pub const IDENTITY_VERSION: u32 = 3;
/// The largest identity file accepted; bounds what a damaged file can make us allocate.
pub const IDENTITY_FILE_BYTES_MAX: u64 = 64 << 10;

const MAGIC: &[u8; 8] = b"SKVIDENT";
/// magic (8) + version (4) + payload length (4).
const HEADER_BYTES: usize = 16;
const CRC_BYTES: usize = 4;

/// Who a data directory belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Derived from the cluster token; compared.
    pub cluster_id: u64,
    /// The token `cluster_id` was derived from, kept for error messages only.
    pub cluster_token: String,
    pub group_id: Gid,
    pub node_id: NodeId,
    /// The group's voters and their addresses as last recorded. Invariant: `voters` or
    /// `learners` contains `node_id`; the two are disjoint; `voters` is not empty. Only
    /// the ids are compared.
    pub voters: BTreeMap<NodeId, String>,
    /// What the group replicates and the parameters fixed at its creation (e.g. `kv`, or
    /// `ctrl shards=64`): every replica must start the same state machine the same way.
    /// Compared; empty (a version 1 file) matches anything.
    pub service: String,
    /// The group's learners (non-voting members being caught up) and their addresses.
    pub learners: BTreeMap<NodeId, String>,
    /// The membership this member started the group (or joined it) with, never rewritten:
    /// Raft's bootstrap membership, in force for the log until its first membership entry
    /// (the rewritten `voters` and `learners` must never be: they may name a membership
    /// whose entry is later cut from the log). Invariant: `initial_voters` is not empty.
    pub initial_voters: BTreeSet<NodeId>,
    pub initial_learners: BTreeSet<NodeId>,
}

/// The payload of a version 2 file, before `learners` (serialized by the tests only).
#[derive(Serialize, Deserialize)]
struct IdentityV2 {
    cluster_id: u64,
    cluster_token: String,
    group_id: Gid,
    node_id: NodeId,
    voters: BTreeMap<NodeId, String>,
    service: String,
}

/// The payload of a version 1 file, before `service` (serialized by the tests only).
#[derive(Serialize, Deserialize)]
struct IdentityV1 {
    cluster_id: u64,
    cluster_token: String,
    group_id: Gid,
    node_id: NodeId,
    voters: BTreeMap<NodeId, String>,
}

impl Identity {
    /// What differs between this (stored) identity and `given`, one phrase each, ids only
    /// for the voters. Empty when they match. The node id is not compared (see `WrongNode`).
    pub fn differences(&self, given: &Identity) -> Vec<String> {
        let mut out = Vec::new();
        if self.cluster_id != given.cluster_id {
            out.push(format!(
                "cluster: stored {} (token {:?}), given {} (token {:?})",
                cluster_hex(self.cluster_id),
                self.cluster_token,
                cluster_hex(given.cluster_id),
                given.cluster_token
            ));
        }
        if self.group_id != given.group_id {
            out.push(format!(
                "group: stored {}, given {}",
                self.group_id.0, given.group_id.0
            ));
        }
        if !self.service.is_empty() && !given.service.is_empty() && self.service != given.service {
            out.push(format!(
                "service: stored {:?}, given {:?}",
                self.service, given.service
            ));
        }
        if !self.members().keys().eq(given.members().keys()) {
            out.push(format!(
                "members: stored {}, given {}",
                self.peer_list(),
                given.peer_list()
            ));
        }
        out
    }

    /// Every member (voters and learners) with its address.
    pub fn members(&self) -> BTreeMap<NodeId, String> {
        let mut all = self.voters.clone();
        all.extend(self.learners.iter().map(|(id, a)| (*id, a.clone())));
        all
    }

    /// The members in `--peers` syntax: `1=ADDR,2=ADDR`, learners marked `(learner)`.
    pub fn peer_list(&self) -> String {
        let learners = self
            .learners
            .iter()
            .map(|(id, addr)| format!("{}={addr} (learner)", id.0));
        let voters = peer_list(&self.voters);
        std::iter::once(voters)
            .filter(|v| !v.is_empty())
            .chain(learners)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// This identity with the roles of `self` and the addresses of `given` where it has
    /// one (the file after [`IdentityCheck::AddressesUpdated`]).
    fn with_addresses_of(&self, given: &Identity) -> Identity {
        let given = given.members();
        let readdress = |m: &BTreeMap<NodeId, String>| {
            m.iter()
                .map(|(id, a)| (*id, given.get(id).unwrap_or(a).clone()))
                .collect()
        };
        Identity {
            voters: readdress(&self.voters),
            learners: readdress(&self.learners),
            ..self.clone()
        }
    }

    /// Checks the invariants a decoded or given identity must hold.
    fn check(&self) -> Result<(), String> {
        if self.voters.is_empty() || self.initial_voters.is_empty() {
            return Err("no voters".into());
        }
        if self.voters.keys().any(|id| self.learners.contains_key(id)) {
            return Err("a member is both a voter and a learner".into());
        }
        if !self.voters.contains_key(&self.node_id) && !self.learners.contains_key(&self.node_id) {
            return Err(format!("node {} is not among its members", self.node_id));
        }
        Ok(())
    }

    fn encode(&self) -> Result<Vec<u8>, StorageError> {
        let payload = postcard::to_allocvec(self).map_err(|e| StorageError::Io {
            op: "encode identity",
            path: Default::default(),
            source: io::Error::other(e.to_string()),
        })?;
        let mut buf = Vec::with_capacity(HEADER_BYTES + payload.len() + CRC_BYTES);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&IDENTITY_VERSION.to_le_bytes());
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&payload);
        let crc = crc32c::crc32c(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        assert!(
            buf.len() as u64 <= IDENTITY_FILE_BYTES_MAX,
            "identity of {} bytes exceeds the file limit",
            buf.len()
        );
        Ok(buf)
    }

    fn decode(bytes: &[u8], path: &Path) -> Result<Identity, StorageError> {
        let corrupt = |offset: usize, reason: String| StorageError::Corrupt {
            file: path.to_path_buf(),
            offset: offset as u64,
            reason: format!(
                "{reason} (the identity file is damaged: restore it from a backup, or move \
                 this data directory aside and start the member fresh)"
            ),
        };
        if bytes.len() < HEADER_BYTES + CRC_BYTES || &bytes[..8] != MAGIC {
            return Err(corrupt(
                0,
                "not an identity file (bad magic or too short)".into(),
            ));
        }
        let body_len = bytes.len() - CRC_BYTES;
        let crc = u32::from_le_bytes(bytes[body_len..].try_into().expect("4 bytes"));
        if crc32c::crc32c(&bytes[..body_len]) != crc {
            return Err(corrupt(body_len, "identity checksum mismatch".into()));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if !(1..=IDENTITY_VERSION).contains(&version) {
            return Err(corrupt(
                8,
                format!("identity format version {version}; this build reads {IDENTITY_VERSION}"),
            ));
        }
        let payload_len = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
        if payload_len as usize != body_len - HEADER_BYTES {
            return Err(corrupt(
                12,
                format!(
                    "payload length {payload_len} does not match the file ({} bytes)",
                    body_len - HEADER_BYTES
                ),
            ));
        }
        let undecodable = |e: postcard::Error| {
            corrupt(
                HEADER_BYTES,
                format!("payload with a valid checksum does not decode: {e}"),
            )
        };
        let payload = &bytes[HEADER_BYTES..body_len];
        let id: Identity = match version {
            1 => {
                let v1: IdentityV1 = postcard::from_bytes(payload).map_err(undecodable)?;
                Identity {
                    cluster_id: v1.cluster_id,
                    cluster_token: v1.cluster_token,
                    group_id: v1.group_id,
                    node_id: v1.node_id,
                    service: String::new(),
                    learners: BTreeMap::new(),
                    initial_voters: v1.voters.keys().copied().collect(),
                    voters: v1.voters,
                    initial_learners: BTreeSet::new(),
                }
            }
            2 => {
                let v2: IdentityV2 = postcard::from_bytes(payload).map_err(undecodable)?;
                Identity {
                    cluster_id: v2.cluster_id,
                    cluster_token: v2.cluster_token,
                    group_id: v2.group_id,
                    node_id: v2.node_id,
                    service: v2.service,
                    learners: BTreeMap::new(),
                    initial_voters: v2.voters.keys().copied().collect(),
                    voters: v2.voters,
                    initial_learners: BTreeSet::new(),
                }
            }
            _ => postcard::from_bytes(payload).map_err(undecodable)?,
        };
        id.check().map_err(|e| corrupt(HEADER_BYTES, e))?;
        Ok(id)
    }
}

/// `0x…`, the way cluster ids are shown to operators.
pub fn cluster_hex(id: u64) -> String {
    format!("{id:#018x}")
}

/// `1=ADDR,2=ADDR`, the `--peers` syntax.
fn peer_list(voters: &BTreeMap<NodeId, String>) -> String {
    voters
        .iter()
        .map(|(id, addr)| format!("{}={addr}", id.0))
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cluster {} (token {:?}), group {}, node {}, members {}",
            cluster_hex(self.cluster_id),
            self.cluster_token,
            self.group_id.0,
            self.node_id.0,
            self.peer_list()
        )
    }
}

/// What [`check_identity`] found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityCheck {
    /// A new data directory: the identity file was written.
    Created,
    /// The stored identity equals the given one.
    Matched,
    /// Same members, other addresses: the file now holds the given addresses.
    AddressesUpdated { stored: BTreeMap<NodeId, String> },
    /// Raft data without an identity file (written before identity files existed): the
    /// given identity was adopted and written. The caller should warn.
    Adopted,
}

/// Checks the identity stored in `dir` against `given`, writing it where the rules (see the
/// module docs) say so; `bootstrap` allows an empty directory to become a new member.
/// Creates `dir` if it is missing. Call before opening the store.
///
/// What the directory records afterwards (its members' roles) is [`read_identity_file`]'s.
///
/// # Panics
/// If `given` does not hold the identity invariants (a caller bug).
pub fn check_identity<D: Disk>(
    disk: &mut D,
    dir: &Path,
    given: &Identity,
    bootstrap: bool,
) -> Result<IdentityCheck, StorageError> {
    if let Err(e) = given.check() {
        panic!("the given identity is invalid: {e}");
    }
    let names = list_or_create(disk, dir)?;
    let tmp_name = format!("{IDENTITY_FILE}{}", snapshot::TMP_SUFFIX);
    if names.contains(&tmp_name) {
        // A write the crash interrupted before its rename: the old file (if any) stands.
        let tmp = dir.join(&tmp_name);
        disk.remove(&tmp)
            .map_err(|e| StorageError::io("remove", &tmp, e))?;
        sync_dir(disk, dir)?;
    }
    let has_raft_state = names
        .iter()
        .any(|n| recovery::is_segment_file_name(n) || snapshot::parse_file_name(n).is_some());
    let Some(stored) = read_identity(disk, dir, &names)? else {
        let has_data = has_raft_state || names.iter().any(|n| n == recovery::NODE_ID_FILE);
        if !has_data && !bootstrap {
            return Err(StorageError::NotBootstrapped {
                dir: dir.to_path_buf(),
                identity_only: false,
            });
        }
        write_identity(disk, dir, given)?;
        return Ok(if has_data {
            IdentityCheck::Adopted
        } else {
            IdentityCheck::Created
        });
    };
    if stored.node_id != given.node_id {
        return Err(StorageError::WrongNode {
            dir: dir.to_path_buf(),
            expected: given.node_id,
            found: format!("node {} (per its {IDENTITY_FILE} file)", stored.node_id),
        });
    }
    if !stored.differences(given).is_empty() {
        return Err(StorageError::IdentityMismatch {
            dir: dir.to_path_buf(),
            stored: Box::new(stored),
            given: Box::new(given.clone()),
        });
    }
    if !has_raft_state && !bootstrap {
        // The WAL and snapshots are gone but the identity file stayed: as forgetful as an
        // empty directory. (Or the member was bootstrapped and stopped before its store
        // first opened; then bootstrapping again is right.)
        return Err(StorageError::NotBootstrapped {
            dir: dir.to_path_buf(),
            identity_only: true,
        });
    }
    if stored.members() != given.members() {
        write_identity(disk, dir, &stored.with_addresses_of(given))?;
        return Ok(IdentityCheck::AddressesUpdated {
            stored: stored.members(),
        });
    }
    Ok(IdentityCheck::Matched)
}

/// The identity `dir` records, `None` if it has no identity file.
pub fn read_identity_file<D: Disk>(
    disk: &mut D,
    dir: &Path,
) -> Result<Option<Identity>, StorageError> {
    let names = disk
        .list_dir(dir)
        .map_err(|e| StorageError::io("list directory", dir, e))?;
    read_identity(disk, dir, &names)
}

/// Reads the identity file of `dir` (whose file names are `names`), `None` if there is none.
fn read_identity<D: Disk>(
    disk: &mut D,
    dir: &Path,
    names: &[String],
) -> Result<Option<Identity>, StorageError> {
    if !names.iter().any(|n| n == IDENTITY_FILE) {
        return Ok(None);
    }
    let path = dir.join(IDENTITY_FILE);
    let len = disk
        .file_len(&path)
        .map_err(|e| StorageError::io("stat", &path, e))?;
    if len > IDENTITY_FILE_BYTES_MAX {
        return Err(StorageError::Corrupt {
            file: path,
            offset: 0,
            reason: format!("{len} bytes is larger than any identity file"),
        });
    }
    let bytes = disk
        .read(&path)
        .map_err(|e| StorageError::io("read", &path, e))?;
    Identity::decode(&bytes, &path).map(Some)
}

/// Durably replaces the identity file of `dir` with `id`: temp file, fdatasync, rename,
/// directory fsync. A crash at any point leaves the old file or the new one.
pub fn write_identity<D: Disk>(
    disk: &mut D,
    dir: &Path,
    id: &Identity,
) -> Result<(), StorageError> {
    if let Err(e) = id.check() {
        panic!("writing an invalid identity: {e}");
    }
    let buf = id.encode()?;
    let path = dir.join(IDENTITY_FILE);
    let tmp = dir.join(format!("{IDENTITY_FILE}{}", snapshot::TMP_SUFFIX));
    match disk.remove(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(StorageError::io("remove", &tmp, e)),
    }
    disk.create(&tmp)
        .map_err(|e| StorageError::io("create", &tmp, e))?;
    disk.append(&tmp, &buf)
        .map_err(|e| StorageError::io("write", &tmp, e))?;
    disk.sync(&tmp).map_err(|source| StorageError::SyncFailed {
        path: tmp.clone(),
        source,
    })?;
    disk.rename(&tmp, &path)
        .map_err(|e| StorageError::io("rename", &tmp, e))?;
    sync_dir(disk, dir)
}

fn list_or_create<D: Disk>(disk: &mut D, dir: &Path) -> Result<Vec<String>, StorageError> {
    match disk.list_dir(dir) {
        Ok(names) => Ok(names),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            disk.create_dir_all(dir)
                .map_err(|e| StorageError::io("create directory", dir, e))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(disk, parent)?;
            }
            Ok(Vec::new())
        }
        Err(e) => Err(StorageError::io("list directory", dir, e)),
    }
}

fn sync_dir<D: Disk>(disk: &mut D, dir: &Path) -> Result<(), StorageError> {
    disk.sync_dir(dir)
        .map_err(|source| StorageError::SyncFailed {
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident() -> Identity {
        Identity {
            cluster_id: 7,
            cluster_token: "t".into(),
            group_id: Gid(1),
            node_id: NodeId(2),
            voters: (1..=3).map(|i| (NodeId(i), format!("h:{i}"))).collect(),
            service: "ctrl shards=64".into(),
            learners: BTreeMap::new(),
            initial_voters: (1..=3).map(NodeId).collect(),
            initial_learners: BTreeSet::new(),
        }
    }

    #[test]
    fn every_cut_and_every_flipped_bit_of_the_file_is_refused_as_corrupt() {
        // Goal: a damaged identity file is never read as some other identity. Method:
        // decode every prefix and every single-bit flip of a valid file.
        let bytes = ident().encode().expect("encode");
        assert_eq!(
            Identity::decode(&bytes, Path::new("f")).expect("valid"),
            ident()
        );
        for cut in 0..bytes.len() {
            let r = Identity::decode(&bytes[..cut], Path::new("f"));
            assert!(matches!(r, Err(StorageError::Corrupt { .. })), "cut {cut}");
        }
        for at in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[at / 8] ^= 1 << (at % 8);
            let r = Identity::decode(&b, Path::new("f"));
            assert!(matches!(r, Err(StorageError::Corrupt { .. })), "bit {at}");
        }
    }

    #[test]
    fn differences_name_each_field_and_ignore_addresses() {
        // Goal: the refusal names what differs, with stored and given values.
        let stored = ident();
        let mut given = ident();
        given.voters.insert(NodeId(2), "moved:9".into());
        assert!(stored.differences(&given).is_empty());
        given.voters.insert(NodeId(4), "h:4".into());
        given.group_id = Gid(5);
        let d = stored.differences(&given);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].contains("stored 1, given 5"), "{d:?}");
        assert!(d[1].contains("members: stored 1=h:1,2=h:2,3=h:3"), "{d:?}");
        assert!(d[1].contains("given 1=h:1,2=moved:9,3=h:3,4=h:4"), "{d:?}");
    }

    #[test]
    fn a_different_service_is_a_difference_and_version_1_files_still_read() {
        // Goal: a group started as another service (or with another shard count) refuses;
        // files written before `service` existed still load and match anything.
        let stored = ident();
        let mut given = ident();
        given.service = "ctrl shards=16".into();
        let d = stored.differences(&given);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(
            d[0].contains("shards=64") && d[0].contains("shards=16"),
            "{d:?}"
        );
        let v1 = IdentityV1 {
            cluster_id: stored.cluster_id,
            cluster_token: stored.cluster_token.clone(),
            group_id: stored.group_id,
            node_id: stored.node_id,
            voters: stored.voters.clone(),
        };
        let payload = postcard::to_allocvec(&v1).expect("encodes");
        let mut buf = Vec::new();
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&1u32.to_le_bytes());
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&payload);
        let crc = crc32c::crc32c(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        let back = Identity::decode(&buf, Path::new("identity")).expect("a version 1 file reads");
        assert_eq!(back.service, "");
        assert!(back.differences(&given).is_empty());
    }

    fn file(version: u32, payload: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&version.to_le_bytes());
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(payload);
        let crc = crc32c::crc32c(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        buf
    }

    #[test]
    fn version_2_files_read_with_no_learners_and_learners_count_as_members() {
        // Goal: files from before membership change still load; a learner is a member the
        // given peer list must name, and a member listed in neither role is corrupt.
        let stored = ident();
        let v2 = IdentityV2 {
            cluster_id: stored.cluster_id,
            cluster_token: stored.cluster_token.clone(),
            group_id: stored.group_id,
            node_id: stored.node_id,
            voters: stored.voters.clone(),
            service: stored.service.clone(),
        };
        let payload = postcard::to_allocvec(&v2).expect("encodes");
        let back = Identity::decode(&file(2, &payload), Path::new("identity")).expect("reads");
        assert_eq!(back, stored);

        let mut joined = ident();
        joined.learners.insert(NodeId(4), "h:4".into());
        let bytes = joined.encode().expect("encodes");
        assert_eq!(
            Identity::decode(&bytes, Path::new("f")).expect("reads"),
            joined
        );
        // `--peers 1,2,3,4` matches (roles come from the file); `1,2,3` does not.
        let mut given = ident();
        given.voters.insert(NodeId(4), "h:4".into());
        assert!(joined.differences(&given).is_empty());
        let d = joined.differences(&ident());
        assert!(d[0].contains("4=h:4 (learner)"), "{d:?}");

        let mut orphan = ident();
        orphan.voters.remove(&NodeId(2));
        let payload = postcard::to_allocvec(&orphan).expect("encodes");
        let r = Identity::decode(&file(IDENTITY_VERSION, &payload), Path::new("f"));
        assert!(matches!(r, Err(StorageError::Corrupt { .. })), "{r:?}");
    }

    #[test]
    fn a_moved_member_keeps_its_recorded_role() {
        // Goal: an address change rewrites addresses only; the roles the log gave stay.
        let mut disk = crate::SimDisk::new(1);
        let dir = Path::new("/g1");
        let mut joined = ident();
        joined.voters.remove(&NodeId(3));
        joined.learners.insert(NodeId(3), "h:3".into());
        disk.create_dir_all(dir).expect("dir");
        write_identity(&mut disk, dir, &joined).expect("written");
        disk.create(&dir.join("wal-00000000000000000001.log"))
            .expect("a segment");
        let mut given = ident();
        given.voters.insert(NodeId(3), "moved:3".into());
        let c = check_identity(&mut disk, dir, &given, false).expect("same members");
        assert!(matches!(c, IdentityCheck::AddressesUpdated { .. }), "{c:?}");
        let now = read_identity_file(&mut disk, dir)
            .expect("reads")
            .expect("a file");
        assert_eq!(
            now.learners.get(&NodeId(3)).map(String::as_str),
            Some("moved:3")
        );
        assert!(!now.voters.contains_key(&NodeId(3)));
        assert_eq!(now.initial_voters, joined.initial_voters, "never rewritten");
    }
}
