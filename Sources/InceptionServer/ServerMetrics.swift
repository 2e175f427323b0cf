import Foundation
import Prometheus

/// What `GET /metrics` reports, in Prometheus' text format: HTTP requests by endpoint and status and gRPC calls by
/// method and code, with their latency; batch sizes and forward-pass time per model, and the number of requests
/// waiting per model.
public final class ServerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()

    static let latencyBuckets: [Duration] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
                                             30000].map { .milliseconds($0) }

    public init() {}

    /// `model` is empty for endpoints that are not about one model.
    func request(endpoint: String, model: String, method: String, status: Int, duration: Duration) {
        registry.makeCounter(
            descriptor: .init(namespace: "inception", metricName: "http_requests", unitName: "total",
                              helpText: "HTTP requests by endpoint, method and status."),
            labels: [("endpoint", endpoint), ("model", model), ("method", method), ("status", String(status))]
        ).increment()
        registry.makeDurationHistogram(
            descriptor: .init(namespace: "inception", metricName: "http_request_duration", unitName: "seconds",
                              helpText: "Time from request to response, by endpoint and model."),
            labels: [("endpoint", endpoint), ("model", model)], buckets: Self.latencyBuckets
        ).record(duration)
    }

    /// A gRPC call, by method, model (empty for the server's own) and status code.
    func grpcRequest(method: String, model: String, code: String, duration: Duration) {
        registry.makeCounter(
            descriptor: .init(namespace: "inception", metricName: "grpc_requests", unitName: "total",
                              helpText: "gRPC calls by method, model and status code."),
            labels: [("method", method), ("model", model), ("code", code)]
        ).increment()
        registry.makeDurationHistogram(
            descriptor: .init(namespace: "inception", metricName: "grpc_request_duration", unitName: "seconds",
                              helpText: "Time from call to answer, by method and model."),
            labels: [("method", method), ("model", model)], buckets: Self.latencyBuckets
        ).record(duration)
    }

    func batch(model: String, size: Int, maxBatch: Int, duration: Duration) {
        registry.makeValueHistogram(
            descriptor: .init(namespace: "inception", metricName: "batch", unitName: "size",
                              helpText: "Images per forward pass."),
            labels: [("model", model)], buckets: (1...max(1, maxBatch)).map(Double.init)
        ).record(Double(size))
        registry.makeDurationHistogram(
            descriptor: .init(namespace: "inception", metricName: "batch_duration", unitName: "seconds",
                              helpText: "Time per forward pass."),
            labels: [("model", model)], buckets: Self.latencyBuckets
        ).record(duration)
    }

    func queueDepth(model: String, waiting: Int) {
        registry.makeGauge(
            descriptor: .init(namespace: "inception", metricName: "queue", unitName: "depth",
                              helpText: "Requests waiting for a batch."),
            labels: [("model", model)]
        ).set(to: Double(waiting))
    }

    /// Requests for a model received and not yet answered (reading, decoding, waiting, running).
    func inProgress(model: String, by delta: Double) {
        registry.makeGauge(
            descriptor: .init(namespace: "inception", metricName: "requests_in", unitName: "progress",
                              helpText: "Requests received and not yet answered."),
            labels: [("model", model)]
        ).increment(by: delta)
    }

    func refused(model: String) {
        registry.makeCounter(
            descriptor: .init(namespace: "inception", metricName: "refused_requests", unitName: "total",
                              helpText: "Requests refused because the queue was full."),
            labels: [("model", model)]
        ).increment()
    }

    /// The exposition text.
    public func text() -> String { registry.emitToString() }

    /// Batcher callbacks that record into these metrics.
    func observer(model: String, maxBatch: Int) -> Batcher.Observer {
        var observer = Batcher.Observer()
        observer.batch = { [self] size, duration in
            batch(model: model, size: size, maxBatch: maxBatch, duration: duration)
        }
        observer.queueDepth = { [self] waiting in queueDepth(model: model, waiting: waiting) }
        return observer
    }
}
