import DequeModule
import QuotaKeeperRedis
import Synchronization

/// Group commit for a budget's reservations (of callers holding no ticket in its waiting line): while one is in
/// flight, the ones that arrive meanwhile queue, and go together as one `ledger_reserve_many` call when it is back (up to
/// ``LedgerWire/ReserveManyArguments/maximumCalls``; more make further calls). A reservation that finds no call
/// of its budget in flight goes at once, alone, through `ledger_reserve`: calls that do not overlap pay exactly
/// what they paid before. Under load Redis runs one script per batch instead of one per reservation
/// (docs/ledger.md, "Batched admissions").
///
/// A batch admits a prefix of its calls exactly as `ledger_reserve` would admit them one by one; the rest (a
/// denial or anything off the everyday path, and every call after it) go through `ledger_reserve` one by one, in
/// order. Each caller gets its own reply or error; an error of a batch reaches every call in it (the caller's
/// retry of an unknown outcome repeats its reservation id, so nothing is held twice).
final class ReserveCoalescer: Sendable {
    private struct Queued {
        var call: LedgerWire.ReserveArguments
        var continuation: CheckedContinuation<RedisReply, any Error>
    }

    /// Per budget with a call in flight: the calls waiting for the next batch. No entry: nothing in flight.
    private let waiting = Mutex<[BudgetID: Deque<Queued>]>([:])

    /// `ledger_reserve`'s reply to `call`, sent alone or admitted in a batch (`ledger_reserve_many` ignores the
    /// waiting arguments: a call it does not admit on the everyday path is sent alone, with them).
    func reply(to call: LedgerWire.ReserveArguments, of budget: BudgetID, ledger: QuotaLedger) async throws -> RedisReply {
        let alone = waiting.withLock { waiting in
            guard waiting[budget] == nil else { return false }
            waiting[budget] = []
            return true
        }
        if alone {
            let result: Result<RedisReply, any Error>
            do { result = .success(try await ledger.reserveAlone(call, of: budget)) } catch { result = .failure(error) }
            sendQueued(of: budget, ledger: ledger)
            return try result.get()
        }
        return try await withCheckedThrowingContinuation { continuation in
            let leads = waiting.withLock { waiting in
                guard waiting[budget] != nil else {   // the call in flight came back meanwhile: this one leads
                    waiting[budget] = [Queued(call: call, continuation: continuation)]
                    return true
                }
                waiting[budget]!.append(Queued(call: call, continuation: continuation))
                return false
            }
            if leads { sendQueued(of: budget, ledger: ledger) }
        }
    }

    /// Sends the budget's queued calls, batch after batch, until none is left (then nothing is in flight).
    private func sendQueued(of budget: BudgetID, ledger: QuotaLedger) {
        let first = nextBatch(of: budget)
        guard !first.isEmpty else { return }
        Task {
            var batch = first
            while !batch.isEmpty {
                await send(batch, of: budget, ledger: ledger)
                batch = nextBatch(of: budget)
            }
        }
    }

    /// Takes up to a batch of the budget's queued calls; with none left, marks the budget as having nothing in flight.
    private func nextBatch(of budget: BudgetID) -> [Queued] {
        waiting.withLock { waiting in
            guard var queue = waiting[budget], !queue.isEmpty else {
                waiting[budget] = nil
                return []
            }
            let batch = Array(queue.prefix(LedgerWire.ReserveManyArguments.maximumCalls))
            queue.removeFirst(batch.count)
            waiting[budget] = queue
            return batch
        }
    }

    private func send(_ batch: [Queued], of budget: BudgetID, ledger: QuotaLedger) async {
        var replies: [RedisReply?]
        if batch.count == 1 {
            replies = [nil]
        } else {
            do {
                replies = try await ledger.reserveMany(batch.map(\.call), of: budget)
            } catch {
                for queued in batch { queued.continuation.resume(throwing: error) }
                return
            }
        }
        for (queued, reply) in zip(batch, replies) {
            if let reply {
                queued.continuation.resume(returning: reply)
                continue
            }
            do { queued.continuation.resume(returning: try await ledger.reserveAlone(queued.call, of: budget)) } catch {
                queued.continuation.resume(throwing: error)
            }
        }
    }
}
