// Credentials and SigV4 live in AWSAuth (shared with the Redis layer's ElastiCache IAM authentication);
// users of the Bedrock Runtime client get them with `import BedrockRuntime`, as before.
@_exported import AWSAuth
