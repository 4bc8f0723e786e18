//! What a shared document (automerge 0.12, pinned) costs per edit, beside the floor of keeping the
//! same notes as a plain JSON column. Each row is the work one API edit or one ingested event
//! does: load the saved document, change it, save it.
//!
//! `cargo bench -p sentra-protocol --bench documents`

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::time::{Duration, Instant};

use sentra_protocol::doc::{CLOUD_ACTOR, DocEdit, DocView, SharedDoc};

const ROUNDS: usize = 2_000;

fn edit(round: usize) -> DocEdit {
    DocEdit {
        notes: Some(format!(
            "Servis berkala. Ganti oli mesin dan filter. Catatan ke-{round}: cek rem depan, tekanan ban, aki."
        )),
        checklist: [(
            format!("item {}", round % 12),
            Some(round.is_multiple_of(2)),
        )]
        .into_iter()
        .collect(),
    }
}

/// A document after `edits` edits, saved.
fn history(edits: usize) -> Vec<u8> {
    let mut doc = SharedDoc::new(b"edge-bench");
    for round in 0..edits {
        doc.edit(&edit(round), 0).expect("edit");
    }
    doc.save()
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    let total: Duration = samples.iter().sum();
    println!(
        "{name:<58} p50 {:>7.1} µs  p99 {:>7.1} µs  {:>8.0} /s",
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        samples.len() as f64 / total.as_secs_f64()
    );
}

fn main() {
    println!("automerge 0.12 shared documents, {ROUNDS} rounds each");
    for edits in [1, 20, 200] {
        let saved = history(edits);
        println!(
            "\ndocument with {edits} earlier edits: {} bytes saved",
            saved.len()
        );

        // The edge: load, edit, save the whole document, take the change bytes for the outbox.
        let mut edge = Vec::with_capacity(ROUNDS);
        let mut change_bytes = 0;
        for round in 0..ROUNDS {
            let started = Instant::now();
            let mut doc = SharedDoc::load(&saved, b"edge-bench").expect("load");
            let change = doc.edit(&edit(edits + round), 0).expect("edit");
            let _whole = doc.save();
            edge.push(started.elapsed());
            change_bytes = change.len();
        }
        report("edge edit (load, edit, save)", edge);
        println!(
            "{:<58} {change_bytes} bytes",
            "  change sent in the outbox event"
        );

        // The cloud: load, merge one edge change strictly, save, render.
        let mut doc = SharedDoc::load(&saved, b"edge-bench").expect("load");
        let change = doc.edit(&edit(edits), 0).expect("edit");
        let mut cloud = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let mut doc = SharedDoc::load(&saved, CLOUD_ACTOR).expect("load");
            doc.apply(&change).expect("merge");
            let _whole = doc.save();
            let _view = doc.view().expect("view");
            cloud.push(started.elapsed());
        }
        report(
            "cloud merge of one event (load, apply, save, render)",
            cloud,
        );

        // The floor: the same notes as a JSON column, read, changed and written back.
        let view = SharedDoc::load(&saved, b"x")
            .expect("load")
            .view()
            .expect("view");
        let column = serde_json::to_vec(&view).expect("json");
        let mut floor = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS {
            let started = Instant::now();
            let mut v: DocView = serde_json::from_slice(&column).expect("json");
            v.notes = edit(round).notes.unwrap_or_default();
            let _bytes = serde_json::to_vec(&v).expect("json");
            floor.push(started.elapsed());
        }
        report("floor: plain JSON column (parse, change, write)", floor);
    }
}
