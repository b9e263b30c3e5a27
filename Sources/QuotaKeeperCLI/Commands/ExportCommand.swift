import ArgumentParser
import FlyingFox
import FlyingSocks
import Foundation
import Logging
import QuotaKeeper
import QuotaKeeperEMF
import ServiceLifecycle
import Synchronization

/// `quotakeeper export --format emf|prometheus [--interval 10s] [--iterations N]`, `quotakeeper export --serve :9464`
struct ExportCommand: FailureReportingCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Publish every budget's fleet gauges (use, limits, ceiling, in flight, breaker, peaks) read from Redis.",
        discussion: """
            Run one exporter per fleet (the gauges are the ledger's own numbers: several exporters publish the \
            same values). Without --serve, prints EMF lines (one JSON document per line, for a log agent) or a \
            Prometheus text exposition every --interval until Ctrl-C or SIGTERM (exit 0), or --iterations times. \
            A Redis outage is reported on stderr and the next interval tries again (exit 4 if the last one \
            failed). With --serve [HOST]:PORT, answers GET /metrics in the Prometheus text format 0.0.4 (503 \
            while Redis is unreachable; a wrong password exits 5 at start) until SIGINT or SIGTERM. The gauges are listed in docs/observability.md.
            """)

    enum ExportFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
        case emf, prometheus
    }

    @OptionGroup var connection: ConnectionOptions
    @Option(help: ArgumentHelp("emf (CloudWatch Embedded Metric Format) or prometheus (text format 0.0.4).", valueName: "format"))
    var format: ExportFormat = .prometheus
    @Option(help: ArgumentHelp("Time between exports on stdout.", valueName: "duration"), transform: ArgumentSyntax.duration)
    var interval: Duration = .seconds(10)
    @Option(help: ArgumentHelp("Stop after this many exports (default: until Ctrl-C).", valueName: "n"), transform: ArgumentSyntax.count("--iterations", minimum: 1))
    var iterations: Int?
    @Option(help: ArgumentHelp("Serve GET /metrics (Prometheus) on [HOST]:PORT, e.g. :9464 (all IPv4 interfaces), 127.0.0.1:9464 or [::1]:9464 (IPv6).", valueName: "address"), transform: ListenAddress.init)
    var serve: ListenAddress?
    @Option(name: .customLong("peaks-since"), help: ArgumentHelp("Span of the per-minute peak gauges (whole minutes, up to 7d).", valueName: "duration"), transform: ArgumentSyntax.duration)
    var peaksSince: Duration = .seconds(3600)
    @Option(help: ArgumentHelp("CloudWatch namespace of the EMF documents.", valueName: "namespace"))
    var namespace = "QuotaKeeper"

    func validate() throws {
        if serve != nil && format == .emf { throw ValidationError("--serve publishes the Prometheus format; drop --format emf") }
        if serve != nil && iterations != nil { throw ValidationError("--iterations applies only without --serve") }
        if !(1...255).contains(namespace.count) { throw ValidationError("--namespace must be 1-255 characters") }
        _ = try HistorySpan.minutes(peaksSince, option: "--peaks-since")
    }

    func execute() async throws {
        let peakMinutes = try HistorySpan.minutes(peaksSince, option: "--peaks-since")
        try await connection.withLedger { ledger in
            let exporter: any Service
            if let serve {
                exporter = try await MetricsEndpoint(address: serve, ledger: ledger, peakMinutes: peakMinutes)
            } else {
                exporter = ExportPrinter(
                    ledger: ledger, peakMinutes: peakMinutes, format: format, interval: interval, iterations: iterations,
                    encoder: EMFDocumentEncoder(configuration: BudgetGauges.emfConfiguration(namespace: namespace)))
            }
            // SIGINT and SIGTERM shut the exporter down gracefully (the current export or scrape finishes, exit 0);
            // an error it throws (a listen failure, a wrong password) ends the command with that error.
            let group = ServiceGroup(configuration: ServiceGroupConfiguration(
                services: [.init(service: exporter, successTerminationBehavior: .gracefullyShutdownGroup)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: Logger(label: "quotakeeper.export", factory: { _ in SwiftLogNoOpLogHandler() })))
            try await group.run()
        }
    }
}

/// Prints an export every `interval` until `iterations` or a graceful shutdown. A Redis outage is reported and retried.
struct ExportPrinter: Service {
    let ledger: QuotaLedger
    let peakMinutes: Int
    let format: ExportCommand.ExportFormat
    let interval: Duration
    let iterations: Int?
    let encoder: EMFDocumentEncoder

    func run() async throws {
        try await cancelWhenGracefulShutdown { try await printExports() }
    }

    private func printExports() async throws {
        var lastFailed = false
        var round = 0
        while iterations.map({ round < $0 }) ?? true {
            round += 1
            do {
                let budgets = try await BudgetGauges.read(ledger: ledger, peakMinutes: peakMinutes)
                try Task.checkCancellation()
                switch format {
                case .emf:
                    let lines = budgets.flatMap { $0.emfDocuments(encoder) }
                    if !lines.isEmpty { StandardStream.output.write(lines.joined(separator: "\n") + "\n") }
                case .prometheus:
                    let time = Format.timestamp(milliseconds: budgets.first?.nowMilliseconds ?? Int64(Date().timeIntervalSince1970 * 1000))
                    StandardStream.output.write("# quotakeeper export \(round) at \(time)\n" + PrometheusExposition.render(budgets) + "\n")
                }
                lastFailed = false
            } catch is CancellationError {
                return
            } catch {
                let failure = CLIFailure(error)
                guard failure.status == .redisUnavailable else { throw failure }
                failure.report(json: false)
                lastFailed = true
            }
            if iterations.map({ round < $0 }) ?? true {
                do { try await Task.sleep(for: interval) } catch { return }
            }
        }
        if lastFailed { throw ExitCode(ExitStatus.redisUnavailable.rawValue) }  // reported above
    }
}

/// `GET /metrics` on FlyingFox's HTTP server, as a service: a graceful shutdown stops the server (open scrapes get
/// 1 s to finish); a failure to listen is an error (exit 1).
struct MetricsEndpoint: Service {
    let address: ListenAddress
    private let server: HTTPServer

    /// Checks the address and Redis (wrong credentials or an unreadable reply end the command, exit 5 or 7, rather
    /// than every scrape; an unreachable Redis may come back, so the server starts and answers 503 meanwhile).
    init(address: ListenAddress, ledger: QuotaLedger, peakMinutes: Int) async throws {
        let socketAddress: any SocketAddress
        do {
            if address.isIPv6 {
                socketAddress = try sockaddr_in6.inet6(ip6: address.host, port: address.port)
            } else {
                socketAddress = try sockaddr_in.inet(ip4: address.host, port: address.port)
            }
        } catch {
            throw CLIFailure(.invalidInput, "--serve: '\(address.host)' is not an IPv\(address.isIPv6 ? 6 : 4) address")
        }
        do {
            _ = try await BudgetGauges.read(ledger: ledger, peakMinutes: peakMinutes)
        } catch {
            let failure = CLIFailure(error)
            guard failure.status == .redisUnavailable else { throw failure }
            failure.report(json: false)
        }
        self.address = address
        server = HTTPServer(
            config: HTTPServer.Configuration(address: socketAddress, timeout: 30, logger: .disabled),
            handler: ClosureHTTPHandler { request in
                await Self.metricsResponse(request, ledger: ledger, peakMinutes: peakMinutes)
            })
    }

    func run() async throws {
        let stopping = StopRequest()
        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    do {
                        try await server.run()
                    } catch _ where stopping.requested {
                        // Closing the listening socket on shutdown ends the server's accept loop with an error.
                    }
                }
                try await announce(group: &group)
                try await group.waitForAll()
            }
        } onGracefulShutdown: {
            stopping.request()
            Task { await server.stop(timeout: 1) }
        }
    }

    /// Prints the address really bound (port 0 picks one) once the server listens.
    private func announce(group: inout ThrowingTaskGroup<Void, any Error>) async throws {
        do {
            try await server.waitUntilListening(timeout: 5)
        } catch {
            group.cancelAll()
            var cause: any Error = error  // the server's own error (address in use) says more than the wait's timeout
            do { _ = try await group.next() } catch let serverError where !(serverError is CancellationError) { cause = serverError } catch {}
            throw CLIFailure(.invalidInput, "--serve: cannot listen on \(address): \(cause)")
        }
        switch await server.listeningAddress {
        case .ip4(_, let port)?, .ip6(_, let port)?:
            // A wildcard host is shown as its loopback.
            var shown = address
            shown.port = port
            shown.host = ["0.0.0.0": "127.0.0.1", "::": "::1"][address.host] ?? address.host
            StandardStream.error.write("quotakeeper export: serving http://\(shown)/metrics (SIGINT or SIGTERM stops)\n")
        default:
            break
        }
    }

    /// `GET /metrics`: the exposition, or 503 with the error while Redis fails; 404 elsewhere.
    private static func metricsResponse(_ request: HTTPRequest, ledger: QuotaLedger, peakMinutes: Int) async -> HTTPResponse {
        guard request.path == "/metrics" else {
            return HTTPResponse(statusCode: .notFound, headers: [.contentType: "text/plain"], body: Data("not found: GET /metrics\n".utf8))
        }
        guard request.method == .GET || request.method == .HEAD else {
            return HTTPResponse(statusCode: .methodNotAllowed, headers: [.contentType: "text/plain"], body: Data("use GET /metrics\n".utf8))
        }
        do {
            let budgets = try await BudgetGauges.read(ledger: ledger, peakMinutes: peakMinutes)
            return HTTPResponse(
                statusCode: .ok, headers: [.contentType: PrometheusExposition.contentType],
                body: Data(PrometheusExposition.render(budgets).utf8))
        } catch {
            let failure = CLIFailure(error)
            failure.report(json: false)
            return HTTPResponse(
                statusCode: .serviceUnavailable, headers: [.contentType: "text/plain"],
                body: Data("quotakeeper export: \(failure.status.name): \(failure.message)\n".utf8))
        }
    }
}

/// `[HOST]:PORT` for `--serve`: an empty host is every IPv4 interface (0.0.0.0), `localhost` is 127.0.0.1; an
/// IPv6 host goes in brackets (`[::]:9464` every IPv6 interface, `[::1]:9464` loopback).
struct ListenAddress: Sendable, CustomStringConvertible {
    /// The IP address without brackets.
    var host: String
    var port: UInt16

    init(_ text: String) throws {
        let usage = "invalid --serve '\(TerminalText.escaped(text))': use [HOST]:PORT with an IPv4 host or a bracketed IPv6 one, e.g. :9464, 127.0.0.1:9464 or [::1]:9464"
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else {
            throw ValidationError(usage)
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") || host.hasSuffix("]") {
            guard host.count > 2, host.hasPrefix("["), host.hasSuffix("]"), host.contains(":") else { throw ValidationError(usage) }
            host = String(host.dropFirst().dropLast())
        } else if host.contains(":") {
            throw ValidationError(usage)   // an IPv6 host without brackets: its last colon is not the port's
        }
        self.host = host.isEmpty ? "0.0.0.0" : host == "localhost" ? "127.0.0.1" : host
        self.port = port
    }

    var isIPv6: Bool { host.contains(":") }

    var description: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Set when a graceful shutdown has asked the server to stop.
private final class StopRequest: Sendable {
    private let flag = Atomic<Bool>(false)
    var requested: Bool { flag.load(ordering: .acquiring) }
    func request() { flag.store(true, ordering: .releasing) }
}
