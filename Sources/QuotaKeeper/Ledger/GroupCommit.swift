import DequeModule
import QuotaKeeperRedis
import Synchronization

/// Group commit for one kind of a budget's script calls: while one is in flight, the ones that arrive meanwhile
/// queue, and go together as one batched call when it is back (up to `maximumCalls`; more make further calls). A
/// call that finds none of its kind of its budget in flight goes at once, alone: calls that do not overlap pay
/// exactly what they paid before. Under load Redis runs one script per batch instead of one per call.
///
/// The ledger has two (docs/ledger.md, "Batched admissions" and "Batched settlements"): reservations of callers
/// holding no ticket in the waiting line (`ledger_reserve_many`, else `ledger_reserve`) and settlements and
/// releases (`ledger_settle_many`, else `ledger_settle`). A batched script decides a prefix of its calls exactly
/// as the single script would decide them one by one and answers the rest `fallback` (nil here): those are sent
/// alone, one by one, in order. Each caller gets its own reply or error; an error of a batch reaches every call in
/// it (a caller's retry of an unknown outcome repeats its own reservation id, so nothing counts twice).
final class GroupCommit<Call: Sendable>: Sendable {
    /// The single script's reply to one call.
    typealias SendAlone = @Sendable (QuotaLedger, Call, BudgetID) async throws -> RedisReply
    /// The batched script's replies to 2...`maximumCalls` calls, in order: the single script's reply, or nil for a
    /// call to send alone.
    typealias SendMany = @Sendable (QuotaLedger, [Call], BudgetID) async throws -> [RedisReply?]

    private struct Queued {
        var call: Call
        var continuation: CheckedContinuation<RedisReply, any Error>
    }

    /// Per budget with a call in flight: the calls waiting for the next batch. No entry: nothing in flight.
    private let waiting = Mutex<[BudgetID: Deque<Queued>]>([:])
    private let maximumCalls: Int
    private let sendAlone: SendAlone
    private let sendMany: SendMany

    init(maximumCalls: Int, alone: @escaping SendAlone, many: @escaping SendMany) {
        self.maximumCalls = maximumCalls
        self.sendAlone = alone
        self.sendMany = many
    }

    /// The single script's reply to `call`, sent alone or answered in a batch.
    func reply(to call: Call, of budget: BudgetID, ledger: QuotaLedger) async throws -> RedisReply {
        let alone = waiting.withLock { waiting in
            guard waiting[budget] == nil else { return false }
            waiting[budget] = []
            return true
        }
        if alone {
            let result: Result<RedisReply, any Error>
            do { result = .success(try await sendAlone(ledger, call, budget)) } catch { result = .failure(error) }
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
            let batch = Array(queue.prefix(maximumCalls))
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
                replies = try await sendMany(ledger, batch.map(\.call), budget)
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
            do { queued.continuation.resume(returning: try await sendAlone(ledger, queued.call, budget)) } catch {
                queued.continuation.resume(throwing: error)
            }
        }
    }
}
