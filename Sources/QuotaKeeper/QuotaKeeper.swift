// QuotaKeeper: fleet-wide Bedrock quota ledger, shared circuit breaker and resilient call path over Redis.
// The Redis layer's configuration and errors are part of this library's API.
@_exported import QuotaKeeperRedis
