extension RedisConfiguration {
    /// Whether the endpoint is one node of a Redis Cluster (`?cluster=on|off|auto` in the URL).
    public enum ClusterMode: String, Sendable, CaseIterable {
        /// Asks the server on first use (`CLUSTER SLOTS`): a cluster node makes the client route by slot,
        /// a server without cluster support makes it a plain single-node client.
        case auto
        /// The endpoint must be a cluster node; the first command fails if it is not.
        case on
        /// Never asks: every command goes to the endpoint, as to a single Redis (also what a router uses
        /// for each node of a cluster).
        case off
    }
}
