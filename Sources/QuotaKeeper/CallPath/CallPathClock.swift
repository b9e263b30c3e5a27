/// The clock the call path's driver reads and sleeps on (deadline, latencies, waits, retry backoff):
/// `ContinuousClock` in production; tests pass a manual clock, so waits are exact and take no real time.
/// Its instants are `ContinuousClock`'s, so a deadline means the same to the driver and to the policy.
protocol CallPathClock: Clock where Instant == ContinuousClock.Instant {}

extension ContinuousClock: CallPathClock {}
