extension Duration {
    /// Whole milliseconds, rounded up (a wait or lease is never shortened).
    public var millisecondsRoundedUp: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
    }

    /// Whole milliseconds, rounded down (a caller's remaining wait is never lengthened).
    public var millisecondsRoundedDown: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
