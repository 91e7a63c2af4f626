//! CPU figures of the `fleet` part: the relay's (and how long its threads waited for a CPU),
//! PostgreSQL's, this process's per thread, and the whole machine's.

use std::collections::HashMap;

use crate::relay_process::{
    cpu_seconds, machine_cpu_seconds, run_queue_seconds, thread_cpu_seconds, tree_cpu_seconds,
    RelayProcess,
};

/// CPU seconds so far (or between two readings): the relay's, this process's, and this process's
/// per thread name (threads of one name summed: a runtime's blocking pool).
pub struct Cpu {
    pub relay: f64,
    /// The relay's threads: time ready to run but waiting for a CPU.
    pub relay_waiting: f64,
    /// PostgreSQL: its server process and backends, when found.
    pub database: f64,
    pub bench: f64,
    /// This process's threads: time ready to run but waiting for a CPU.
    pub bench_waiting: f64,
    /// The whole machine: busy, stolen by the hypervisor, niced processes.
    pub machine: (f64, f64, f64),
    pub threads: HashMap<String, f64>,
}

impl Cpu {
    /// The readings now.
    pub fn now(relay: &RelayProcess, database: Option<u32>) -> Self {
        let mut threads = HashMap::new();
        for (key, seconds) in thread_cpu_seconds("self", "bench") {
            // "bench/TID NAME"
            let name = key.split_once(' ').map_or(key.as_str(), |(_, n)| n);
            *threads.entry(name.to_owned()).or_insert(0.0) += seconds;
        }
        Self {
            relay: relay.cpu_seconds(),
            relay_waiting: relay.run_queue_seconds(),
            database: database.map_or(0.0, tree_cpu_seconds),
            bench: cpu_seconds("self"),
            bench_waiting: run_queue_seconds("self"),
            machine: machine_cpu_seconds(),
            threads,
        }
    }

    /// What was spent since `before`.
    pub fn minus(&self, before: &Cpu) -> Self {
        let threads = self
            .threads
            .iter()
            .map(|(name, s)| {
                let then = before.threads.get(name).copied().unwrap_or(0.0);
                (name.clone(), (s - then).max(0.0))
            })
            .collect();
        Self {
            relay: self.relay - before.relay,
            relay_waiting: self.relay_waiting - before.relay_waiting,
            database: self.database - before.database,
            bench: self.bench - before.bench,
            bench_waiting: self.bench_waiting - before.bench_waiting,
            machine: (
                self.machine.0 - before.machine.0,
                self.machine.1 - before.machine.1,
                self.machine.2 - before.machine.2,
            ),
            threads,
        }
    }

    /// Adds a later reading's difference (two parts of one setting).
    pub fn add(&mut self, other: Cpu) {
        self.relay += other.relay;
        self.relay_waiting += other.relay_waiting;
        self.database += other.database;
        self.bench += other.bench;
        self.bench_waiting += other.bench_waiting;
        self.machine.0 += other.machine.0;
        self.machine.1 += other.machine.1;
        self.machine.2 += other.machine.2;
        for (name, s) in other.threads {
            *self.threads.entry(name).or_insert(0.0) += s;
        }
    }
}
