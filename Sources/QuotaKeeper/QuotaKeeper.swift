// QuotaKeeper: fleet-wide Bedrock quota ledger, shared circuit breaker and resilient call path over Redis.
// Of the Redis layer, users see what they configure, own and catch: the client (its lifecycle), its
// configuration and its errors. Raw commands, replies and scripts (`send`, `RedisReply`, `evalScript`) are
// `package` API of QuotaKeeperRedis, for the ledger and the package's own tools and tests.
@_exported import class QuotaKeeperRedis.RedisClient
@_exported import struct QuotaKeeperRedis.RedisConfiguration
@_exported import struct QuotaKeeperRedis.RedisError
// `RedisConfiguration.auth = .iam(.init(token: ElastiCacheIAMToken(...)))` (README, IAM authentication).
@_exported import struct AWSAuth.ElastiCacheIAMToken
