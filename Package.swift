// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "QuotaKeeper",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "QuotaKeeper", targets: ["QuotaKeeper"]),
        .library(name: "QuotaKeeperEMF", targets: ["QuotaKeeperEMF"]),
        .executable(name: "quotakeeper", targets: ["QuotaKeeperCLI"]),
        .executable(name: "quotakeeper-bench", targets: ["QuotaKeeperBenchmarks"]),
        .library(name: "BedrockErrors", targets: ["BedrockErrors"]),
        .library(name: "BedrockRuntimeClient", targets: ["BedrockRuntime"]),
        .library(name: "AWSAuth", targets: ["AWSAuth"]),
        .executable(name: "bedrock-sim", targets: ["BedrockSimulatorServer"]),
        .executable(name: "quotakeeper-fleet", targets: ["QuotaKeeperFleet"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/swhitty/FlyingFox", from: "0.27.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        // HTTP to Bedrock and the credential endpoints: connection pool, connect/read timeouts, keep-alive.
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // MARK: Redis layer (the only code that imports CHiredis and COpenSSL)
        .systemLibrary(
            name: "CHiredis",
            pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        // TLS for rediss:// (Debian's OpenSSL 3); hiredis stays the RESP codec over the layer's own sockets.
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(
            name: "QuotaKeeperRedis",
            dependencies: [
                "CHiredis",
                .product(name: "DequeModule", package: "swift-collections"),  // the command queues
                "COpenSSL",
                "AWSAuth",  // ElastiCache IAM authentication tokens
                "TimeLimit",
                .product(name: "Crypto", package: "swift-crypto"),  // SHA-1 script names (Insecure.SHA1)
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),  // RedisClient is a Service
            ]
        ),

        // MARK: Ledger, breaker and call path
        .target(
            name: "QuotaKeeper",
            dependencies: [
                "QuotaKeeperRedis",
                "AWSAuth",  // re-exports ElastiCacheIAMToken (RedisConfiguration.auth = .iam)
                "BedrockErrors",
                "TimeLimit",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            plugins: ["EmbedLuaScripts"]
        ),

        // MARK: CloudWatch Embedded Metric Format backend for swift-metrics (issue 9)
        .target(
            name: "QuotaKeeperEMF",
            dependencies: [
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .testTarget(
            name: "QuotaKeeperEMFTests",
            dependencies: [
                "QuotaKeeperEMF",
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),

        // MARK: Tools
        .executableTarget(
            name: "QuotaKeeperCLI",
            dependencies: [
                "QuotaKeeper",
                "QuotaKeeperEMF",  // export --format emf
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "FlyingFox", package: "FlyingFox"),  // export --serve
                .product(name: "FlyingSocks", package: "FlyingFox"),  // its listen address (IPv4 or IPv6)
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),  // export: SIGTERM/SIGINT, graceful shutdown
            ]
        ),
        .executableTarget(
            name: "QuotaKeeperBenchmarks",
            dependencies: [
                "QuotaKeeper",
                "QuotaKeeperRedis",
                "ChildProcesses",  // redis-benchmark
                "BedrockRuntime",  // quotakeeper-bench bedrock
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),  // latency percentiles
            ],
            plugins: ["EmbedLuaScripts"]
        ),

        // MARK: AWS credentials and SigV4, below both Bedrock Runtime and the Redis layer (IAM auth)
        .target(
            name: "AWSAuth",
            dependencies: [
                "ChildProcesses",  // credential_process
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),  // STS, container endpoint, IMDS
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ]
        ),
        // The one deadline race (withTimeLimit), below every module that bounds an async call.
        .target(name: "TimeLimit"),
        // The one way to run a child process (credential_process, the fleet's bedrock-sim and app instances,
        // redis-benchmark, the tests' servers and workers), on swift-subprocess.
        .target(
            name: "ChildProcesses",
            dependencies: ["TimeLimit", .product(name: "Subprocess", package: "swift-subprocess")]
        ),

        // Loopback servers stand in for STS, the container endpoint and IMDS.
        .testTarget(
            name: "AWSAuthTests",
            dependencies: ["AWSAuth", "ChildProcesses", .product(name: "FlyingFox", package: "FlyingFox")]
        ),

        // MARK: Bedrock error taxonomy, runtime client and simulator (issue 7)
        .target(name: "BedrockErrors"),
        // The AWS event-stream framing (issue 16): one implementation for the client's decoder and the simulator's encoder.
        .target(name: "AWSEventStream"),
        .testTarget(name: "AWSEventStreamTests", dependencies: ["AWSEventStream"], exclude: ["Fixtures"]),
        .target(
            name: "BedrockRuntime",
            dependencies: [
                "AWSAuth",
                "AWSEventStream",
                "BedrockErrors",
                "TimeLimit",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ]
        ),
        .target(
            name: "BedrockSimulator",
            dependencies: [
                "AWSEventStream",
                .product(name: "FlyingFox", package: "FlyingFox"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "BedrockSimulatorServer",
            dependencies: [
                "BedrockSimulator",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // MARK: The fleet demo (issue 8): app instances as separate processes against bedrock-sim and Redis
        .executableTarget(
            name: "QuotaKeeperFleet",
            dependencies: [
                "QuotaKeeper",
                "QuotaKeeperRedis",  // deleting a run's keys (unlinkKeys); the own redis-server's faults (--redis-fault)
                "BedrockErrors",
                "BedrockRuntime",
                "BedrockSimulator",  // only its /stats types, to read the referee
                "TimeLimit",
                "ChildProcesses",  // bedrock-sim and the app instances
                "QuotaKeeperEMF",  // --emf
                .product(name: "Histogram", package: "hdrhistogram-swift"),  // latency percentiles
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // Runs short fleet scenarios with the built quotakeeper-fleet and bedrock-sim binaries.
        .testTarget(name: "QuotaKeeperFleetTests", dependencies: ["QuotaKeeperTestSupport"]),
        .testTarget(name: "BedrockErrorsTests", dependencies: ["BedrockErrors"]),
        .testTarget(
            name: "BedrockRuntimeTests",
            dependencies: [
                "AWSEventStream", "BedrockRuntime", "BedrockErrors", "BedrockSimulator", "QuotaKeeperTestSupport",
                .product(name: "FlyingFox", package: "FlyingFox"),  // a server answering damaged event streams
                .product(name: "AsyncHTTPClient", package: "async-http-client"),  // a shared HTTPClient, its errors
            ]
        ),

        // MARK: Build-time embedding of lua/
        .executableTarget(name: "LuaEmbedder"),
        .plugin(name: "EmbedLuaScripts", capability: .buildTool(), dependencies: ["LuaEmbedder"]),

        // MARK: Tests (all against a real redis-server)
        .target(
            name: "QuotaKeeperTestSupport",
            dependencies: ["QuotaKeeperRedis", "ChildProcesses", .product(name: "Logging", package: "swift-log")],
            path: "Tests/QuotaKeeperTestSupport"
        ),
        .testTarget(
            name: "QuotaKeeperCallPathTests",
            dependencies: [
                "QuotaKeeper", "QuotaKeeperRedis", "BedrockErrors", "BedrockRuntime", "BedrockSimulator", "QuotaKeeperTestSupport",
                "TimeLimit",
            ]
        ),
        .testTarget(
            name: "QuotaKeeperRedisTests",
            dependencies: [
                "QuotaKeeperRedis", "QuotaKeeperTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "QuotaKeeperTests",
            dependencies: ["QuotaKeeper", "QuotaKeeperRedis", "QuotaKeeperTestSupport"]
        ),
        // Runs the built `quotakeeper` binary (found next to the test bundle) against a real redis-server.
        .testTarget(name: "QuotaKeeperCLITests", dependencies: ["QuotaKeeper", "QuotaKeeperRedis", "QuotaKeeperTestSupport"]),
        // Spawned by QuotaKeeperTests (8 processes against one budget); found next to the test bundle.
        .executableTarget(
            name: "QuotaKeeperTestWorker",
            dependencies: ["QuotaKeeper", "BedrockErrors"],
            path: "Tests/QuotaKeeperTestWorker"
        ),
    ]
)
