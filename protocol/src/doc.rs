//! Shared documents: the free text and checklists both sides edit — work-order notes and
//! inspection remarks — one automerge document per record, never one per table.
//!
//! Owns the document's shape and the merge rules both sides must agree on:
//! - Every document starts from the same genesis change (a fixed actor, time 0), so the `notes`
//!   text and the `checklist` map are the same objects on every replica and concurrent first
//!   edits merge instead of one replacing the other.
//! - `notes` merges character by character (automerge text).
//! - A checklist item set concurrently on both sides resolves to the cloud's value (automerge
//!   alone would pick an arbitrary, if deterministic, winner): the cloud is the master. An edit
//!   made after seeing the other side's value simply wins.
//!
//! The edge sends its changes as outbox events (`save_after` the heads it had); the cloud sends
//! whole documents in the change log, so a branch never waits for changes it lacks.

use std::collections::BTreeMap;

use automerge::transaction::{CommitOptions, Transactable as _};
use automerge::{
    ActorId, AutoCommit, Automerge, LoadOptions, ObjId, ObjType, OnPartialLoad, ROOT, ReadDoc as _,
    Value,
};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The actor of every edit the cloud makes. Cloud replicas edit a document only under its row
/// lock, from the latest saved state, so one actor id never forks.
pub const CLOUD_ACTOR: &[u8] = b"sentra-cloud";
const GENESIS_ACTOR: &[u8] = b"sentra-genesis";

pub const MAX_NOTES_CHARS: usize = 20_000;
pub const MAX_CHECKLIST_ITEMS: usize = 100;
pub const MAX_ITEM_CHARS: usize = 80;

/// Which records carry a shared document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocRecord {
    /// Work-order notes.
    WorkOrder,
    /// Inspection remarks.
    Inspection,
}

impl DocRecord {
    pub const ALL: [DocRecord; 2] = [DocRecord::WorkOrder, DocRecord::Inspection];

    pub fn as_str(self) -> &'static str {
        match self {
            DocRecord::WorkOrder => "work_order",
            DocRecord::Inspection => "inspection",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// What a document says now, as both sides render it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocView {
    pub notes: String,
    pub checklist: BTreeMap<String, bool>,
}

/// One edit: the new notes text (diffed into the shared text), and checklist items to set
/// (`true`/`false`) or remove (`null`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocEdit {
    #[serde(default)]
    pub notes: Option<String>,
    #[serde(default)]
    pub checklist: BTreeMap<String, Option<bool>>,
}

impl DocEdit {
    /// The error names the field and what is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.notes.is_none() && self.checklist.is_empty() {
            return Err("notes: give notes, checklist items, or both".into());
        }
        if let Some(notes) = &self.notes
            && notes.chars().count() > MAX_NOTES_CHARS
        {
            return Err(format!("notes: at most {MAX_NOTES_CHARS} characters"));
        }
        if self.checklist.len() > MAX_CHECKLIST_ITEMS {
            return Err(format!(
                "checklist: at most {MAX_CHECKLIST_ITEMS} items an edit"
            ));
        }
        for item in self.checklist.keys() {
            let n = item.chars().count();
            if n == 0 || n > MAX_ITEM_CHARS || item.trim() != item || item.contains('\0') {
                return Err(format!(
                    "checklist.{item}: an item name is 1 to {MAX_ITEM_CHARS} characters without surrounding spaces"
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error("document: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    #[error("document: not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("document: the changes depend on earlier changes this replica does not have")]
    MissingChanges,
    #[error("document: not a shared document ({0})")]
    Shape(&'static str),
}

/// One record's document.
pub struct SharedDoc {
    doc: AutoCommit,
    notes: ObjId,
    checklist: ObjId,
}

fn genesis() -> AutoCommit {
    let mut doc = AutoCommit::new().with_actor(ActorId::from(GENESIS_ACTOR));
    doc.put_object(ROOT, "notes", ObjType::Text)
        .expect("a new document takes a text object");
    doc.put_object(ROOT, "checklist", ObjType::Map)
        .expect("a new document takes a map object");
    doc.commit_with(CommitOptions::default().with_time(0));
    doc
}

impl SharedDoc {
    /// An empty document that `actor` will edit.
    pub fn new(actor: &[u8]) -> Self {
        Self::wrap(genesis().with_actor(ActorId::from(actor))).expect("genesis has the shape")
    }

    /// A saved document (from [`Self::save`]) that `actor` will edit.
    pub fn load(bytes: &[u8], actor: &[u8]) -> Result<Self, DocError> {
        Self::wrap(AutoCommit::load(bytes)?.with_actor(ActorId::from(actor)))
    }

    fn wrap(doc: AutoCommit) -> Result<Self, DocError> {
        let object = |name: &str, want: ObjType| match doc.get(ROOT, name) {
            Ok(Some((Value::Object(t), id))) if t == want => Ok(id),
            _ => Err(DocError::Shape("root keys notes and checklist")),
        };
        let notes = object("notes", ObjType::Text)?;
        let checklist = object("checklist", ObjType::Map)?;
        Ok(SharedDoc {
            doc,
            notes,
            checklist,
        })
    }

    /// Merges changes (an edge's `save_after` bytes or a whole saved document). Applying the
    /// same changes twice changes nothing.
    pub fn apply(&mut self, changes: &[u8]) -> Result<(), DocError> {
        // Automerge's incremental load skips what it cannot parse and queues changes whose
        // dependencies are missing; here a change is all or nothing, so load it strictly first
        // on top of what this replica has (documents are small: one record each).
        let mut whole = self.doc.save();
        whole.extend_from_slice(changes);
        let strict = Automerge::load_with_options(
            &whole,
            LoadOptions::new().on_partial_load(OnPartialLoad::Error),
        )?;
        if !strict.get_missing_deps(&[]).is_empty() {
            return Err(DocError::MissingChanges);
        }
        self.doc.load_incremental(changes)?;
        Ok(())
    }

    /// Makes `edit` (already checked) and returns the new changes' bytes, empty when it changed
    /// nothing. `time_s` is advisory (automerge records it; merging ignores it).
    pub fn edit(&mut self, edit: &DocEdit, time_s: i64) -> Result<Vec<u8>, DocError> {
        let before = self.doc.get_heads();
        if let Some(notes) = &edit.notes {
            self.doc.update_text(&self.notes, notes)?;
        }
        for (item, value) in &edit.checklist {
            match value {
                Some(done) => {
                    if self.item(item) != Some(*done) {
                        self.doc.put(&self.checklist, item.as_str(), *done)?;
                    }
                }
                None => {
                    if self.doc.get(&self.checklist, item.as_str())?.is_some() {
                        self.doc.delete(&self.checklist, item.as_str())?;
                    }
                }
            }
        }
        if self
            .doc
            .commit_with(CommitOptions::default().with_time(time_s))
            .is_none()
        {
            return Ok(Vec::new());
        }
        Ok(self.doc.save_after(&before))
    }

    /// The whole document, compact.
    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    pub fn view(&self) -> Result<DocView, DocError> {
        let notes = self.doc.text(&self.notes)?;
        let mut checklist = BTreeMap::new();
        for item in self.doc.keys(&self.checklist) {
            if let Some(done) = self.item(&item) {
                checklist.insert(item, done);
            }
        }
        Ok(DocView { notes, checklist })
    }

    /// An item's value: among concurrent values, the cloud's; otherwise automerge's own pick.
    fn item(&self, item: &str) -> Option<bool> {
        let values = self.doc.get_all(&self.checklist, item).ok()?;
        let by_cloud = values.iter().rev().find(
            |(_, id)| matches!(id, ObjId::Id(_, actor, _) if actor.to_bytes() == CLOUD_ACTOR),
        );
        let chosen = match by_cloud {
            Some(v) => Some(v),
            None => values.last(),
        };
        match chosen {
            Some((Value::Scalar(s), _)) => s.as_bool(),
            _ => None,
        }
    }
}

/// Change bytes as they travel in JSON.
pub fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn decode(text: &str) -> Result<Vec<u8>, DocError> {
    Ok(base64::engine::general_purpose::STANDARD.decode(text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(notes: Option<&str>, items: &[(&str, Option<bool>)]) -> DocEdit {
        DocEdit {
            notes: notes.map(str::to_owned),
            checklist: items.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        }
    }

    #[test]
    fn concurrent_edits_converge_with_cloud_priority() {
        let mut edge = SharedDoc::new(b"edge-1");
        let mut cloud = SharedDoc::new(CLOUD_ACTOR);
        // Concurrent first edits: both texts survive, the conflicting item takes the cloud's value.
        let from_edge = edge
            .edit(
                &edit(
                    Some("Ganti oli."),
                    &[("rem", Some(true)), ("ban", Some(true))],
                ),
                1,
            )
            .expect("edge edit");
        let from_cloud = cloud
            .edit(&edit(Some("Cek aki."), &[("rem", Some(false))]), 2)
            .expect("cloud edit");
        edge.apply(&cloud.save()).expect("edge merges");
        cloud.apply(&from_edge).expect("cloud merges");
        let (a, b) = (edge.view().expect("view"), cloud.view().expect("view"));
        assert_eq!(a, b, "both sides render the same");
        assert!(
            a.notes.contains("Ganti oli.") && a.notes.contains("Cek aki."),
            "{a:?}"
        );
        assert_eq!(
            a.checklist.get("rem"),
            Some(&false),
            "cloud wins the conflict"
        );
        assert_eq!(a.checklist.get("ban"), Some(&true));
        // An edge edit made after seeing the cloud's value wins; re-applying changes nothing.
        let later = edge
            .edit(&edit(None, &[("rem", Some(true))]), 3)
            .expect("edit");
        cloud.apply(&later).expect("merge");
        cloud.apply(&later).expect("merge again");
        cloud.apply(&from_cloud).expect("own changes again");
        assert!(cloud.view().expect("view").checklist["rem"]);
        assert_eq!(edge.view().expect("view"), cloud.view().expect("view"));
    }

    #[test]
    fn save_load_and_no_op_edits() {
        let mut doc = SharedDoc::new(b"edge-1");
        assert!(!doc.edit(&edit(Some("a"), &[]), 1).expect("edit").is_empty());
        assert!(doc.edit(&edit(Some("a"), &[]), 1).expect("edit").is_empty());
        assert!(
            doc.edit(&edit(None, &[("x", None)]), 1)
                .expect("edit")
                .is_empty()
        );
        let saved = doc.save();
        let back = SharedDoc::load(&saved, b"edge-1").expect("load");
        assert_eq!(back.view().expect("view").notes, "a");
        assert!(SharedDoc::load(b"garbage", b"x").is_err());
        let mut fresh = SharedDoc::new(b"edge-2");
        assert!(fresh.apply(b"\x85\x6f\x4a\x83garbage").is_err());
    }

    #[test]
    fn changes_apply_whole_or_not_at_all() {
        let mut a = SharedDoc::new(b"edge-1");
        let first = a.edit(&edit(Some("one"), &[]), 1).expect("edit");
        let second = a.edit(&edit(Some("one two"), &[]), 2).expect("edit");
        let mut b = SharedDoc::new(CLOUD_ACTOR);
        let refused = b.apply(&second).expect_err("depends on a change b lacks");
        assert!(matches!(refused, DocError::MissingChanges), "{refused}");
        assert!(b.apply(&first[..first.len() - 3]).is_err(), "truncated");
        assert_eq!(b.view().expect("view").notes, "", "nothing taken");
        b.apply(&first).expect("first");
        b.apply(&second).expect("then second");
        assert_eq!(b.view().expect("view").notes, "one two");
        // A whole saved document merges into one that already has some of it.
        let mut c = SharedDoc::new(b"edge-2");
        c.apply(&first).expect("first");
        c.apply(&a.save()).expect("whole document");
        assert_eq!(c.view().expect("view").notes, "one two");
    }

    #[test]
    fn edit_checks() {
        assert!(edit(None, &[]).check().is_err());
        assert!(edit(Some("x"), &[]).check().is_ok());
        assert!(edit(None, &[(" rem", Some(true))]).check().is_err());
        assert!(edit(None, &[("rem", None)]).check().is_ok());
        let long = "x".repeat(MAX_NOTES_CHARS + 1);
        assert!(edit(Some(&long), &[]).check().is_err());
    }
}
