//! Persistence: RocksDB with the column families of [`catalogue`], and a group-commit writer
//! that makes every acknowledged write durable without paying one fsync per write.

pub mod catalogue;
mod group_commit;

use std::{path::Path, sync::Arc};

use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Options, WriteBatch};

pub use group_commit::{Durability, GroupCommit, WriterThread};

/// What can go wrong below the services.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("database: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
    #[error("the writer has stopped")]
    WriterStopped,
    #[error("starting the writer thread: {0}")]
    WriterStart(String),
}

/// A value's JSON, to store. Serializing fails only for a map with keys that are not strings
/// or a `Serialize` that reports an error; what the server stores (JSON values, and structs
/// and maps of strings and numbers) has neither.
pub fn to_json_bytes<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    #[allow(clippy::expect_used)]
    serde_json::to_vec(value).expect("stored values serialize")
}

/// One stored `(key, value)` pair.
pub type Entry = (Box<[u8]>, Box<[u8]>);

/// The bound of the block cache that every column family shares.
const BLOCK_CACHE_BYTES: usize = 32 << 20;

/// Column families asked mostly about keys they do not hold: every event received from
/// another server is first looked up (is it known already? is the state before it stored?),
/// and is new almost every time.
const MOSTLY_ABSENT_LOOKUPS: &[&str] = &[catalogue::EVENTID_STATEGROUP, catalogue::EVENTID_PDU];

/// The database handle shared by all services.
#[derive(Clone)]
pub struct Storage {
    db: Arc<DB>,
    writer: GroupCommit,
}

impl Storage {
    /// Opens (or creates) the database in `dir` with every column family of the catalogue.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // Bounded memory: a small organisation's server should idle well under 100 MB. Each
        // column family has its own memtable, so the per-family size must be set on each
        // family's options; the database-wide budget caps them all together (past it, the
        // largest is flushed), whatever the number of families.
        const MEMTABLE_BYTES: usize = 16 << 20;
        options.set_write_buffer_size(MEMTABLE_BYTES);
        options.set_db_write_buffer_size(4 * MEMTABLE_BYTES);
        options.set_max_open_files(512);
        // The log is written to its file only when the writer thread syncs it (`flush_wal`),
        // in one write: an fsync right after one write of a group's bytes costs about 0.5 ms
        // here, one after the same bytes reached the file in pieces as they were written
        // (RocksDB's default), about 0.85 ms. Nothing is acknowledged before that sync, so a
        // crash loses only writes nobody was told were made.
        options.set_manual_wal_flush(true);
        // One block cache for every family, so its bound is the whole database's (each family
        // would otherwise get its own). Bloom filters in the tables let a lookup of an absent
        // key skip reading a block.
        let block_cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let mut tables = BlockBasedOptions::default();
        tables.set_block_cache(&block_cache);
        tables.set_bloom_filter(10.0, false);
        let families = catalogue::ALL.iter().map(|cf| {
            let mut cf_options = Options::default();
            cf_options.set_write_buffer_size(MEMTABLE_BYTES);
            cf_options.set_compression_type(rocksdb::DBCompressionType::Lz4);
            cf_options.set_block_based_table_factory(&tables);
            if MOSTLY_ABSENT_LOOKUPS.contains(&cf.name) {
                // A bloom filter over the memtable's keys: a miss then costs a few hashes
                // instead of a skip-list search (about 2% of the memtable's size).
                cf_options.set_memtable_whole_key_filtering(true);
                cf_options.set_memtable_prefix_bloom_ratio(0.02);
            }
            ColumnFamilyDescriptor::new(cf.name, cf_options)
        });
        let db = Arc::new(DB::open_cf_descriptors(&options, dir, families)?);
        let writer = GroupCommit::start(db.clone())?;
        Ok(Self { db, writer })
    }

    /// Test support: drops `holders` (this handle's last companions, such as a service
    /// holding a clone) and this handle, waits until the database is closed, and removes
    /// `dir`. A test process that exits while RocksDB is still closing can abort ("pthread
    /// lock: Invalid argument").
    #[cfg(test)]
    pub fn close_for_test<T>(self, holders: T, dir: &Path) {
        let writer = self.writer_thread();
        drop((holders, self));
        writer.join();
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The writer thread, to wait for at shutdown (see [`WriterThread::join`]).
    pub fn writer_thread(&self) -> WriterThread {
        self.writer.thread()
    }

    /// Reads one value.
    pub fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }

    /// A new batch to fill and then [`Storage::commit`].
    pub fn batch(&self) -> Batch<'_> {
        Batch { storage: self, batch: WriteBatch::default() }
    }

    /// Writes a batch atomically and returns once it is durable on disk.
    pub async fn commit(&self, batch: Batch<'_>) -> Result<(), StorageError> {
        self.writer.write(batch.batch).await
    }

    /// Queues a batch for an atomic, durable commit and returns at once (see
    /// [`GroupCommit::enqueue`]); wait on the answer before acknowledging the write.
    pub async fn enqueue(&self, batch: Batch<'_>) -> Result<Durability, StorageError> {
        self.writer.enqueue(batch.batch).await
    }

    /// Queues a batch as part of a larger write, durable with the next [`Storage::enqueue`]d
    /// batch (see [`GroupCommit::enqueue_part`]).
    pub async fn enqueue_part(&self, batch: Batch<'_>) -> Result<(), StorageError> {
        self.writer.enqueue_part(batch.batch).await
    }

    /// All `(key, value)` pairs whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, cf: &str, prefix: &[u8]) -> Result<Vec<Entry>, StorageError> {
        let iter = self.db.iterator_cf(
            &self.cf(cf),
            rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            let (key, value) = item?;
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key, value));
        }
        Ok(out)
    }

    /// The first `(key, value)` whose key starts with `prefix`.
    pub fn scan_prefix_first(
        &self,
        cf: &str,
        prefix: &[u8],
    ) -> Result<Option<Entry>, StorageError> {
        let mut iter = self.db.iterator_cf(
            &self.cf(cf),
            rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward),
        );
        match iter.next() {
            Some(item) => {
                let (key, value) = item?;
                Ok(key.starts_with(prefix).then_some((key, value)))
            }
            None => Ok(None),
        }
    }

    /// The last `(key, value)` whose key starts with `prefix` and is at most `prefix + upper`.
    pub fn last_in_prefix(
        &self,
        cf: &str,
        prefix: &[u8],
        upper: &[u8],
    ) -> Result<Option<Entry>, StorageError> {
        let mut start = prefix.to_vec();
        start.extend_from_slice(upper);
        let mut iter = self.db.iterator_cf(
            &self.cf(cf),
            rocksdb::IteratorMode::From(&start, rocksdb::Direction::Reverse),
        );
        match iter.next() {
            Some(item) => {
                let (key, value) = item?;
                Ok(key.starts_with(prefix).then_some((key, value)))
            }
            None => Ok(None),
        }
    }

    /// Pairs whose key starts with `prefix` and is at most `prefix + upper`, newest (highest)
    /// first, at most `limit`.
    pub fn scan_back(
        &self,
        cf: &str,
        prefix: &[u8],
        upper: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let mut start = prefix.to_vec();
        start.extend_from_slice(upper);
        let iter = self.db.iterator_cf(
            self.cf(cf),
            rocksdb::IteratorMode::From(&start, rocksdb::Direction::Reverse),
        );
        let mut out = Vec::new();
        for item in iter {
            let (key, value) = item?;
            if !key.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((key, value));
        }
        Ok(out)
    }

    /// Pairs with keys in `[from, to]`, in key order, at most `limit`.
    pub fn scan_range(
        &self,
        cf: &str,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let iter = self.db.iterator_cf(
            self.cf(cf),
            rocksdb::IteratorMode::From(from, rocksdb::Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            let (key, value) = item?;
            if &*key > to || out.len() >= limit {
                break;
            }
            out.push((key, value));
        }
        Ok(out)
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        // Every name used in code is in the catalogue, which `open` created.
        self.db.cf_handle(name).unwrap_or_else(|| panic!("column family {name} not in catalogue"))
    }
}

/// Writes collected for one atomic, durable commit.
pub struct Batch<'s> {
    storage: &'s Storage,
    batch: WriteBatch,
}

impl Batch<'_> {
    pub fn put(&mut self, cf: &str, key: &[u8], value: &[u8]) {
        self.batch.put_cf(self.storage.cf(cf), key, value);
    }

    pub fn delete(&mut self, cf: &str, key: &[u8]) {
        self.batch.delete_cf(self.storage.cf(cf), key);
    }
}

/// Joins key parts with 0xFF, which never occurs in UTF-8.
pub fn compound_key(parts: &[&[u8]]) -> Vec<u8> {
    let mut key = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(0xFF);
        }
        key.extend_from_slice(part);
    }
    key
}
