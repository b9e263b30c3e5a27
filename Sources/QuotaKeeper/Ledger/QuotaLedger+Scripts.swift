import QuotaKeeperRedis

extension QuotaLedger {
    /// The exact `ledger_reserve` script the ledger runs (for benchmarks and tools that drive it directly,
    /// e.g. `redis-benchmark EVALSHA <sha1> 1 <ledgerKey> app interactive 1 <tokens> 0`).
    package static var reserveScript: RedisScript { LedgerScripts.reserve }

    /// The exact `ledger_settle` script the ledger runs (for benchmarks that drive it directly).
    package static var settleScript: RedisScript { LedgerScripts.settle }

    /// The batched scripts (`ledger_reserve_many`, `ledger_settle_many`) the ledger sends for calls that overlap (for
    /// benchmarks that drive them directly).
    package static var reserveManyScript: RedisScript { LedgerScripts.reserveMany }
    package static var settleManyScript: RedisScript { LedgerScripts.settleMany }

    /// Every script of the ledger, e.g. to load them into a new Redis ahead of time.
    package static var allScripts: [RedisScript] { LedgerScripts.all }
}
