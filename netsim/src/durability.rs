//! The durability workload ([`Workload::Durability`](crate::Workload::Durability)): what the
//! network still stores while its nodes come and go. Objects are placed and records published
//! as in the content and record workloads; then churn runs for the whole duration with nobody
//! reading, and every hour [`Simulator::check_durability`] counts, from the simulator's ground
//! truth, the chunks that some online honest node still stores and the records that some online
//! honest node still holds (and has not let expire). The repair traffic is the bytes of the
//! copies the engines asked for (`Event::Replicate`, on a join, a noticed leave or the repair
//! job), over the node-hours of the run.

use std::collections::HashSet;

use cairn_dht::{Key, Timestamp};

use crate::sim::Simulator;

/// One hourly count.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Check {
    pub(crate) at: Timestamp,
    /// Chunks (root manifests included) with a copy on an online honest node, of all placed.
    pub(crate) chunks_present: usize,
    pub(crate) chunks_total: usize,
    /// Records some online honest node holds, of all published.
    pub(crate) records_present: usize,
    pub(crate) records_total: usize,
}

impl Check {
    pub(crate) fn chunks_fraction(&self) -> f64 {
        ratio(self.chunks_present, self.chunks_total)
    }

    pub(crate) fn records_fraction(&self) -> f64 {
        ratio(self.records_present, self.records_total)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

impl Simulator {
    /// Counts what is still stored (see the module doc) and notes the online population.
    pub(crate) fn check_durability(&mut self) {
        let now = self.now;
        let mut stored: HashSet<Key> = HashSet::new();
        for n in self.nodes.iter().filter(|n| n.online && !n.adversary) {
            stored.extend(n.store.keys().copied());
        }
        let book = &self.work.content;
        let (mut present, mut total) = (0, 0);
        for (object, run) in book.objects.iter().zip(&book.publishes) {
            if run.publisher.is_none() {
                continue;
            }
            for key in &object.chunks {
                total += 1;
                present += usize::from(stored.contains(key));
            }
        }
        let records_total = self.work.records.len();
        let records_present = self
            .work
            .records
            .iter()
            .filter(|r| {
                let key = r.key();
                self.nodes.iter().any(|n| {
                    n.online
                        && !n.adversary
                        && n.engine
                            .as_ref()
                            .is_some_and(|e| e.stored_record(&key, now).is_some())
                })
            })
            .count();
        let online = self.nodes.iter().filter(|n| n.online).count();
        self.work.checks.push(Check {
            at: now,
            chunks_present: present,
            chunks_total: total,
            records_present,
            records_total,
        });
        self.work.online_samples.push(online);
    }
}
